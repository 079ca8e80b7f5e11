from __future__ import annotations

from django.conf import settings
from django.db import models

from backend.projects.models import Project


class ScanStatus(models.TextChoices):
    PENDING = "pending", "Waiting for ingest"
    INGESTING = "ingesting", "Ingesting"
    READY = "ready", "Ready"
    NEEDS_SUV_PARAMETERS = "needs_suv_parameters", "Needs SUV parameters"
    FAILED = "failed", "Failed"
    # A stored volume no longer matches the checksum taken at ingest: nothing is segmented or exported from it.
    DAMAGED = "damaged", "Damaged"


class Scan(models.Model):
    """One PET examination (with an optional CT) inside a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scans")
    name = models.CharField(max_length=200, help_text="Display name, e.g. accession or pseudonym.")
    patient_id = models.CharField(max_length=64, blank=True)
    patient_sex = models.CharField(max_length=1, blank=True)
    patient_age = models.CharField(max_length=8, blank=True)
    patient_weight_kg = models.FloatField(null=True, blank=True)
    patient_height_m = models.FloatField(null=True, blank=True)
    study_instance_uid = models.CharField(max_length=64, blank=True)
    study_date = models.DateField(null=True, blank=True)
    study_description = models.CharField(max_length=200, blank=True)
    tracer = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=32, choices=ScanStatus.choices, default=ScanStatus.PENDING)
    status_message = models.TextField(blank=True)
    ingest_progress = models.FloatField(default=0.0)
    # Set at every ingest step: an "ingesting" scan whose heartbeat stopped lost its process (recovery.py).
    ingest_heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The upload's staging folder while it waits for (or goes through) ingest, for recovery to remove.
    staging_dir = models.CharField(max_length=500, blank=True)
    imported_labels_file = models.CharField(
        max_length=300, blank=True, help_text="Label map uploaded with the scan (becomes a draft annotation)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def pet(self) -> Series | None:
        return next((s for s in self.series.all() if s.modality == Modality.PET), None)

    @property
    def ct(self) -> Series | None:
        return next((s for s in self.series.all() if s.modality == Modality.CT), None)


class Modality(models.TextChoices):
    PET = "PT", "PET"
    CT = "CT", "CT"


class Series(models.Model):
    """One image volume of a scan, on its own grid, stored as one canonical file."""

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="series")
    modality = models.CharField(max_length=2, choices=Modality.choices)
    series_instance_uid = models.CharField(max_length=64, blank=True)
    frame_of_reference_uid = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=200, blank=True)
    manufacturer = models.CharField(max_length=100, blank=True)
    acquisition_datetime = models.DateTimeField(null=True, blank=True)
    # Geometry in the stored array's axis order; affine maps voxel index to patient mm (LPS).
    shape = models.JSONField(default=list)
    spacing = models.JSONField(default=list)
    affine = models.JSONField(default=list)
    # Units of the stored voxels: the SUV type when SUV could be computed ("SUVbw" whenever the header allows,
    # else what the values are, e.g. "SULjames" for GML/LBM without a height), else the raw units (BQML, HU).
    units = models.CharField(max_length=16, blank=True)
    raw_units = models.CharField(max_length=16, blank=True)
    suv = models.JSONField(default=dict, blank=True, help_text="SUV computation: status, rule, factors.")
    suv_type = models.CharField(max_length=16, blank=True, help_text="SUV type of the stored voxels; empty if none.")
    suv_conversions = models.JSONField(
        default=dict, blank=True, help_text="SUV type -> multiplier from the stored voxels (1.0 for suv_type).")
    suv_unavailable = models.JSONField(
        default=dict, blank=True, help_text="SUV type -> why the header does not allow it (e.g. sex 'O').")
    volume_file = models.CharField(max_length=300, blank=True, help_text="Path inside MEDIA_ROOT.")
    preview_file = models.CharField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    # DICOM instances of the source series, in array slice order (empty for NIfTI uploads): what a DICOM
    # SEG export references.
    sop_class_uid = models.CharField(max_length=64, blank=True)
    sop_instance_uids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["scan", "modality"]
        constraints = [models.UniqueConstraint(fields=["scan", "modality"], name="one_series_per_modality")]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return f"{self.get_modality_display()} of {self.scan}"
