"""Prompt tasks (the `gpu` queue): run the engine and send the mask straight to the asking socket."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from asgiref.sync import async_to_sync
from celery import shared_task
from celery.signals import worker_process_init
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)
REPLY_TIMEOUT_S = 10.0


class _ReplyLoop:
    """One event loop per worker process for channel-layer sends. A fresh loop per reply (what
    async_to_sync does outside a loop) also means a fresh Redis connection pool per reply, which
    cost more than the threshold engine itself."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid = 0
        self.lock = threading.Lock()

    def get(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            # A forked pool child inherits the object but not the thread that runs the loop.
            if self.loop is None or self.pid != os.getpid() or self.loop.is_closed():
                self.loop = asyncio.new_event_loop()
                self.pid = os.getpid()
                threading.Thread(target=self.loop.run_forever, name="channel-replies", daemon=True).start()
            return self.loop

    def reset(self) -> None:
        with self.lock:
            if self.loop is not None and self.pid == os.getpid():
                self.loop.call_soon_threadsafe(self.loop.stop)
            self.loop = None

    def send(self, channel: str, message: dict[str, Any]) -> None:
        layer = get_channel_layer()
        try:
            asyncio.run_coroutine_threadsafe(layer.send(channel, message), self.get()).result(REPLY_TIMEOUT_S)
        except Exception:
            # Redis restarted under the pool, or the loop is wedged: start over once with new connections.
            log.warning("channel-layer send failed; retrying on a new connection", exc_info=True)
            self.reset()
            asyncio.run_coroutine_threadsafe(layer.send(channel, message), self.get()).result(REPLY_TIMEOUT_S)


_replies = _ReplyLoop()


def send_reply(channel: str, message: dict[str, Any]) -> None:
    from backend.interactive.dispatch import runs_in_process

    if runs_in_process():
        # Embedded mode: called from a thread of the server's own loop, where the in-memory layer lives.
        async_to_sync(get_channel_layer().send)(channel, message)
    else:
        _replies.send(channel, message)


def preload_engines(names: list[str]) -> list[str]:
    """Build the named engines now (weights loaded, model on its device); returns those loaded. An engine
    that cannot run here (e.g. no checkpoint configured) is skipped with a log line, not an error."""
    from worker.engines.registry import get_engine

    loaded = []
    for name in names:
        try:
            get_engine(name)
        except Exception as error:
            log.warning("engine %s not preloaded: %s", name, error)
        else:
            loaded.append(name)
    if loaded:
        log.info("engines preloaded: %s", ", ".join(loaded))
    return loaded


def configured_preload() -> list[str]:
    from django.conf import settings

    return [name for name in getattr(settings, "PRELOAD_ENGINES", []) if name]


@worker_process_init.connect
def _preload_in_worker_process(**_: Any) -> None:
    # Fires in every process that runs tasks (each prefork child; the worker itself with -P solo).
    preload_engines(configured_preload())


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
    send_reply(reply_channel, message)
