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


@pytest.fixture
def celery_worker_process(transactional_db):
    """A real Celery worker process on the test database and Redis broker (services mode only)."""
    from backend.celery import app

    if app.conf.task_always_eager:
        pytest.fail("celery_worker_process needs REDIS_URL (the services run of `make test`)")
    database = settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
           "MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    app.control.purge()
    hostname = f"test-{os.getpid()}@localhost"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "backend", "worker", "-Q", "cpu,gpu", "--pool", "solo",
         "--hostname", hostname, "-l", "warning", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[hostname], timeout=1):
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            pytest.fail(f"the Celery worker did not start: {worker.stdout.read() if worker.stdout else ''}")
    yield worker
    worker.terminate()
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
