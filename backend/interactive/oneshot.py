"""Segmentation through the REST API: the same prompt task and queue as the WebSocket path.

A request becomes a short-lived session of its own (never the reader's live one): its prompts are
recorded and logged like typed ones, the `run_prompt` task computes the mask on a prompt worker (in
process in the embedded mode), this process waits for the answer on a channel of its own, and the
mask is saved as a new object of the annotation. The web process never runs an engine itself.
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from backend.annotations import services as annotation_services
from backend.annotations.models import Annotation, AnnotationVersion
from backend.projects.models import Label
from worker.engines.base import PromptError, Prompts

from . import dispatch, protocol, sessions
from .models import InteractiveSession, PromptLog


class SegmentationUnavailable(Exception):
    """No prompt worker answered in time."""


def _entries(prompts: Prompts) -> list[dict]:
    entries: list[dict] = [{"point": {"index": list(p.index), "positive": p.positive}} for p in prompts.points]
    if prompts.box is not None:
        entries.append({"box": [list(prompts.box.lower), list(prompts.box.upper)]})
    return [{"seq": seq, **entry} for seq, entry in enumerate(entries)]


def _wait_for_answer(session_id: str, seq: int) -> dict:
    layer = get_channel_layer()

    async def roundtrip() -> dict:
        channel = await layer.new_channel("segment.")
        await sync_to_async(dispatch.enqueue_prompt)(
            session_id, seq, channel, time.time(), None)
        return await asyncio.wait_for(layer.receive(channel), dispatch.prompt_timeout_s())

    try:
        return async_to_sync(roundtrip)()
    except TimeoutError:
        raise SegmentationUnavailable(
            f"No segmentation worker answered within {dispatch.prompt_timeout_s():.0f} s; try again.") from None


def segment_and_save(annotation: Annotation, user, *, label: Label, prompts: Prompts, engine: str,
                     base_version_id: int | None) -> AnnotationVersion:
    """Run ``engine`` on ``prompts`` through the prompt queue and save the mask as a new object.

    Raises :class:`sessions.SessionError` (unknown/unavailable engine, bad prompt, engine failure) and
    :class:`SegmentationUnavailable`; nothing is saved then.
    """
    try:
        prompts.validate(tuple(annotation.scan.pet.shape))
    except PromptError as error:
        raise sessions.SessionError("invalid_prompt", str(error)) from None
    name = sessions.allowed_engine(annotation.project, engine)
    entries = _entries(prompts)
    last = entries[-1]["seq"]
    with transaction.atomic():
        session = InteractiveSession.objects.create(
            scan=annotation.scan, user=user, label=label, engine=name, annotation=annotation,
            prompts=entries, active_count=len(entries), latest_seq=last)
        PromptLog.objects.bulk_create([
            PromptLog(session=session, seq=e["seq"], action="prompt", user=user, engine=name,
                      payload={k: v for k, v in e.items() if k != "seq"}) for e in entries])
    try:
        answer = _wait_for_answer(str(session.pk), last)
        if answer["type"] == "prompt.failed":
            raise sessions.SessionError(answer["code"], answer["detail"])
        if answer["type"] != "prompt.result":
            raise sessions.SessionError("engine_failed", f"Unexpected answer {answer['type']!r} from the worker.")
        header, payload = protocol.split_frame(answer["frame"])
        mask = protocol.decode_mask(header, payload, tuple(annotation.scan.pet.shape))
        if not mask.any():
            raise sessions.SessionError("empty_result", "The engine found nothing at these prompts; nothing was saved.")
        return annotation_services.add_object(
            annotation, user, base_version_id=base_version_id, label=label, mask=mask, source=name,
            message=f"score {float(header.get('score', 0.0)):.2f} (REST, session {session.pk})")
    finally:
        InteractiveSession.objects.filter(pk=session.pk).update(is_open=False)
