from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .checks import run_all_checks


@never_cache
@require_GET
def health(request):
    """Public on purpose (load balancers, compose healthchecks); reveals no data."""
    checks = run_all_checks()
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse({"status": "ok" if healthy else "degraded", "checks": checks}, status=200 if healthy else 503)


def locked_out(request, credentials=None, *args, **kwargs):
    """What a locked-out login sees (django-axes): a clear answer, not a generic error page."""
    return JsonResponse({"detail": "Too many failed sign-in attempts; try again in 15 minutes.",
                         "code": "locked_out"}, status=429)


@never_cache
@require_GET
def metrics(request):
    """Prometheus metrics; with METRICS_TOKEN set a bearer token is required, else loopback only."""
    from django.conf import settings
    from django.http import HttpResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from backend.interactive.dispatch import queue_length

    from .observability import PROMPT_QUEUE_DEPTH

    token = settings.METRICS_TOKEN
    if token:
        if request.headers.get("Authorization", "") != f"Bearer {token}":
            return JsonResponse({"detail": "A metrics token is required."}, status=401)
    elif request.META.get("REMOTE_ADDR") not in ("127.0.0.1", "::1"):
        return JsonResponse({"detail": "Metrics are served to loopback only unless METRICS_TOKEN is set."},
                            status=403)
    PROMPT_QUEUE_DEPTH.set(queue_length())
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
