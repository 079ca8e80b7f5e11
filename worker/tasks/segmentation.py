"""Prompt tasks (the `gpu` queue): run the engine and send the mask straight to the asking socket."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


@shared_task(name="worker.tasks.segmentation.run_prompt", bind=True, acks_late=False, ignore_result=True)
def run_prompt(self, session_id: str, seq: int, reply_channel: str, queued_at: float) -> None:
    """At most once: a prompt lost with a dying worker is reported to the client by its timeout."""
    from backend.interactive.sessions import SessionError, compute

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
    async_to_sync(get_channel_layer().send)(reply_channel, message)
