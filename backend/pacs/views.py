"""DICOMweb sources (managers), study search and import, SEG pushes. Thin: the work is in services."""

from __future__ import annotations

from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from backend.annotations.services import visible_annotations
from backend.projects.api_base import (
    ANY_MEMBER,
    MANAGERS,
    READ_ANY_MEMBER_WRITE_MANAGER,
    ProjectScopedViewSet,
)
from backend.projects.models import Role

from . import services
from .dicomweb import PacsError
from .models import DicomWebSource, PacsImport, SegPush
from .serializers import (
    DicomWebSourceSerializer,
    ImportRequestSerializer,
    PacsImportSerializer,
    PushRequestSerializer,
    SegPushSerializer,
    StudySearchSerializer,
    StudySerializer,
)
from .tasks import import_study, push_seg

REVIEWERS_AND_MANAGERS = frozenset({Role.REVIEWER.value, Role.MANAGER.value})


class PacsErrorsMixin:
    """A PACS fault is a clear answer with its own code, not a 500."""

    def handle_exception(self, exc):
        if isinstance(exc, PacsError):
            return Response({"detail": exc.message, "code": exc.code, **exc.extra}, status=exc.status_code)
        return super().handle_exception(exc)  # type: ignore[misc]


class DicomWebSourceViewSet(PacsErrorsMixin, ProjectScopedViewSet, viewsets.ModelViewSet):
    serializer_class = DicomWebSourceSerializer
    queryset = DicomWebSource.objects.all()
    role_policy = {**READ_ANY_MEMBER_WRITE_MANAGER, "studies": MANAGERS}

    def perform_create(self, serializer) -> None:
        serializer.save(project=self.project)

    @extend_schema(parameters=[StudySearchSerializer], responses={200: StudySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def studies(self, request, *args, **kwargs):
        """Search the source's studies (QIDO-RS): patient id, name, date range, modality (PT by default)."""
        source = self.get_object()
        query = StudySearchSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        if filters.get("modality") == "any":
            filters["modality"] = ""
        found = services.search_studies(source, **filters)
        return Response(StudySerializer(found, many=True).data)


class PacsImportViewSet(PacsErrorsMixin, ProjectScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = PacsImportSerializer
    queryset = PacsImport.objects.select_related("source")
    role_policy = {"list": ANY_MEMBER, "retrieve": ANY_MEMBER, "create": MANAGERS, "resume": MANAGERS}
    filterset_fields = ["status", "source"]

    @extend_schema(request=ImportRequestSerializer, responses={202: PacsImportSerializer})
    def create(self, request, *args, **kwargs):
        """Import a study: checked on the PACS now, retrieved and ingested in the background (progress on the
        scan's WebSocket). A failed import of the same study is resumed; an imported one answers 409."""
        data = ImportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        source = DicomWebSource.objects.filter(project=self.project, pk=data.validated_data["source"]).first()
        if source is None:
            raise Http404("No such source.")
        record = services.start_import(source, data.validated_data["study_instance_uid"], request.user,
                                       data.validated_data.get("series"))
        transaction.on_commit(lambda: import_study.delay(record.pk))
        return Response(PacsImportSerializer(record).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: PacsImportSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, *args, **kwargs):
        """Resume a failed import: only the instances not yet retrieved are fetched."""
        record = services.prepare_resume(self.get_object())
        transaction.on_commit(lambda: import_study.delay(record.pk))
        return Response(PacsImportSerializer(record).data, status=status.HTTP_202_ACCEPTED)


class SegPushViewSet(PacsErrorsMixin, ProjectScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = SegPushSerializer
    queryset = SegPush.objects.select_related("source", "version")
    role_policy = {"list": ANY_MEMBER, "retrieve": ANY_MEMBER, "create": REVIEWERS_AND_MANAGERS,
                   "retry": REVIEWERS_AND_MANAGERS}
    filterset_fields = ["status", "annotation", "source"]

    def get_queryset(self):
        # Blinded double reads: a push of another reader's annotation is as hidden as the annotation.
        return super().get_queryset().filter(annotation__in=visible_annotations(self.membership))

    @extend_schema(request=PushRequestSerializer, responses={202: SegPushSerializer})
    def create(self, request, *args, **kwargs):
        """Send an approved annotation's current version to its scan's source as DICOM SEG (STOW-RS)."""
        data = PushRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        annotation = visible_annotations(self.membership).filter(pk=data.validated_data["annotation"]).first()
        if annotation is None:
            raise Http404("No such annotation.")
        push = services.request_push(annotation, request.user)
        transaction.on_commit(lambda: push_seg.delay(push.pk))
        return Response(SegPushSerializer(push).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: SegPushSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, *args, **kwargs):
        """Try a failed or pending push again now."""
        push = services.retry_push(self.get_object(), request.user)
        transaction.on_commit(lambda: push_seg.delay(push.pk))
        return Response(SegPushSerializer(push).data, status=status.HTTP_202_ACCEPTED)
