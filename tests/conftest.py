"""Fixtures shared by all suites."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


class CeleryWorker:
    """A real Celery worker process on the test database and the Redis broker."""

    def __init__(self, name: str, include: str = "") -> None:
        from backend.celery import app

        database = settings.DATABASES["default"]
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
               "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
               "MEDIA_ROOT": str(settings.MEDIA_ROOT)}
        self.hostname = f"{name}-{os.getpid()}@localhost"
        argv = [sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "cpu,gpu", "--pool", "solo",
                "--hostname", self.hostname, "-l", "warning", "--without-gossip", "--without-mingle"]
        if include:
            argv += ["--include", include]
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[self.hostname], timeout=1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"the Celery worker did not start: {self.process.stdout.read() if self.process.stdout else ''}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def start_celery_worker(transactional_db):
    """Factory: start_celery_worker(name, include=module) starts a worker; all are stopped afterwards."""
    from backend.celery import app

    if app.conf.task_always_eager:
        pytest.fail("real Celery workers need REDIS_URL (the services run of `make test`)")
    app.control.purge()
    workers: list[CeleryWorker] = []

    def start(name: str = "worker", include: str = "") -> CeleryWorker:
        workers.append(CeleryWorker(name, include))
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def celery_worker_process(start_celery_worker):
    return start_celery_worker("ingest")


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process for API tests in either mode; the real worker path has its own test."""
    from backend.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets new channel layer objects: pytest-asyncio gives every test its own event loop,
    and a Redis layer's locks and connections belong to the loop that created them."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def engine_settings():
    """configure(**changes) sets how the engine registry builds engines; the previous settings come back."""
    from worker.engines import registry

    previous = registry.current_settings()
    yield lambda **changes: registry.configure(**changes)
    registry.configure(previous)


@pytest.fixture(autouse=True)
def fresh_per_process_caches():
    """Per-process caches keyed by database ids: tests roll their rows back, so ids come round again,
    which never happens to a running server."""
    from backend.interactive.sessions import pet_info

    pet_info.cache_clear()
    yield
