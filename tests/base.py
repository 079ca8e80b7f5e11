"""Shared test fixtures: two projects, each with its own people, as in healthchecks' BaseTestCase."""

from __future__ import annotations

import numpy as np
from django.contrib.auth.models import User
from django.test import TestCase

from backend.annotations.models import Annotation, Assignment
from backend.annotations.services import open_annotation, save_version
from backend.exports.models import ExportJob
from backend.imaging import storage
from backend.imaging.models import Modality, Scan, Series
from backend.pacs.models import DicomWebSource, PacsImport, PushStatus, SegPush
from backend.projects.models import Label, LabelKind, Membership, Project
from backend.quantification.services import compute_for_version


def make_user(username: str) -> User:
    return User.objects.create_user(username=username, password="password")


def add_tiny_series(scan: Scan) -> None:
    """A 4×4×4 PET (SUV) and CT with real files in the media store."""
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    pet = np.arange(64, dtype=np.float32).reshape(4, 4, 4) / 10
    for modality, values, units in ((Modality.PET, pet, "SUVbw"), (Modality.CT, pet * 100 - 500, "HU")):
        relative = f"scans/{scan.pk}/{modality.lower()}.nii.gz"
        sha256 = storage.write_volume(relative, values, affine)
        Series.objects.create(scan=scan, modality=modality, shape=[4, 4, 4], spacing=[4.0, 4.0, 4.0],
                              affine=affine.tolist(), units=units, volume_file=relative, sha256=sha256,
                              preview_file=f"scans/{scan.pk}/pet_mip.png" if modality == Modality.PET else "")
    storage.write_atomically(f"scans/{scan.pk}/pet_mip.png", storage.coronal_mip_png(pet, affine))


def make_project_world(prefix: str) -> dict:
    """A project with a manager, an annotator, a reviewer, one label and one ready scan."""
    project = Project.objects.create(name=f"{prefix} project")
    people = {}
    for role in ("manager", "annotator", "reviewer"):
        user = make_user(f"{prefix}_{role}")
        membership = Membership(project=project, user=user)
        membership.set_roles([role])
        membership.save()
        people[role] = user
    label = Label.objects.create(project=project, name="liver", value=1, color="#aa5500", kind=LabelKind.ORGAN)
    scan = Scan.objects.create(project=project, name=f"{prefix} scan", tracer="FDG", status="ready")
    add_tiny_series(scan)
    annotation = add_annotation(scan, people["annotator"], label)
    Assignment.objects.create(project=project, scan=scan, annotator=people["annotator"], assigned_by=people["manager"])
    compute_for_version(annotation.current_version)  # its statistics (saving queues them after the commit)
    ExportJob.objects.create(project=project, created_by=people["manager"], settings={})  # a pending export
    add_pacs_records(project, scan, annotation)
    return {"project": project, "label": label, "scan": scan, "annotation": annotation, **people}


def add_pacs_records(project: Project, scan: Scan, annotation: Annotation) -> None:
    """A DICOMweb source (nothing listens there), the scan as imported from it, and a failed SEG push."""
    url = "http://127.0.0.1:9/dicom-web"
    source = DicomWebSource.objects.create(project=project, name="pacs", qido_url=url, wado_url=url, stow_url=url)
    PacsImport.objects.create(project=project, source=source, scan=scan, status="done",
                              study_instance_uid=f"1.2.826.0.1.3680043.10.{project.pk}")
    SegPush.objects.create(project=project, annotation=annotation, version=annotation.current_version, source=source,
                           status=PushStatus.FAILED, message="the PACS cannot be reached")


def add_annotation(scan: Scan, annotator: User, label: Label) -> Annotation:
    """A draft annotation with one version holding one 2×2×2 object."""
    annotation, _ = open_annotation(scan, annotator)
    objects = np.zeros((4, 4, 4), dtype=np.uint8)
    objects[1:3, 1:3, 1:3] = 1
    save_version(annotation, annotator, base_version_id=None, object_map=objects,
                 segments=[{"id": 1, "label": label.pk}], source="manual")
    annotation.refresh_from_db()
    return annotation


class BaseTestCase(TestCase):
    def setUp(self) -> None:
        super().setUp()
        mine = make_project_world("alice")
        self.project = mine["project"]
        self.manager, self.annotator, self.reviewer = mine["manager"], mine["annotator"], mine["reviewer"]
        self.label, self.scan = mine["label"], mine["scan"]
        theirs = make_project_world("charlie")
        self.other_project = theirs["project"]
        self.other_manager = theirs["manager"]
        self.other_scan, self.other_label = theirs["scan"], theirs["label"]
        self.outsider = make_user("mallory")  # member of nothing

    def login(self, user: User) -> None:
        self.client.force_login(user)
