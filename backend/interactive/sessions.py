"""Interactive segmentation sessions: prompts in, masks out, every step logged and resumable.

The consumer calls these functions; the Celery task calls `compute`. A mask is stored per
number of prompts in effect, so undo and redo are instant and a session resumes after a
closed tab or a server restart exactly where it was.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from django.db import transaction
from django.utils import timezone

from backend.annotations import services as annotation_services
from backend.annotations.models import Annotation
from backend.imaging import integrity, storage
from backend.imaging.models import Scan
from backend.projects.models import Label, Project
from worker.engines.base import KINDS, Box, Point, PromptError, Prompts
from worker.engines.cache import LRUByteCache
from worker.engines.orientation import Canonical

from . import protocol
from .models import InteractiveSession, PromptLog


class SessionError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass
class Outcome:
    """What a computation or history step produced: a mask frame, or that it was superseded."""

    frame: bytes | None = None
    superseded_by: int | None = None


def _session_for(session_id: str, user, lock: bool = False, with_scan: bool = True) -> InteractiveSession:
    queryset = InteractiveSession.objects.all()
    if with_scan:
        queryset = queryset.select_related("scan", "label").prefetch_related("scan__series")
    if lock:
        queryset = queryset.select_for_update()
    try:
        return queryset.get(pk=uuid.UUID(session_id), user=user, is_open=True)
    except (InteractiveSession.DoesNotExist, ValueError):
        raise SessionError("not_found", "No such open session; open one with session.open.") from None


def engine_label(name: str) -> str:
    from worker.engines.registry import available_engines

    engines = {e["name"]: e for e in available_engines()}
    if name not in engines:
        raise SessionError("engine_unavailable", f"Unknown engine {name!r}; available: {', '.join(engines)}.")
    if not engines[name]["available"]:
        raise SessionError("engine_unavailable", f"Engine {name!r} cannot run here: {engines[name]['reason']}")
    return name


def allowed_engine(project, engine: str | None) -> str:
    """The engine a prompt of this project runs: the one asked for if the project allows it (an unknown
    name is the registry's error, engine_unavailable), else the project's default."""
    from worker.engines.registry import engine_names  # torch-free listing

    # Read now: a manager may have changed the project's engines while this socket was open.
    project = Project.objects.only("allowed_engines", "default_engine").get(pk=project.pk)
    name = engine or project.default_engine
    allowed = list(dict.fromkeys([*project.allowed_engines, project.default_engine]))
    if name in engine_names() and name not in allowed:
        raise SessionError("forbidden", f"This project does not allow the engine {name!r}; allowed: {', '.join(allowed)}.")
    return engine_label(name)


def open_session(scan: Scan, user, label_id: int, engine: str | None, annotation_id: int | None):
    label = Label.objects.filter(pk=label_id, project_id=scan.project_id).first()
    if label is None:
        raise SessionError("not_found", f"Label {label_id} is not in this project's label set.")
    if label.archived:
        raise SessionError("label_archived", "This label is archived: objects that have it keep it, "
                                             "new ones cannot take it.")
    annotation = None
    if annotation_id is not None:
        annotation = Annotation.objects.filter(pk=annotation_id, scan=scan, annotator=user).first()
        if annotation is None:
            raise SessionError("not_found", f"Annotation {annotation_id} is not yours on this scan.")
    name = allowed_engine(scan.project, engine)
    try:
        integrity.check_usable(scan)
    except integrity.ScanDamaged as error:
        raise SessionError("damaged", str(error)) from None
    with transaction.atomic():
        session = InteractiveSession.objects.select_for_update().filter(
            scan=scan, user=user, label=label, is_open=True).first()
        resumed = session is not None
        if session is None:
            session = InteractiveSession.objects.create(scan=scan, user=user, label=label, engine=name,
                                                        annotation=annotation)
        elif session.engine != name or (annotation and session.annotation_id != annotation.pk):
            session.engine, session.annotation = name, annotation or session.annotation
            session.save(update_fields=["engine", "annotation", "updated_at"])
    return session, resumed


def current_frame(session: InteractiveSession) -> bytes | None:
    entry = session.masks.get(str(session.active_count))
    if session.active_count == 0:
        return _frame(session, np.zeros(tuple(session.scan.pet.shape), dtype=bool), session.latest_seq)
    return _load_frame(entry) if entry else None


def _frame(session: InteractiveSession, mask: np.ndarray, seq: int, **extra) -> bytes:
    return protocol.encode_mask(mask, {"type": "mask", "session": str(session.pk), "seq": seq,
                                       "engine": session.engine, **extra})


def _load_frame(entry: dict) -> bytes:
    payload = storage.media_path(entry["file"]).read_bytes()
    if hashlib.sha256(payload).hexdigest() != entry["sha256"]:
        raise SessionError("engine_failed", "A stored working mask failed its checksum.")
    return payload


# The last working masks this process computed, keyed by the stored frame's sha256, so the next prompt
# of a session needs no file read, checksum and decode for its previous mask. Bounded in bytes: a
# whole-body mask is tens of MB. Prompts and accepts read it from different threads, hence the lock.
_recent_masks = LRUByteCache(512 * 2**20)
_recent_masks_lock = threading.Lock()


def _mask_of(session: InteractiveSession, count: int, shape: tuple[int, int, int] | None = None) -> np.ndarray | None:
    entry = session.masks.get(str(count))
    if not entry:
        return None
    with _recent_masks_lock:
        cached = _recent_masks.get(entry["sha256"])
    if cached is not None:
        return cached
    header, payload = protocol.split_frame(_load_frame(entry))
    return protocol.decode_mask(header, payload, shape or tuple(session.scan.pet.shape))


@dataclass(frozen=True)
class PetInfo:
    volume_file: str
    sha256: str
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    affine: tuple[tuple[float, ...], ...]  # stored index -> LPS mm

    @cached_property  # once per scan and process: pet_info itself is cached
    def canonical(self) -> Canonical:
        return Canonical.from_lps_affine(np.asarray(self.affine), self.shape)


@lru_cache(maxsize=64)
def pet_info(scan_id: int) -> PetInfo:
    """The PET series of a scan, cached per process: a ready scan's series never change, and the
    prompt path saves a query per prompt."""
    pet = Scan.objects.prefetch_related("series").get(pk=scan_id).pet
    if pet is None:
        raise SessionError("not_found", "This scan has no PET series.")
    return PetInfo(pet.volume_file, pet.sha256, tuple(pet.spacing), tuple(pet.shape),
                   tuple(tuple(float(v) for v in row) for row in pet.affine))


def run_engine(engine, volume: np.ndarray, pet: PetInfo, prompts: Prompts, previous: np.ndarray | None,
               session_key: str, kind: str | None) -> tuple[np.ndarray, float]:
    """One engine call across the boundary's array convention: the engine sees the RAS-canonical volume,
    spacing and prompts (what the reference pipeline feeds the network); the mask comes back in stored
    order. Views only: nothing is copied or resampled here."""
    canonical = pet.canonical
    result = engine.segment(canonical.to_ras(volume), canonical.spacing(pet.spacing), canonical.prompts_to_ras(prompts),
                            previous_mask=canonical.to_ras(previous) if previous is not None else None,
                            session_key=session_key, kind=kind)
    return canonical.from_ras(result.mask), float(result.score)


def _log(session: InteractiveSession, seq: int, action: str, **fields) -> None:
    PromptLog.objects.create(session=session, seq=seq, action=action, user_id=session.user_id, **fields)


def add_prompt(session_id: str, user, seq: int, entry: dict,
               shape: tuple[int, int, int] | None = None) -> InteractiveSession:
    """Record a prompt. ``shape`` is the PET grid when the caller knows it (saves two queries)."""
    with transaction.atomic():
        session = _session_for(session_id, user, lock=True, with_scan=shape is None)
        if seq <= session.latest_seq:
            raise SessionError("malformed", f"seq {seq} is not after {session.latest_seq}; sequence numbers increase.")
        if shape is None:
            shape = tuple(session.scan.pet.shape)
        try:
            _prompts_of([{"seq": seq, **entry}]).validate(shape)
        except PromptError as error:
            raise SessionError("invalid_prompt", str(error)) from None
        session.prompts = session.prompts[: session.active_count] + [{"seq": seq, **entry}]
        session.masks = {k: v for k, v in session.masks.items() if int(k) < len(session.prompts)}
        session.active_count = len(session.prompts)
        session.latest_seq = seq
        session.save(update_fields=["prompts", "masks", "active_count", "latest_seq", "updated_at"])
        _log(session, seq, "prompt", payload=entry, engine=session.engine)
    return session


def step_history(session_id: str, user, seq: int, action: str) -> tuple[InteractiveSession, bytes | None]:
    """undo / redo / reset; returns the mask frame when it is known without running the engine."""
    with transaction.atomic():
        session = _session_for(session_id, user, lock=True)
        if seq <= session.latest_seq:
            raise SessionError("malformed", f"seq {seq} is not after {session.latest_seq}; sequence numbers increase.")
        if action == "undo":
            session.active_count = max(0, session.active_count - 1)
        elif action == "redo":
            session.active_count = min(len(session.prompts), session.active_count + 1)
        else:
            session.prompts, session.masks, session.active_count = [], {}, 0
        session.latest_seq = seq
        session.save()
        _log(session, seq, action, payload={"active_count": session.active_count})
    entry = session.masks.get(str(session.active_count))
    if session.active_count == 0:
        return session, _frame(session, np.zeros(tuple(session.scan.pet.shape), dtype=bool), seq)
    if entry:
        header, payload = protocol.split_frame(_load_frame(entry))
        return session, protocol.encode_mask(protocol.decode_mask(header, payload, tuple(session.scan.pet.shape)),
                                             {**{k: v for k, v in header.items() if k not in ("bbox", "checksum")},
                                              "seq": seq})
    return session, None


def cancel_pending(session_ids: list[str]) -> None:
    """The client went away: prompts still queued for these sessions are skipped by workers."""
    for session in InteractiveSession.objects.filter(pk__in=session_ids):
        InteractiveSession.objects.filter(pk=session.pk).update(cancelled_through_seq=session.latest_seq)


def _prompts_of(entries: list[dict]) -> Prompts:
    points = tuple(Point(tuple(e["point"]["index"]), bool(e["point"]["positive"])) for e in entries if "point" in e)
    boxes = [e["box"] for e in entries if "box" in e]
    box = Box(tuple(boxes[-1][0]), tuple(boxes[-1][1])) if boxes else None
    return Prompts(points=points, box=box)


def object_kind(label: Label) -> str | None:
    """The kind every engine is told (engines that do not use it ignore it): lesion, organ, or none."""
    return label.kind if label.kind in KINDS else None


def compute(session_id: str, seq: int, queued_at: float | None = None, worker: str = "") -> Outcome:
    """Run the engine for the session's prompts as of `seq` (the worker side).

    Three queries on the way: the session, then one conditional UPDATE and one log INSERT. The
    update only lands while `seq` is still the session's latest prompt; any newer message (prompt,
    undo, redo, reset, accept) raises `latest_seq`, so a stale result can never overwrite a newer one.
    """
    started = time.perf_counter()
    queue_ms = max(0.0, (time.time() - queued_at) * 1000) if queued_at else 0.0
    session = InteractiveSession.objects.select_related("label").get(pk=session_id)
    if seq <= session.cancelled_through_seq or seq < session.latest_seq or not session.is_open:
        return Outcome(superseded_by=session.latest_seq)
    count = session.active_count
    prompts = _prompts_of(session.prompts[:count])
    pet = pet_info(session.scan_id)
    try:
        volume = storage.read_volume(pet.volume_file, pet.sha256)
    except storage.VolumeDamaged as error:  # the scan is now marked damaged; nothing is segmented
        raise SessionError("damaged", f"This scan's PET volume is damaged: {error}") from None
    from worker.engines import get_engine

    engine = get_engine(session.engine)
    previous = _mask_of(session, count - 1, pet.shape)
    engine_started = time.perf_counter()
    mask, score = run_engine(engine, np.asarray(volume.array), pet, prompts, previous, str(session.pk),
                             object_kind(session.label))
    engine_ms = (time.perf_counter() - engine_started) * 1000
    timings = {"queue": round(queue_ms, 1), "setup": round((engine_started - started) * 1000, 1),
               "engine": round(engine_ms, 1)}
    frame = _frame(session, mask, seq, score=round(score, 4), timings=timings)
    header, _ = protocol.split_frame(frame)
    relative = f"{storage.scan_dir_relative(session.scan_id)}/sessions/{session.pk}/{count}-{seq}.mask"
    sha256 = storage.write_atomically(relative, frame, durable=False)
    model_version = str(getattr(engine, "model_version", "") or getattr(engine, "variant", ""))
    with transaction.atomic():
        stored = InteractiveSession.objects.filter(
            pk=session.pk, latest_seq=seq, active_count=count, is_open=True
        ).update(masks={**session.masks, str(count): {"file": relative, "sha256": sha256, "seq": seq}},
                 updated_at=timezone.now())
        if not stored:
            return Outcome(superseded_by=InteractiveSession.objects.values_list("latest_seq", flat=True)
                           .get(pk=session.pk))
        _log(session, seq, "mask", payload={"worker": worker}, engine=session.engine, model_version=model_version,
             result_sha256=header["checksum"] or "", voxels=header["voxels"], timings=timings)
    with _recent_masks_lock:
        _recent_masks.put(sha256, mask, mask.nbytes)
    return Outcome(frame=frame)


def accept(session_id: str, user, seq: int, corrected: np.ndarray | None):
    """Save the session's mask (or the client's corrected one) as a new object of the reader's annotation."""
    session = _session_for(session_id, user)
    mask = corrected if corrected is not None else _mask_of(session, session.active_count)
    if mask is None or not mask.any():
        raise SessionError("malformed", "There is no mask to accept yet.")
    annotation = session.annotation
    if annotation is None:
        annotation, _ = annotation_services.open_annotation(session.scan, user)
    version = annotation_services.add_object(
        annotation, user, base_version_id=annotation.current_version_id, label=session.label, mask=mask,
        source=session.engine if corrected is None else f"{session.engine}+edited",
        message=f"session {session.pk}, {session.active_count} prompts")
    with transaction.atomic():
        locked = _session_for(session_id, user, lock=True)
        locked.annotation = annotation
        locked.prompts, locked.masks, locked.active_count = [], {}, 0
        locked.latest_seq = max(locked.latest_seq, seq)
        locked.save()
        _log(locked, seq, "accept", payload={"version": version.pk, "edited": corrected is not None},
             result_sha256=protocol.mask_checksum(mask) or "", voxels=int(np.count_nonzero(mask)))
    return annotation, version


def close(session_id: str, user) -> None:
    InteractiveSession.objects.filter(pk=session_id, user=user).update(is_open=False)


def replay(session_id: str) -> list[dict]:
    """Re-run a session's logged history with its engine; each computed mask is compared with the
    checksum logged at the time. Returns one row per logged mask or accept."""
    from worker.engines import get_engine

    session = InteractiveSession.objects.select_related("scan", "label").get(pk=uuid.UUID(session_id))
    pet = pet_info(session.scan_id)
    volume = np.asarray(storage.read_volume(pet.volume_file, pet.sha256).array)
    engine = get_engine(session.engine)
    prompts: list[dict] = []
    active = 0
    masks: dict[int, np.ndarray] = {0: np.zeros(volume.shape, dtype=bool)}
    rows = []
    for entry in session.log.order_by("id"):
        if entry.action == "prompt":
            prompts = prompts[:active] + [{"seq": entry.seq, **entry.payload}]
            active = len(prompts)
        elif entry.action in ("undo", "redo"):
            active = entry.payload["active_count"]
        elif entry.action == "reset":
            prompts, active, masks = [], 0, {0: masks[0]}
        elif entry.action == "mask":
            mask, _ = run_engine(engine, volume, pet, _prompts_of(prompts[:active]), masks.get(active - 1),
                                 f"replay-{session.pk}", object_kind(session.label))
            masks[active] = mask
            checksum = protocol.mask_checksum(mask) or ""
            rows.append({"seq": entry.seq, "action": "mask", "logged": entry.result_sha256, "replayed": checksum,
                         "match": checksum == entry.result_sha256})
        elif entry.action == "accept":
            rows.append({"seq": entry.seq, "action": "accept", "logged": entry.result_sha256,
                         "edited": entry.payload.get("edited", False)})
            prompts, active, masks = [], 0, {0: masks[0]}
    return rows
