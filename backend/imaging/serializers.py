from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .models import Scan, Series
from .suv import describe_types

# The same names as a series' `units` in responses; "SUV" is kept as an older alias of "SUVbw".
PET_UNITS_CHOICES = [("SUVbw", "already body-weight SUV"), ("BQML", "activity concentration, Bq/ml"),
                     ("SUV", "alias of SUVbw")]
# what the NIfTI ingest takes
_INGEST_UNITS = {"SUVbw": "SUV", "SUV": "SUV", "BQML": "BQML"}


class SeriesSerializer(serializers.ModelSerializer):
    suv_types = serializers.SerializerMethodField(
        help_text="Every SUV type: label, units, whether stored/available, the multiplier from the stored voxels "
                  "(display value = voxel × multiplier) or the reason it is unavailable. Empty without SUV.")

    class Meta:
        model = Series
        fields = [
            "id", "modality", "series_instance_uid", "frame_of_reference_uid", "description",
            "manufacturer", "acquisition_datetime", "shape", "spacing", "affine", "units",
            "raw_units", "suv", "suv_type", "suv_conversions", "suv_unavailable", "suv_types", "sha256",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_suv_types(self, series: Series) -> list[dict]:
        if not series.suv_type:
            return []
        return describe_types(series.suv_type, series.suv_conversions, series.suv_unavailable)


class ScanSerializer(serializers.ModelSerializer):
    series = SeriesSerializer(many=True, read_only=True)

    class Meta:
        model = Scan
        fields = [
            "id", "project", "name", "patient_id", "patient_sex", "patient_age", "patient_weight_kg",
            "patient_height_m", "study_instance_uid", "study_date", "study_description", "tracer",
            "status", "status_message", "ingest_progress", "created_at", "series",
        ]
        read_only_fields = fields


class ScanUploadSerializer(serializers.Serializer):
    """DICOM: `files` (many files and/or zips). NIfTI: `pet` (+ `pet_units`), optional `ct`, `labels`."""

    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tracer = serializers.CharField(max_length=64, required=False, allow_blank=True)
    files = serializers.ListField(child=serializers.FileField(), required=False, allow_empty=False)
    pet = serializers.FileField(required=False)
    pet_units = serializers.ChoiceField(choices=PET_UNITS_CHOICES, required=False)
    ct = serializers.FileField(required=False)
    labels = serializers.FileField(required=False)

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("files")) == bool(attrs.get("pet")):
            raise serializers.ValidationError("Send either DICOM `files` or a NIfTI `pet` file.")
        if attrs.get("pet") and not attrs.get("pet_units"):
            raise serializers.ValidationError(
                {"pet_units": "Say whether the NIfTI PET holds SUVbw or BQML (Bq/ml); it is never guessed."})
        if attrs.get("pet_units"):
            attrs["pet_units"] = _INGEST_UNITS[attrs["pet_units"]]
        if not attrs.get("pet") and (attrs.get("ct") or attrs.get("labels")):
            raise serializers.ValidationError("`ct` and `labels` files go with a NIfTI `pet`.")
        return attrs


class SuvParametersSerializer(serializers.Serializer):
    patient_weight_kg = serializers.FloatField(min_value=1, max_value=500, required=False)
    patient_height_m = serializers.FloatField(min_value=0.3, max_value=2.6, required=False)
    patient_sex = serializers.ChoiceField(choices=[("M", "male"), ("F", "female")], required=False)
    injected_dose_bq = serializers.FloatField(min_value=1e6, max_value=1e11, required=False)
    injection_datetime = serializers.DateTimeField(required=False)
    half_life_s = serializers.FloatField(min_value=1, required=False)
    scan_datetime = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError("Give at least one parameter.")
        return attrs
