"""Base class for every API view that lives inside one project.

Each view declares `role_policy`: which roles may run each action. An action missing
from the policy is refused, so a new endpoint cannot be open by accident; the
permission-matrix test reads the same policy.
"""

from __future__ import annotations

import errno
from typing import ClassVar

from django.db import DataError, InterfaceError, OperationalError
from django.db.models import ProtectedError
from rest_framework import viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .access import membership_for
from .models import Membership, Role

ANY_MEMBER = frozenset({Role.MANAGER.value, Role.ANNOTATOR.value, Role.REVIEWER.value})
MANAGERS = frozenset({Role.MANAGER.value})
READ_ANY_MEMBER_WRITE_MANAGER: dict[str, frozenset[str]] = {
    "list": ANY_MEMBER,
    "retrieve": ANY_MEMBER,
    "create": MANAGERS,
    "update": MANAGERS,
    "partial_update": MANAGERS,
    "destroy": MANAGERS,
}


def check_role(membership: Membership, allowed: frozenset[str] | None) -> None:
    if allowed is None:
        raise PermissionDenied("This action has no role policy.")
    if not membership.has_any(set(allowed)):
        raise PermissionDenied(f"This needs one of the roles: {', '.join(sorted(allowed))}.")


class ProjectScopedViewSet(viewsets.GenericViewSet):
    """Resolves `project_pk` from the URL to the caller's membership (404 for non-members)."""

    role_policy: ClassVar[dict[str, frozenset[str]]] = {}
    lookup_value_regex = "[0-9]{1,18}"
    membership: Membership

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):  # schema generation has no request
            return queryset.none()
        return queryset.filter(project=self.project)

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        if hasattr(self, "membership"):
            context["project"] = self.project
        return context

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication first: anonymous gets 401/403
        self.membership = membership_for(request.user, kwargs.get("project_pk"))
        check_role(self.membership, self.role_policy.get(self.action or ""))

    @property
    def project(self):
        return self.membership.project



def api_exception_handler(exc, context):
    """Errors of our own services become clear 4xx answers instead of 500s."""
    from backend.annotations.masks import MaskError
    from backend.annotations.services import WorkflowError
    from backend.health.middleware import service_unavailable
    from backend.imaging.ingest import IngestError
    from worker.engines.base import PromptError

    if isinstance(exc, WorkflowError):
        return Response({"detail": exc.message, "code": exc.code, **exc.extra}, status=exc.status_code)
    if isinstance(exc, MaskError | IngestError | PromptError):
        return Response({"detail": str(exc), "code": "invalid"}, status=400)
    if isinstance(exc, RecursionError):  # JSON nested thousands deep
        return Response({"detail": "The request is nested too deeply.", "code": "invalid"}, status=400)
    if isinstance(exc, OverflowError | DataError):  # e.g. an id above 2^63 in the body or the query string
        return Response({"detail": "A value in the request is out of range (ids and numbers must fit in 64 bits).",
                         "code": "invalid"}, status=400)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return service_unavailable("The server's storage is full; nothing was saved. Retry once space is freed.")
    if isinstance(exc, OperationalError | InterfaceError):
        return service_unavailable("The database is unavailable for a moment; nothing was changed. Retry shortly.")
    if isinstance(exc, ProtectedError):
        kinds = sorted({str(obj._meta.verbose_name_plural) for obj in exc.protected_objects})
        return Response({"detail": f"It cannot be deleted while it has {', '.join(kinds)}: annotation work is "
                                   "never deleted silently.", "code": "protected"}, status=409)
    return exception_handler(exc, context)
