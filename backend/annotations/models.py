from __future__ import annotations

from django.conf import settings
from django.db import models

from backend.imaging.models import Scan
from backend.projects.models import Project


class AnnotationState(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"


class Annotation(models.Model):
    """One reader's labelled objects on one scan; its content lives in immutable versions."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotations")
    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations")
    state = models.CharField(max_length=20, choices=AnnotationState.choices, default=AnnotationState.DRAFT)
    current_version = models.ForeignKey(
        "AnnotationVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_consensus = models.BooleanField(default=False)
    merged_from = models.ManyToManyField("self", blank=True, symmetrical=False, related_name="merged_into")
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_until = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["scan", "annotator"], condition=models.Q(is_consensus=False), name="one_annotation_per_reader"
            )
        ]
        indexes = [models.Index(fields=["project", "state", "submitted_at"])]

    def __str__(self) -> str:
        return f"{'consensus' if self.is_consensus else self.annotator} on {self.scan} ({self.state})"


class AnnotationVersion(models.Model):
    """An immutable snapshot: a label map of object ids on the PET grid plus what each object is."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=50, help_text="engine name, 'manual', 'imported' or 'consensus'")
    mask_file = models.CharField(max_length=300)
    sha256 = models.CharField(max_length=64)
    # What each object id in the mask is: [{"id": object id, "label": label id, "voxels": count}]
    segments = models.JSONField(default=list)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["annotation", "number"]
        constraints = [models.UniqueConstraint(fields=["annotation", "number"], name="unique_version_number")]

    def __str__(self) -> str:
        return f"v{self.number} of annotation {self.annotation_id}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("Annotation versions are immutable")
        super().save(*args, **kwargs)


class Approval(models.Model):
    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="approvals")
    version = models.ForeignKey(AnnotationVersion, on_delete=models.PROTECT, related_name="approvals")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "reviewer"], name="one_approval_per_reviewer")]


class ReviewComment(models.Model):
    """Threaded review comments, optionally pinned to an object or a voxel of a version."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="comments")
    version = models.ForeignKey(AnnotationVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    object_id = models.PositiveIntegerField(null=True, blank=True)
    voxel = models.JSONField(null=True, blank=True, help_text="[slice, row, col] on the PET grid")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]


class Assignment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(fields=["scan", "annotator"], name="one_assignment_per_reader")]


class AuditEvent(models.Model):
    """Append-only record of every save, state change, assignment, claim, comment and export."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=50)
    target_type = models.CharField(max_length=50)
    target_id = models.PositiveBigIntegerField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "created_at"]), models.Index(fields=["target_type", "target_id"])]

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("Audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only")


