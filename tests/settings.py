"""Test settings: the real settings module, with test-only defaults for what production must set.

DATABASE_URL and REDIS_URL come from the environment (`make test` runs the suite once
against PostgreSQL + Redis and once in the embedded mode).
"""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-the-check-0123456789")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
# Test WebSocket clients send no Host header, so the page origin they claim is a trusted one.
os.environ.setdefault("CSRF_TRUSTED_ORIGINS", "http://localhost")
os.environ.setdefault("LOG_FORMAT", "plain")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="seganypet-test-media-"))
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="seganypet-test-data-"))

from backend.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production
SECURE_HSTS_SECONDS = 0
AXES_ENABLED = False  # test clients log in without a request; tests/foundation/test_security.py turns it on
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "1000/min"}}  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
# Connections opened by database_sync_to_async threads must not outlive a test, or the
# test database cannot be dropped at the end of the run.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, as in the embedded mode itself: an in-memory test database shared between threads
    # fails at once with "table is locked" where a file database waits (busy timeout).
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["DATA_DIR"], "test.sqlite3")}  # noqa: F405
