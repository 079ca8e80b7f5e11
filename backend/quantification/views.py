from __future__ import annotations

from django.db.models import F
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from backend.annotations.services import visible_annotations
from backend.projects.api_base import ANY_MEMBER, MANAGERS, ProjectScopedViewSet

from . import services
from .models import VersionStatistics
from .serializers import VersionStatisticsSerializer


def _int_param(request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit():
        raise ValidationError({name: "Must be a positive whole number."})
    return int(value)


class StatisticsViewSet(ProjectScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Per-object PET statistics (volume, SUVmax/mean/peak, MTV, TLG, mean HU) of annotation versions.

    Computed on the `cpu` queue whenever a version is saved; `status` says whether they are ready.
    """

    serializer_class = VersionStatisticsSerializer
    queryset = VersionStatistics.objects.select_related("version__annotation")
    role_policy = {"list": ANY_MEMBER, "retrieve": ANY_MEMBER, "recompute": MANAGERS}

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "swagger_fake_view", False):
            return queryset
        # Blinded double reads: statistics are as visible as the annotation they describe.
        return queryset.filter(version__annotation__in=visible_annotations(self.membership))

    @extend_schema(parameters=[
        OpenApiParameter("annotation", int, description="only this annotation's versions"),
        OpenApiParameter("version", int, description="version number (with annotation); 'current' by default "
                                                     "when annotation is given"),
        OpenApiParameter("scan", int, description="only this scan's annotations"),
    ])
    def list(self, request, *args, **kwargs):
        """Statistics rows; `?annotation=<id>` gives its current version, `&version=<n>` another one."""
        queryset = self.get_queryset()
        annotation = _int_param(request, "annotation")
        number = _int_param(request, "version")
        scan = _int_param(request, "scan")
        if scan is not None:
            queryset = queryset.filter(version__annotation__scan_id=scan)
        if annotation is not None:
            queryset = queryset.filter(version__annotation_id=annotation)
            if number is not None:
                queryset = queryset.filter(version__number=number)
            else:
                queryset = queryset.filter(version__annotation__current_version=F("version"))
        elif number is not None:
            raise ValidationError({"version": "Give the annotation too."})
        page = self.paginate_queryset(queryset)
        data = self.get_serializer(page if page is not None else queryset, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    @extend_schema(request=None, responses=VersionStatisticsSerializer)
    @action(detail=True, methods=["post"])
    def recompute(self, request, *args, **kwargs):
        """Compute again now (e.g. after the PET's SUV was recomputed with new parameters)."""
        row = self.get_object()
        if row.version_id is None:
            raise Http404
        return Response(self.get_serializer(services.compute_for_version(row.version)).data)

