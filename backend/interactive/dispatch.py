"""Sending prompts to workers: sticky to the worker that holds the session's embeddings."""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass

from celery.utils.nodenames import worker_direct
from django.conf import settings

from backend.celery import app

from .models import PromptLog
from .replies import runs_in_process

PROMPT_QUEUE = "gpu"


def enqueue_prompt(session_id: str, seq: int, reply_channel: str, queued_at: float, worker: str | None) -> str:
    """Queue the prompt task; returns the Celery task id."""
    from .tasks import run_prompt  # enqueue only

    queue = worker_direct(worker) if worker else PROMPT_QUEUE
    return run_prompt.apply_async((session_id, seq, reply_channel, queued_at), queue=queue).id


@dataclass(frozen=True)
class Submitted:
    task_id: str
    waiting: int  # prompts ahead of this one in the shared queue
    expected_wait_ms: int


def submit(session_id: str, seq: int, reply_channel: str, queued_at: float, worker: str | None,
           engine: str) -> Submitted:
    """Measure the queue, then publish the prompt (the client is told its position when it waits)."""
    waiting = queue_length()
    expected = round(waiting * typical_engine_ms(engine)) if waiting else 0
    return Submitted(enqueue_prompt(session_id, seq, reply_channel, queued_at, worker), waiting, expected)


_IN_PROCESS = threading.Lock()


def run_in_process(session_id: str, seq: int, reply_channel: str, queued_at: float) -> None:
    """The embedded mode's worker: one prompt at a time, like one worker process (and SQLite
    takes one writer at a time anyway)."""
    with _IN_PROCESS:
        enqueue_prompt(session_id, seq, reply_channel, queued_at, None)


def revoke(task_ids: list[str]) -> None:
    if task_ids and not app.conf.task_always_eager:
        app.control.revoke(task_ids)


def preload_in_process() -> None:
    """In the embedded mode this process is the prompt worker: preload its engines in a thread."""
    if not runs_in_process():
        return
    from worker.engines.registry import preload_engines

    from .engines import configured_preload

    names = configured_preload()
    if names:
        threading.Thread(target=preload_engines, args=(names,), name="preload-engines", daemon=True).start()


def queue_length() -> int:
    """Prompts waiting in the shared queue (0 in the embedded mode, where nothing queues)."""
    if app.conf.task_always_eager:
        return 0
    try:
        with app.pool.acquire(block=True) as connection:
            client = getattr(connection.default_channel, "client", None)
            return int(client.llen(PROMPT_QUEUE)) if client is not None else 0
    except Exception:  # an estimate only; never fail a prompt over it
        return 0


def typical_engine_ms(engine: str) -> float:
    recent = list(PromptLog.objects.filter(action="mask", engine=engine).order_by("-id")
                  .values_list("timings__engine", flat=True)[:20])
    values = [float(v) for v in recent if v is not None]
    return statistics.median(values) if values else 200.0


def prompt_timeout_s() -> float:
    return float(getattr(settings, "PROMPT_TIMEOUT_S", 30.0))
