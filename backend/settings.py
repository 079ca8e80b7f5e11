"""Settings, read from environment variables only.

Embedded default (nothing set but DEBUG=true): SQLite under ./data, in-memory channel
layer, Celery tasks run in-process. Production: DATABASE_URL, REDIS_URL, SECRET_KEY.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

# Only accepted in DEBUG; a production server refuses to start without its own secret.
INSECURE_DEV_SECRET_KEY = "django-insecure-seganypet-studio-embedded-development-only"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = INSECURE_DEV_SECRET_KEY
elif not DEBUG and (SECRET_KEY == INSECURE_DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured("SECRET_KEY is the development default or shorter than 32 characters")

# The production topology (Redis, or PRODUCTION=true as docker-compose sets) never runs in DEBUG:
# DEBUG pages leak settings and data.
if DEBUG and env.bool("PRODUCTION", default=False):
    raise ImproperlyConfigured("DEBUG must be off in production (PRODUCTION=true)")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data")))
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
STATIC_URL = "/static/"
FRONTEND_DIST = BASE_DIR / "frontend" / "dist"
STATICFILES_DIRS = [p for p in [FRONTEND_DIST] if p.is_dir()]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "django_prometheus",
    "backend.projects",
    "backend.imaging",
    "backend.annotations",
    "backend.health",
    "backend.interactive",
    "backend.quantification",
    "backend.exports",
    "backend.pacs",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "backend.health.observability.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "backend.health.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "backend.health.middleware.DatabaseUnavailableMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # locks out repeated failed logins
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("LOGIN_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "backend.health.views.locked_out"
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
# Login lockouts count per REMOTE_ADDR (never a client-written header); see NUM_PROXIES for throttles.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)

ROOT_URLCONF = "backend.urls"
ASGI_APPLICATION = "backend.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "backend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Several ASGI threads and in-process tasks write at once: wait instead of "database is locked",
    # and take the write lock when a transaction starts, so that a check-then-write (a save against
    # a base version) cannot interleave with another one (SQLite ignores SELECT ... FOR UPDATE).
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Redis: channel layer and Celery broker -----------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 30},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL or None)
# Without a broker the embedded default runs every task in-process, on the same code path.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
# Each worker also listens on its own queue, so a session's prompts can stick to the worker
# that holds its image embeddings.
CELERY_WORKER_DIRECT = True
# PACS: delays (s) of the automatic retries of a DICOM SEG push that the PACS could not take.
PACS_PUSH_RETRY_DELAYS_S = env.list("PACS_PUSH_RETRY_DELAYS_S", cast=int, default=[30, 120, 600, 1800, 3600])
# A prompt without an answer after this long is reported to the client as a worker timeout.
PROMPT_TIMEOUT_S = env.float("PROMPT_TIMEOUT_S", default=30.0)
# Engines a prompt worker process loads when it starts, so the first click does not wait for the weights.
PRELOAD_ENGINES = env.list("PRELOAD_ENGINES", default=[])
# An export whose worker shows no progress for this long is failed (or taken over by a redelivery).
EXPORT_STALE_S = env.float("EXPORT_STALE_S", default=300.0)
# An ingest without a heartbeat (a step) for this long lost its process: it is failed and cleaned up.
INGEST_STALE_S = env.float("INGEST_STALE_S", default=900.0)
# Celery beat (`celery -A backend beat`) runs the recovery of stale ingests and exports periodically;
# the web container also runs `manage.py recover_stale` at start-up.
CELERY_BEAT_SCHEDULE = {
    "recover-stale-ingests-and-exports": {
        "task": "backend.health.tasks.recover_stale",
        "schedule": env.float("RECOVERY_INTERVAL_S", default=300.0),
        "options": {"queue": "cpu"},
    },
}

# --- Storage and limits ---------------------------------------------------------------
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=2 * 1024**3)
# A whole-body PET/CT study is often 500-2000 single-slice files in one upload.
DATA_UPLOAD_MAX_NUMBER_FILES = env.int("MAX_UPLOAD_FILES", default=5000)
# An uploaded NIfTI volume (PET, CT, label map) larger than this is refused from its header, before
# its (possibly gzip-compressed) data is read: a 512^3 CT fits. Reading takes about 3x the bytes.
MAX_VOLUME_VOXELS = env.int("MAX_VOLUME_VOXELS", default=512**3)
MAX_VOLUME_BYTES = env.int("MAX_VOLUME_BYTES", default=512 * 1024**2)

# --- Segmentation engines (passed to worker.engines.registry when the app starts) -------------
# The official SegAnyPET checkpoint; empty: the `seganypet` engine is listed as unavailable.
SEGANYPET_CHECKPOINT = env.str("SEGANYPET_CHECKPOINT", default="")
# The demo weights; empty: worker/seganypet/weights/demo.pt in the repository.
SEGANYPET_DEMO_CHECKPOINT = env.str("SEGANYPET_DEMO_CHECKPOINT", default="")
SEGANYPET_DEVICE = env.str("SEGANYPET_DEVICE", default="")  # cuda, cpu, or empty: CUDA when present
# Full unpickling of the official checkpoint file (only for a file the operator trusts).
SEGANYPET_TRUST_CHECKPOINT = env.bool("SEGANYPET_TRUST_CHECKPOINT", default=False)
SEGANYPET_CACHE_MB = env.float("SEGANYPET_CACHE_MB", default=512.0)  # image-embedding cache per engine
SEGANYPET_TORCH_THREADS = env.int("SEGANYPET_TORCH_THREADS", default=0)  # 0: the CPUs this process may use

# --- REST API -------------------------------------------------------------------------
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
if NUM_PROXIES < 0:
    raise ImproperlyConfigured("NUM_PROXIES must be 0 (no proxy) or the number of trusted proxies")
REST_FRAMEWORK = {
    # Token first so that scripts get a 401 with WWW-Authenticate instead of a bare 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "backend.projects.api_base.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_RATES": {"auth": env.str("TOKEN_THROTTLE_RATE", default="10/min")},
    # Throttles identify a client by REMOTE_ADDR, or with NUM_PROXIES trusted reverse proxies in front, by
    # the address that many entries from the right of X-Forwarded-For (what the nearest proxy saw). Never
    # by the whole header, which the client writes (DRF's default when this is None).
    "NUM_PROXIES": NUM_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SegAnyPET Studio API",
    "DESCRIPTION": "Projects, scans, annotations, reviews and exports for 3D PET annotation.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the drf-spectacular-sidecar package (static files), not from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Security: safe by default when DEBUG is off --------------------------------------
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# See backend/health/csp.py for why each source is there.
CONTENT_SECURITY_POLICY = env.str("CONTENT_SECURITY_POLICY", default=(
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"))
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "backend.health.observability.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "backend.health.observability.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# Shared by every process (throttling, login lockouts): Redis in production.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
# /metrics (Prometheus) needs this bearer token when set; otherwise only loopback may scrape.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
