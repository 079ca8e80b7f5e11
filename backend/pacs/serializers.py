from __future__ import annotations

from rest_framework import serializers

from . import secrets
from .models import AuthKind, DicomWebSource, PacsImport, SegPush


class DicomWebSourceSerializer(serializers.ModelSerializer):
    """Secrets are write-only: `password`/`token` are encrypted at rest, `secret_ref` names an environment
    variable ('env:NAME'). Responses only tell which kind is set (`secret`)."""

    password = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=500,
                                     style={"input_type": "password"}, help_text="basic auth password (encrypted)")
    token = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=4000,
                                  help_text="bearer token (encrypted)")
    secret_ref = serializers.CharField(required=False, allow_blank=True, max_length=200,
                                       help_text="'env:NAME': read the secret from this environment variable")
    secret = serializers.SerializerMethodField(help_text="'env', 'encrypted' or 'none'; never the value")

    class Meta:
        model = DicomWebSource
        fields = ["id", "name", "qido_url", "wado_url", "stow_url", "auth", "username", "secret_ref", "password",
                  "token", "secret", "push_on_approval", "created_at"]
        read_only_fields = ["id", "created_at"]

    def get_secret(self, source: DicomWebSource) -> str:
        return "env" if source.secret_ref else "encrypted" if source.secret_encrypted else "none"

    def validate_secret_ref(self, value: str) -> str:
        if value:
            try:
                secrets.check_reference(value)
            except secrets.SecretError as error:
                raise serializers.ValidationError(str(error)) from None
        return value

    def validate_name(self, value: str) -> str:
        project = self.context["project"]
        taken = DicomWebSource.objects.filter(project=project, name=value)
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            raise serializers.ValidationError("This project already has a source of that name.")
        return value

    def validate(self, attrs: dict) -> dict:
        password, token = attrs.pop("password", None), attrs.pop("token", None)
        literal = password if password else token
        if password and token:
            raise serializers.ValidationError("Give a password (basic auth) or a token (bearer), not both.")
        if literal and attrs.get("secret_ref"):
            raise serializers.ValidationError("Give the secret either as a value or as an 'env:NAME' reference.")
        if literal:
            attrs["secret_encrypted"], attrs["secret_ref"] = secrets.encrypt(literal), ""
        elif attrs.get("secret_ref"):
            attrs["secret_encrypted"] = ""
        auth = attrs.get("auth", getattr(self.instance, "auth", AuthKind.NONE))
        username = attrs.get("username", getattr(self.instance, "username", ""))
        if auth == AuthKind.BASIC and not username:
            raise serializers.ValidationError({"username": "Basic auth needs a user name."})
        has_secret = (attrs.get("secret_ref") or attrs.get("secret_encrypted")
                      or (self.instance is not None and (self.instance.secret_ref or self.instance.secret_encrypted)))
        if auth != AuthKind.NONE and not has_secret:
            raise serializers.ValidationError(f"{AuthKind(auth).label} needs a secret: a password/token, or "
                                              "secret_ref 'env:NAME'.")
        return attrs


class StudySearchSerializer(serializers.Serializer):
    patient_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    patient_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    date_from = serializers.DateField(required=False, allow_null=True)
    date_to = serializers.DateField(required=False, allow_null=True)
    modality = serializers.ChoiceField(choices=["PT", "CT", "any"], required=False, default="PT",
                                       help_text="ModalitiesInStudy (default PT); 'any': no modality filter")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)

    def validate(self, attrs: dict) -> dict:
        if attrs.get("date_from") and attrs.get("date_to") and attrs["date_from"] > attrs["date_to"]:
            raise serializers.ValidationError("date_from is after date_to.")
        return attrs


class StudySerializer(serializers.Serializer):
    study_instance_uid = serializers.CharField()
    patient_id = serializers.CharField()
    patient_name = serializers.CharField()
    study_date = serializers.CharField()
    study_description = serializers.CharField()
    accession_number = serializers.CharField()
    modalities = serializers.ListField(child=serializers.CharField())
    series_count = serializers.IntegerField()
    instance_count = serializers.IntegerField()
    import_id = serializers.IntegerField(allow_null=True)
    import_status = serializers.CharField(allow_null=True)
    scan_id = serializers.IntegerField(allow_null=True, help_text="the scan that already holds this study")


class ImportRequestSerializer(serializers.Serializer):
    source = serializers.IntegerField(help_text="a DICOMweb source of this project")
    study_instance_uid = serializers.RegexField(r"^[0-9.]{1,64}$", max_length=64)
    series = serializers.ListField(child=serializers.RegexField(r"^[0-9.]{1,64}$", max_length=64), required=False,
                                   max_length=20, help_text="series to import (default: the PET and its CT)")


class PacsImportSerializer(serializers.ModelSerializer):
    source_name = serializers.CharField(source="source.name", read_only=True)

    class Meta:
        model = PacsImport
        fields = ["id", "source", "source_name", "scan", "study_instance_uid", "series", "patient_id", "status",
                  "resumable", "message", "instances_total", "instances_retrieved", "attempts", "created_at",
                  "updated_at"]
        read_only_fields = fields


class PushRequestSerializer(serializers.Serializer):
    annotation = serializers.IntegerField(help_text="an approved annotation of a scan imported from a PACS")


class SegPushSerializer(serializers.ModelSerializer):
    source_name = serializers.CharField(source="source.name", read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = SegPush
        fields = ["id", "annotation", "version", "version_number", "source", "source_name", "status", "attempts",
                  "message", "next_attempt_at", "series_instance_uid", "sop_instance_uid", "created_at", "sent_at"]
        read_only_fields = fields
