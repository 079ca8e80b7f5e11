"""Sending a prompt's answer to the asking socket through the channel layer, from a worker process
(one event loop per process) or, in the embedded mode, from a thread of the server itself."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from backend.celery import app

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


def runs_in_process() -> bool:
    """The embedded mode: Celery tasks run in this process (and the channel layer is in memory)."""
    return bool(app.conf.task_always_eager)


def send_reply(channel: str, message: dict[str, Any]) -> None:
    if runs_in_process():
        # Embedded mode: called from a thread of the server's own loop, where the in-memory layer lives.
        async_to_sync(get_channel_layer().send)(channel, message)
    else:
        _replies.send(channel, message)
