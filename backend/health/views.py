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
