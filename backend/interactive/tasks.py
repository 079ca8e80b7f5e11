"""Prompt tasks (the `gpu` queue): run the engine and send the mask straight to the asking socket."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_process_init

from worker.engines.registry import preload_engines

from .engines import configured_preload
from .replies import send_reply
from .sessions import SessionError, compute

log = logging.getLogger(__name__)


@worker_process_init.connect
def _preload_in_worker_process(**_: Any) -> None:
    # Fires in every process that runs tasks (each prefork child; the worker itself with -P solo).
    preload_engines(configured_preload())


@shared_task(bind=True, acks_late=False, ignore_result=True)
def run_prompt(self, session_id: str, seq: int, reply_channel: str, queued_at: float) -> None:
    """At most once: a prompt lost with a dying worker is reported to the client by its timeout."""
    worker = self.request.hostname or ""
    try:
        outcome = compute(session_id, seq, queued_at, worker)
    except SessionError as error:
        message = {"type": "prompt.failed", "session": session_id, "seq": seq, "code": error.code,
                   "detail": error.detail}
    except Exception as error:  # the client must hear about any failure, never wait forever
        log.exception("prompt %s of session %s failed", seq, session_id)
        message = {"type": "prompt.failed", "session": session_id, "seq": seq, "code": "engine_failed",
                   "detail": f"The engine failed on this prompt ({type(error).__name__})."}
    else:
        if outcome.frame is None:
            message = {"type": "prompt.superseded", "session": session_id, "seq": seq, "by": outcome.superseded_by}
        else:
            message = {"type": "prompt.result", "session": session_id, "seq": seq, "frame": outcome.frame}
    message["worker"] = worker
    send_reply(reply_channel, message)
