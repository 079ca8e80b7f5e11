"""Settings are parsed from the environment in a fresh interpreter, as a server would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; from django.conf import settings; django.setup();"
    "db = settings.DATABASES['default'];"
    "print(json.dumps({'engine': db['ENGINE'], 'name': str(db['NAME']), 'host': db.get('HOST', ''),"
    " 'layer': settings.CHANNEL_LAYERS['default']['BACKEND'], 'eager': settings.CELERY_TASK_ALWAYS_EAGER,"
    " 'broker': settings.CELERY_BROKER_URL, 'debug': settings.DEBUG, 'hosts': settings.ALLOWED_HOSTS,"
    " 'media': str(settings.MEDIA_ROOT), 'secure_cookies': settings.SESSION_COOKIE_SECURE and settings.CSRF_COOKIE_SECURE,"
    " 'hsts': settings.SECURE_HSTS_SECONDS}))"
)
GOOD_SECRET = "x" * 50


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {
        "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "MEDIA_ROOT", "DATA_DIR",
        "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "backend.settings", "DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=60)


def parsed(tmp_path: Path, **env: str) -> dict:
    result = load_settings(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_embedded_default(tmp_path):
    s = parsed(tmp_path, DEBUG="true")
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["name"] == str(tmp_path / "data" / "db.sqlite3")
    assert s["layer"] == "channels.layers.InMemoryChannelLayer"
    assert s["eager"] is True
    assert s["broker"] == "memory://"
    assert s["media"] == str(tmp_path / "data" / "media")
    assert s["hosts"] == ["127.0.0.1", "localhost"]


def test_production_services(tmp_path):
    s = parsed(tmp_path, SECRET_KEY=GOOD_SECRET, DATABASE_URL="postgres://postgres@db.example:5432/studio",
               REDIS_URL="redis://cache.example:6379/0", ALLOWED_HOSTS="studio.example.org,10.0.0.5",
               MEDIA_ROOT="/srv/media")
    assert s["engine"] == "django.db.backends.postgresql"
    assert (s["name"], s["host"]) == ("studio", "db.example")
    assert s["layer"] == "channels_redis.core.RedisChannelLayer"
    assert s["eager"] is False
    assert s["broker"] == "redis://cache.example:6379/0"
    assert s["hosts"] == ["studio.example.org", "10.0.0.5"]
    assert s["media"] == "/srv/media"
    assert s["debug"] is False
    assert s["secure_cookies"] is True
    assert s["hsts"] > 0


@pytest.mark.parametrize("secret", ["", "short", "django-insecure-seganypet-studio-embedded-development-only"])
def test_production_refuses_weak_secret(tmp_path, secret):
    result = load_settings(tmp_path, SECRET_KEY=secret)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_debug_accepts_missing_secret_and_allows_http_cookies(tmp_path):
    s = parsed(tmp_path, DEBUG="1")
    assert s["debug"] is True
    assert s["secure_cookies"] is False


def test_bad_database_url_is_a_clear_error(tmp_path):
    result = load_settings(tmp_path, DEBUG="true", DATABASE_URL="nosuchdb://x")
    assert result.returncode != 0
    assert "nosuchdb" in result.stderr
