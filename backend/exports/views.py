from __future__ import annotations

from django.db import transaction
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from backend.annotations.models import Annotation
from backend.annotations.serializers import VersionSerializer
from backend.imaging.models import Scan
from backend.projects.api_base import MANAGERS, ProjectScopedViewSet
from backend.projects.models import Role

from . import services
from .models import ExportJob, ExportStatus
from .serializers import ExportJobSerializer, ExportRequestSerializer, LabelImportSerializer

ANNOTATORS_AND_MANAGERS = frozenset({Role.ANNOTATOR.value, Role.MANAGER.value})
MAX_IMPORT_BYTES = 512 * 1024 * 1024


class ExportJobViewSet(ProjectScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                       mixins.DestroyModelMixin):
    """Dataset exports (managers only). Poll `status`/`progress` or listen on the scans' sockets."""

    serializer_class = ExportJobSerializer
    queryset = ExportJob.objects.select_related("created_by")
    role_policy = {"list": MANAGERS, "retrieve": MANAGERS, "create": MANAGERS, "destroy": MANAGERS,
                   "download": MANAGERS}

    def get_queryset(self):
        queryset = super().get_queryset()
        if not getattr(self, "swagger_fake_view", False):
            services.fail_stale_jobs(queryset)
        return queryset

    @extend_schema(request=ExportRequestSerializer, responses={202: ExportJobSerializer})
    def create(self, request, *args, **kwargs):
        """Start an export. Approved annotations only unless `states` says otherwise; 400 when nothing matches."""
        data = ExportRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            settings = services.normalise_settings(self.project, data.validated_data)
            job = services.create_job(self.project, request.user, settings)
        except services.ExportError as error:
            raise ValidationError({"detail": str(error)}) from None
        job.refresh_from_db()
        return Response(ExportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    def perform_destroy(self, instance: ExportJob) -> None:
        if instance.status == ExportStatus.RUNNING:
            raise ValidationError({"detail": "The export is running; delete it when it has finished."})
        instance.delete()
        transaction.on_commit(lambda: services.remove_archive(instance))

    @extend_schema(responses={(200, "application/zip"): OpenApiResponse(description="the export archive")})
    @action(detail=True, methods=["get"])
    def download(self, request, *args, **kwargs):
        """The archive (zip with manifest.json), for the project's managers only."""
        job = self.get_object()
        if job.status != ExportStatus.DONE or not job.archive_file:
            return Response({"detail": f"The export is {job.get_status_display().lower()}, not ready to download.",
                             "code": "not_ready", "status": job.status}, status=status.HTTP_409_CONFLICT)
        path = services.storage.media_path(job.archive_file)
        response = FileResponse(path.open("rb"), content_type="application/zip", as_attachment=True,
                                filename=path.name)
        response["ETag"] = f'"{job.archive_sha256}"'
        response["X-Archive-Sha256"] = job.archive_sha256
        response["Cache-Control"] = "private, no-store"
        return response


class LabelImportViewSet(ProjectScopedViewSet):
    """Import a DICOM SEG or a NIfTI label map of a scan as a new draft version of your own annotation."""

    queryset = Annotation.objects.all()
    serializer_class = LabelImportSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    role_policy = {"create": ANNOTATORS_AND_MANAGERS}

    @extend_schema(request={"multipart/form-data": LabelImportSerializer}, responses={201: VersionSerializer})
    def create(self, request, *args, **kwargs):
        data = LabelImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        scan = get_object_or_404(Scan, pk=data.validated_data["scan"], project=self.project)
        upload = data.validated_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise ValidationError({"file": "The file is too large."})
        version = services.import_label_file(scan, request.user, upload.read(), upload.name)
        body = VersionSerializer(version).data | {"annotation": version.annotation_id}
        return Response(body, status=status.HTTP_201_CREATED)
