"""Liveness of the services the app depends on, each check bounded in time."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

CHECK_TIMEOUT_S = 3.0


@dataclass
class CheckResult:
    ok: bool
    backend: str
    detail: str = ""
    ms: float = 0.0


def _timed(backend: str, probe) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = probe() or ""
        ok = True
    except Exception as exc:  # any failure of a dependency is a reportable state, not a crash
        detail, ok = f"{type(exc).__name__}: {exc}", False
    return CheckResult(ok=ok, backend=backend, detail=detail, ms=round((time.perf_counter() - started) * 1000, 1))


def check_database() -> CheckResult:
    def probe() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return ""

    return _timed(connection.vendor, probe)


def check_channel_layer() -> CheckResult:
    layer = get_channel_layer()

    async def round_trip() -> None:
        channel = await layer.new_channel("health.")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "health.ping", "token": token})
        message = await asyncio.wait_for(layer.receive(channel), CHECK_TIMEOUT_S)
        if message.get("token") != token:
            raise RuntimeError("channel layer returned another message")

    return _timed(type(layer).__name__, lambda: async_to_sync(round_trip)())


def check_broker() -> CheckResult:
    from backend.celery import app

    if app.conf.task_always_eager:
        return CheckResult(ok=True, backend="in-process", detail="tasks run in-process (no broker configured)")

    def probe() -> str:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)
        return ""

    return _timed(app.conf.broker_url.split("://")[0], probe)


def run_all_checks() -> dict[str, dict]:
    return {
        "database": asdict(check_database()),
        "channel_layer": asdict(check_channel_layer()),
        "broker": asdict(check_broker()),
    }


