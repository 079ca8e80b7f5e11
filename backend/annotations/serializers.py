from __future__ import annotations

from rest_framework import serializers

from .models import Annotation, AnnotationVersion, Assignment, AuditEvent, ReviewComment


class VersionSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", read_only=True)

    class Meta:
        model = AnnotationVersion
        fields = ["id", "number", "parent", "author", "created_at", "source", "sha256", "segments", "message"]
        read_only_fields = fields


class AnnotationSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username", read_only=True)
    claimed_by = serializers.CharField(source="claimed_by.username", read_only=True, default=None)
    current_version = VersionSerializer(read_only=True)
    approvals = serializers.SerializerMethodField()

    class Meta:
        model = Annotation
        fields = ["id", "scan", "annotator", "state", "is_consensus", "current_version", "claimed_by",
                  "claimed_until", "submitted_at", "created_at", "updated_at", "approvals"]
        read_only_fields = fields

    def get_approvals(self, annotation: Annotation) -> list[str]:
        if annotation.current_version_id is None:
            return []
        return [a.reviewer.username for a in annotation.approvals.all() if a.version_id == annotation.current_version_id]


class OpenAnnotationSerializer(serializers.Serializer):
    scan = serializers.IntegerField()


class SaveVersionSerializer(serializers.Serializer):
    """A mask (NIfTI label map of object ids on the PET grid) and what each object id is."""

    base_version = serializers.IntegerField(allow_null=True, help_text="id of the version the edit started from")
    mask = serializers.FileField()
    segments = serializers.JSONField(help_text='[{"id": 1, "label": <label id>}, ...]')
    message = serializers.CharField(max_length=500, required=False, allow_blank=True)

    def validate_segments(self, value):
        if not isinstance(value, list):
            raise serializers.ValidationError("A list of {id, label} objects is expected.")
        return value


class PointSerializer(serializers.Serializer):
    index = serializers.ListField(child=serializers.IntegerField(), min_length=3, max_length=3)
    positive = serializers.BooleanField(default=True)


class SegmentRequestSerializer(serializers.Serializer):
    base_version = serializers.IntegerField(allow_null=True)
    label = serializers.IntegerField()
    engine = serializers.CharField(required=False)
    points = PointSerializer(many=True, required=False)
    box = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField(), min_length=3,
                                                            max_length=3), min_length=2, max_length=2, required=False)


class CommentSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author.username", read_only=True)

    class Meta:
        model = ReviewComment
        fields = ["id", "version", "parent", "author", "body", "object_id", "voxel", "created_at"]
        read_only_fields = ["id", "version", "author", "created_at"]


class ReviewDecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    object_id = serializers.IntegerField(required=False, allow_null=True)
    voxel = serializers.ListField(child=serializers.IntegerField(), min_length=3, max_length=3, required=False,
                                  allow_null=True)


class ReassignSerializer(serializers.Serializer):
    username = serializers.CharField()


class ConsensusSerializer(serializers.Serializer):
    annotations = serializers.ListField(child=serializers.IntegerField(), min_length=2)
    method = serializers.ChoiceField(choices=["union", "intersection", "majority", "pick"])
    picks = serializers.DictField(child=serializers.IntegerField(), required=False,
                                  help_text="label value -> position in `annotations` (for method 'pick')")


class AssignmentSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")
    assigned_by = serializers.CharField(source="assigned_by.username", read_only=True)

    class Meta:
        model = Assignment
        fields = ["id", "scan", "annotator", "assigned_by", "created_at"]
        read_only_fields = ["id", "assigned_by", "created_at"]


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", read_only=True, default=None)

    class Meta:
        model = AuditEvent
        fields = ["id", "actor", "action", "target_type", "target_id", "data", "created_at"]
        read_only_fields = fields
