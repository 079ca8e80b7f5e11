"""A database that is away for a moment gives a clear 503 with Retry-After, never a 500 page."""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5


def service_unavailable(detail: str) -> JsonResponse:
    response = JsonResponse({"detail": detail, "code": "service_unavailable"}, status=503)
    response["Retry-After"] = str(RETRY_AFTER_S)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, OperationalError | InterfaceError):
            log.warning("database unavailable: %s", type(exception).__name__)
            return service_unavailable("The database is unavailable for a moment; nothing was changed. Retry shortly.")
        return None
