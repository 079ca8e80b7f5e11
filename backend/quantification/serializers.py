from __future__ import annotations

from rest_framework import serializers

from .models import VersionStatistics


class VersionStatisticsSerializer(serializers.ModelSerializer):
    annotation = serializers.IntegerField(source="version.annotation_id", read_only=True)
    scan = serializers.IntegerField(source="version.annotation.scan_id", read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    objects = serializers.JSONField(source="object_stats", read_only=True)

    class Meta:
        model = VersionStatistics
        fields = ["id", "annotation", "scan", "version", "version_number", "status", "message", "units",
                  "voxel_volume_ml", "has_ct", "lesion_count", "total_mtv_ml", "total_tlg", "objects", "method",
                  "computed_at"]
        read_only_fields = fields
