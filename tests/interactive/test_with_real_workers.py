"""The production path: Redis channel layer and broker, real Celery worker processes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from backend.interactive.models import InteractiveSession
from tests.interactive.conftest import connect_client, lesion_point, lesion_truth

pytestmark = [pytest.mark.services_only, pytest.mark.slow, pytest.mark.asyncio]


async def test_prompts_run_on_a_worker_and_stick_to_it(phantom_world, interactive_phantom, start_celery_worker):
    first = await sync_to_async(start_celery_worker)("gpu-a")
    second = await sync_to_async(start_celery_worker)("gpu-b")
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk)
    for seq in range(1, 6):
        await client.send(type="prompt", session=session, seq=seq,
                          point={"index": lesion_point(interactive_phantom, seq % 2), "positive": True})
        reply = await client.receive(timeout=30)
        while reply["type"] == "queued":
            reply = await client.receive(timeout=30)
        assert reply["type"] == "mask" and reply["seq"] == seq, reply
    truth = lesion_truth(interactive_phantom, 0) | lesion_truth(interactive_phantom, 1)
    assert 2 * (reply["mask"] & truth).sum() / (reply["mask"].sum() + truth.sum()) > 0.5
    logged = await sync_to_async(lambda: list(InteractiveSession.objects.get(pk=session).log.filter(
        action="mask").values_list("seq", flat=True)))()
    assert logged == [1, 2, 3, 4, 5]
    # The first prompt may go to either worker; every later one sticks to the worker holding the session.
    workers = await sync_to_async(_workers_of)(session)
    assert len(workers) == 5 and len(set(workers[1:])) == 1
    assert set(workers) <= {first.hostname, second.hostname} and workers[1] == workers[0]
    await client.close()


def _workers_of(session_id: str) -> list[str]:
    logs = InteractiveSession.objects.get(pk=session_id).log.filter(action="mask").order_by("id")
    return [log.payload["worker"] for log in logs]


async def test_a_worker_killed_mid_prompt_gives_an_error_and_the_next_prompt_works(
        phantom_world, interactive_phantom, start_celery_worker, settings):
    settings.PROMPT_TIMEOUT_S = 8
    doomed = await sync_to_async(start_celery_worker)("doomed", include="tests.interactive.slow_engine")
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk)
    await client.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    await asyncio.sleep(2)  # the worker has taken the prompt and sleeps in the engine
    await sync_to_async(doomed.kill)()
    reply = await client.receive(timeout=20)
    assert reply["type"] == "error" and reply["code"] == "worker_timeout" and reply["seq"] == 1
    await sync_to_async(start_celery_worker)("healthy")
    await client.send(type="prompt", session=session, seq=2, point={"index": lesion_point(interactive_phantom), "positive": True})
    reply = await client.receive(timeout=30)
    while reply["type"] == "queued":
        reply = await client.receive(timeout=30)
    assert reply["type"] == "mask" and reply["seq"] == 2
    assert np.any(reply["mask"])
    await client.close()
