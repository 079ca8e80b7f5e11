from __future__ import annotations

from django.db import models

from backend.annotations.models import AnnotationVersion
from backend.projects.models import Project


class StatisticsStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class VersionStatistics(models.Model):
    """Per-object PET statistics of one (immutable) annotation version, and the scan totals it gives.

    `object_stats`: [{"id", "label", "label_name", "label_value", "kind", "voxels", "volume_ml", "suv_max",
    "suv_mean", "suv_peak", "mtv_ml", "tlg", "suv_max_index", "suv_peak_index", "hu_mean", "units",
    "by_type": {SUV type: {"suv_max", "suv_mean", "suv_peak", "tlg"}}}] sorted by id. suv_* and tlg are in `units`
    (the PET's stored SUV type); by_type gives them in every other type the header allows (PERCIST: "SUL").
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    version = models.OneToOneField(AnnotationVersion, on_delete=models.CASCADE, related_name="statistics")
    status = models.CharField(max_length=10, choices=StatisticsStatus.choices, default=StatisticsStatus.PENDING)
    message = models.TextField(blank=True)
    units = models.CharField(max_length=16, blank=True, help_text="PET voxel units (SUVbw, or raw units)")
    voxel_volume_ml = models.FloatField(null=True, blank=True)
    object_stats = models.JSONField(default=list, blank=True)
    lesion_count = models.PositiveIntegerField(default=0)
    total_mtv_ml = models.FloatField(default=0.0)
    total_tlg = models.FloatField(default=0.0)
    has_ct = models.BooleanField(default=False)
    method = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version_id"]
        verbose_name_plural = "version statistics"

    def __str__(self) -> str:
        return f"statistics of {self.version} ({self.status})"
