from rest_framework import serializers

from .models import Scan, Series


class SeriesSerializer(serializers.ModelSerializer):
    class Meta:
        model = Series
        fields = [
            "id", "modality", "series_instance_uid", "frame_of_reference_uid", "description",
            "manufacturer", "acquisition_datetime", "shape", "spacing", "affine", "units",
            "raw_units", "suv", "sha256",
        ]
        read_only_fields = fields


class ScanSerializer(serializers.ModelSerializer):
    series = SeriesSerializer(many=True, read_only=True)

    class Meta:
        model = Scan
        fields = [
            "id", "project", "name", "patient_id", "patient_sex", "patient_age", "patient_weight_kg",
            "patient_height_m", "study_instance_uid", "study_date", "study_description", "tracer",
            "status", "status_message", "created_at", "series",
        ]
        read_only_fields = fields
