from __future__ import annotations

from rest_framework import serializers

from backend.annotations.models import AnnotationState

from .models import ExportFormat, ExportJob


class NnunetOptionsSerializer(serializers.Serializer):
    dataset_id = serializers.IntegerField(min_value=1, max_value=999, required=False,
                                          help_text="XXX of DatasetXXX_Name (default 500)")
    dataset_name = serializers.CharField(max_length=40, required=False, help_text="default: the project's name")
    pet_channel = serializers.ChoiceField(choices=["PET", "noNorm"], required=False,
                                          help_text="channel 0's name: 'PET' (z-score, default) or 'noNorm'")


class ExportRequestSerializer(serializers.Serializer):
    formats = serializers.ListField(child=serializers.ChoiceField(choices=ExportFormat.choices), required=False,
                                    help_text="default: all of nnunet, nifti, dicom_seg, csv")
    states = serializers.ListField(child=serializers.ChoiceField(choices=AnnotationState.choices), required=False,
                                   help_text="annotation states to export (default: approved only)")
    labels = serializers.ListField(child=serializers.IntegerField(), required=False,
                                   help_text="label ids to export (default: all); other objects are left out")
    scans = serializers.ListField(child=serializers.IntegerField(), required=False, help_text="default: all scans")
    date_from = serializers.DateField(required=False, allow_null=True, help_text="versions saved on or after")
    date_to = serializers.DateField(required=False, allow_null=True, help_text="versions saved on or before")
    nnunet = NnunetOptionsSerializer(required=False)


class ExportJobSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportJob
        fields = ["id", "created_by", "created_at", "settings", "status", "progress", "message", "archive_sha256",
                  "archive_bytes", "summary", "started_at", "finished_at", "download_url"]
        read_only_fields = fields

    def get_download_url(self, job: ExportJob) -> str | None:
        if job.status != "done":
            return None
        return f"/api/projects/{job.project_id}/exports/{job.pk}/download/"


class LabelImportSerializer(serializers.Serializer):
    scan = serializers.IntegerField()
    file = serializers.FileField(help_text="a DICOM SEG of the scan's PET series, or a NIfTI label map on its PET "
                                           "grid with the project's label values")
