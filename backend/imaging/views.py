from __future__ import annotations

from django.db import transaction
from django.http import FileResponse, Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from backend.projects.api_base import ANY_MEMBER, MANAGERS, ProjectScopedViewSet

from . import storage
from .ingest import IngestError, apply_suv_parameters, ct_on_pet_file
from .integrity import ScanDamaged, check_usable
from .models import Modality, Scan, ScanStatus
from .serializers import ScanSerializer, ScanUploadSerializer, SuvParametersSerializer
from .suv import SuvOverrides
from .tasks import ingest_upload
from .uploads import UploadError, discard, stage_uploaded_files


class ScanViewSet(ProjectScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin):
    serializer_class = ScanSerializer
    queryset = Scan.objects.prefetch_related("series")
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    role_policy = {
        "list": ANY_MEMBER,
        "retrieve": ANY_MEMBER,
        "create": MANAGERS,
        "destroy": MANAGERS,
        "suv_parameters": MANAGERS,
        "pet_volume": ANY_MEMBER,
        "ct_volume": ANY_MEMBER,
        "ct_on_pet_volume": ANY_MEMBER,
        "preview": ANY_MEMBER,
    }
    filterset_fields = ["status", "tracer", "patient_sex"]
    search_fields = ["name", "patient_id", "study_description"]
    ordering_fields = ["created_at", "name", "study_date"]

    @extend_schema(request={"multipart/form-data": ScanUploadSerializer}, responses={202: ScanSerializer})
    def create(self, request, *args, **kwargs):
        """Upload a scan: DICOM files/zips, or NIfTI. Ingest runs in the background (see `status`)."""
        upload = ScanUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data = upload.validated_data
        named = {key: data[key] for key in ("pet", "ct", "labels") if data.get(key)}
        try:
            staging = stage_uploaded_files(data.get("files") or list(named.values()))
        except UploadError as error:
            raise ValidationError({"files": [str(error)]}) from None
        nifti = None
        if named:
            staged = sorted(p.name for p in staging.iterdir())
            nifti = {key: staged[i] for i, key in enumerate(named)} | {"pet_units": data["pet_units"]}
        try:
            with transaction.atomic():
                scan = Scan.objects.create(project=self.project, name=data.get("name", ""),
                                           tracer=data.get("tracer", ""), created_by=request.user,
                                           status=ScanStatus.PENDING, staging_dir=str(staging))
                transaction.on_commit(lambda: ingest_upload.delay(scan.pk, str(staging), "nifti" if nifti else "dicom",
                                                                  nifti))
        except Exception:
            discard(staging)
            raise
        scan.refresh_from_db()
        return Response(ScanSerializer(scan).data, status=status.HTTP_202_ACCEPTED)

    def perform_destroy(self, instance: Scan) -> None:
        scan_id = instance.pk
        instance.delete()
        transaction.on_commit(lambda: storage.remove_tree(storage.scan_dir_relative(scan_id)))

    @extend_schema(request=SuvParametersSerializer, responses={200: ScanSerializer})
    @action(detail=True, methods=["post"], url_path="suv-parameters")
    def suv_parameters(self, request, *args, **kwargs):
        """Supply the weight, dose and times that the PET headers lacked; SUV is then computed."""
        scan = self.get_object()
        parameters = SuvParametersSerializer(data=request.data)
        parameters.is_valid(raise_exception=True)
        if scan.pet is None:
            raise ValidationError("This scan has no PET series yet.")
        try:
            apply_suv_parameters(scan.pet, SuvOverrides(**parameters.validated_data))
        except IngestError as error:
            raise ValidationError(str(error)) from None
        return Response(ScanSerializer(self.get_queryset().get(pk=scan.pk)).data)

    def _volume(self, modality: str) -> FileResponse | Response:
        scan = self.get_object()
        series = next((s for s in scan.series.all() if s.modality == modality), None)
        if series is None or not series.volume_file or not storage.media_path(series.volume_file).exists():
            raise Http404("This scan has no such volume.")
        try:
            check_usable(scan)  # the ETag below is the checksum, so the bytes must match it
        except ScanDamaged as error:
            return Response({"detail": str(error), "code": "damaged"}, status=status.HTTP_409_CONFLICT)
        response = FileResponse(storage.media_path(series.volume_file).open("rb"), content_type="application/gzip",
                                filename=f"scan{series.scan_id}_{modality.lower()}.nii.gz")
        response["ETag"] = f'"{series.sha256}"'
        response["Cache-Control"] = "private, max-age=3600"
        return response

    @extend_schema(responses={(200, "application/gzip"): OpenApiResponse(description="NIfTI volume")})
    @action(detail=True, methods=["get"], url_path="volumes/pet")
    def pet_volume(self, request, *args, **kwargs):
        """The PET volume as NIfTI (.nii.gz), in the SUV type named by the PET series' `suv_type` (`units`).

        `suv_types` on the series lists every type with its multiplier (display = voxel × multiplier) or the
        reason it is unavailable; 409 with code "damaged" when the file fails its checksum."""
        return self._volume(Modality.PET)

    @extend_schema(responses={(200, "application/gzip"): OpenApiResponse(description="NIfTI volume")})
    @action(detail=True, methods=["get"], url_path="volumes/ct")
    def ct_volume(self, request, *args, **kwargs):
        """The CT volume as NIfTI (.nii.gz), in HU, on its own grid."""
        return self._volume(Modality.CT)

    @extend_schema(responses={(200, "application/gzip"): OpenApiResponse(description="NIfTI volume")})
    @action(detail=True, methods=["get"], url_path="volumes/ct-on-pet")
    def ct_on_pet_volume(self, request, *args, **kwargs):
        """The CT resampled onto the PET grid (trilinear, air outside its field of view), for fusion."""
        scan = self.get_object()
        if scan.pet is None or scan.ct is None:
            raise Http404("This scan has no PET and CT pair.")
        relative = ct_on_pet_file(scan.pet, scan.ct)
        response = FileResponse(storage.media_path(relative).open("rb"), content_type="application/gzip",
                                filename=f"scan{scan.pk}_ct_on_pet.nii.gz")
        response["Cache-Control"] = "private, max-age=3600"
        return response

    @extend_schema(responses={(200, "image/png"): OpenApiResponse(description="coronal MIP")})
    @action(detail=True, methods=["get"])
    def preview(self, request, *args, **kwargs):
        """Whole-body coronal maximum-intensity projection (PNG)."""
        pet = self.get_object().pet
        if pet is None or not pet.preview_file or not storage.media_path(pet.preview_file).exists():
            raise Http404("No preview yet.")
        return FileResponse(storage.media_path(pet.preview_file).open("rb"), content_type="image/png")
