"""The health endpoint against the services this run is configured with, and against both modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.test import Client, TestCase, override_settings

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/15"


class HealthTestCase(TestCase):
    def test_it_works(self):
        response = Client().get("/health/")
        self.assertEqual(response.status_code, 200, response.content)
        body = response.json()
        self.assertEqual(body["status"], "ok")
        self.assertEqual(set(body["checks"]), {"database", "channel_layer", "broker"})
        from django.db import connection

        self.assertEqual(body["checks"]["database"]["backend"], connection.vendor)
        expected_broker = "in-process" if settings.CELERY_TASK_ALWAYS_EAGER else "redis"
        self.assertEqual(body["checks"]["broker"]["backend"], expected_broker)

    def test_it_needs_no_login_and_reveals_no_data(self):
        body = Client().get("/health/").content.decode()
        self.assertNotIn("password", body)
        self.assertNotIn(str(settings.DATABASES["default"]["NAME"]), body)

    @override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                                    "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}})
    def test_unreachable_channel_layer_is_reported_as_503(self):
        from channels.layers import channel_layers

        channel_layers.backends.clear()
        try:
            response = Client().get("/health/")
        finally:
            channel_layers.backends.clear()
        self.assertEqual(response.status_code, 503)
        self.assertFalse(response.json()["checks"]["channel_layer"]["ok"])
        self.assertIn("Error", response.json()["checks"]["channel_layer"]["detail"])


def _health_in_subprocess(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "tests.settings", **env})
    code = ("import django, json; django.setup();"
            "from backend.health.checks import run_all_checks; print(json.dumps(run_all_checks()))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_health_against_real_postgresql_and_redis():
    checks = _health_in_subprocess(DATABASE_URL=POSTGRES_URL, REDIS_URL=REDIS_URL)
    assert checks["database"] == {**checks["database"], "ok": True, "backend": "postgresql"}
    assert checks["channel_layer"]["ok"] and checks["channel_layer"]["backend"] == "RedisChannelLayer"
    assert checks["broker"]["ok"] and checks["broker"]["backend"] == "redis"


def test_health_in_embedded_mode(tmp_path):
    checks = _health_in_subprocess(DATA_DIR=str(tmp_path))
    assert checks["database"]["ok"] and checks["database"]["backend"] == "sqlite"
    assert checks["channel_layer"]["ok"] and checks["channel_layer"]["backend"] == "InMemoryChannelLayer"
    assert checks["broker"] == {**checks["broker"], "ok": True, "backend": "in-process"}


def test_unreachable_broker_is_reported():
    checks = _health_in_subprocess(DATABASE_URL=POSTGRES_URL, REDIS_URL="redis://127.0.0.1:6379/15",
                                   CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    assert checks["broker"]["ok"] is False
    assert checks["database"]["ok"] is True
