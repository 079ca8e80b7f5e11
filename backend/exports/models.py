from __future__ import annotations

from django.conf import settings
from django.db import models

from backend.projects.models import Project


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV and JSON of per-lesion and per-scan statistics"
    DICOM_SEG = "dicom_seg", "DICOM SEG per annotation version"
    NIFTI = "nifti", "NIfTI image + label map per scan"
    NNUNET = "nnunet", "nnU-Net v2 raw dataset"


class ExportJob(models.Model):
    """One dataset export of a project: what was asked (`settings`), its progress and its archive."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="export_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Normalised filter and formats (every default filled in); also written into the archive's manifest.
    settings = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True)
    archive_file = models.CharField(max_length=300, blank=True, help_text="Path inside MEDIA_ROOT (never public).")
    archive_sha256 = models.CharField(max_length=64, blank=True)
    archive_bytes = models.BigIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True, help_text="Counts and notes from the manifest.")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life of the running worker.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.project} ({self.status})"
