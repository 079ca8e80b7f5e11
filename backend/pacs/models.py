"""DICOMweb sources of a project, study imports from them, and DICOM SEG pushes back to them."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from backend.annotations.models import Annotation, AnnotationVersion
from backend.imaging.models import Scan
from backend.projects.models import Project


class AuthKind(models.TextChoices):
    NONE = "none", "No authentication"
    BASIC = "basic", "HTTP basic (user name and password)"
    BEARER = "bearer", "Bearer token"


class DicomWebSource(models.Model):
    """A PACS (or any DICOMweb service) a project reads studies from and sends segmentations to.

    The secret (password or token) is never stored in clear: either `secret_ref` names an environment
    variable of the server ("env:ORTHANC_PASSWORD"), or `secret_encrypted` holds it encrypted with a key
    derived from SECRET_KEY (see secrets.py). The API only says which of the two is set.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dicomweb_sources")
    name = models.CharField(max_length=100)
    qido_url = models.URLField(max_length=500, help_text="QIDO-RS base URL (search), e.g. http://pacs/dicom-web")
    wado_url = models.URLField(max_length=500, help_text="WADO-RS base URL (retrieve)")
    stow_url = models.URLField(max_length=500, blank=True, help_text="STOW-RS base URL (store); empty: no push")
    auth = models.CharField(max_length=10, choices=AuthKind.choices, default=AuthKind.NONE)
    username = models.CharField(max_length=200, blank=True)
    secret_ref = models.CharField(max_length=200, blank=True)
    secret_encrypted = models.TextField(blank=True)
    push_on_approval = models.BooleanField(
        default=False, help_text="Send each approved annotation of a scan imported from here back as DICOM SEG.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="one_source_name_per_project")]

    def __str__(self) -> str:
        return self.name


class ImportStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    RETRIEVING = "retrieving", "Retrieving from the PACS"
    INGESTING = "ingesting", "Ingesting"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class PacsImport(models.Model):
    """One study brought in from a source into one scan; one per study and project.

    Retrieved instances are kept in `staging_dir` under their SOP Instance UID until the ingest has
    succeeded, so a retrieve that broke off resumes with what is missing (and nothing twice).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pacs_imports")
    source = models.ForeignKey(DicomWebSource, on_delete=models.PROTECT, related_name="imports")
    scan = models.OneToOneField(Scan, on_delete=models.CASCADE, related_name="pacs_import")
    study_instance_uid = models.CharField(max_length=64)
    # Chosen series: [{"uid", "modality", "description", "instances"}], the PET first.
    series = models.JSONField(default=list)
    patient_id = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=200, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=12, choices=ImportStatus.choices, default=ImportStatus.PENDING)
    resumable = models.BooleanField(default=False, help_text="Failed while talking to the PACS: resume retrieves "
                                                             "only what is missing.")
    message = models.TextField(blank=True)
    instances_total = models.PositiveIntegerField(default=0)
    instances_retrieved = models.PositiveIntegerField(default=0)
    staging_dir = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "study_instance_uid"],
                                               name="one_import_per_study_and_project")]

    def __str__(self) -> str:
        return f"import of {self.study_instance_uid}"


class PushStatus(models.TextChoices):
    PENDING = "pending", "Waiting"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class SegPush(models.Model):
    """One annotation version sent (or to be sent) as a DICOM SEG to one source."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="seg_pushes")
    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="seg_pushes")
    version = models.ForeignKey(AnnotationVersion, on_delete=models.CASCADE, related_name="seg_pushes")
    source = models.ForeignKey(DicomWebSource, on_delete=models.PROTECT, related_name="pushes")
    status = models.CharField(max_length=10, choices=PushStatus.choices, default=PushStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the automatic retry is due.")
    series_instance_uid = models.CharField(max_length=64, blank=True)
    sop_instance_uid = models.CharField(max_length=64, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["version", "source"], name="one_push_per_version_and_source")]

    def __str__(self) -> str:
        return f"SEG push of version {self.version_id} to {self.source}"
