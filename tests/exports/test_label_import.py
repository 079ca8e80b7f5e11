"""Round trip: an exported DICOM SEG or NIfTI label map comes back as a draft annotation version."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from backend.annotations.models import Annotation
from backend.annotations.services import label_map
from backend.imaging.nifti_io import nifti_bytes
from tests.base import make_project_world
from tests.exports import helpers

pytestmark = pytest.mark.slow


def exported(dicom_world, capture, fmt: str) -> dict[int, bytes]:
    client = helpers.client_for(dicom_world["manager"])
    job = helpers.export(client, dicom_world["project"].pk, capture, {"formats": [fmt]})
    archive, _ = helpers.open_archive(helpers.download(client, job))
    files = {}
    for scan in dicom_world["phantom_scans"]:
        stem = f"scan{scan.pk:05d}/annotation{scan.annotations.get().pk:05d}_v1"
        files[scan.pk] = archive.read(f"dicom_seg/{stem}.dcm" if fmt == "dicom_seg" else f"nifti/{stem}_labels.nii.gz")
    return files


def upload(client, project_id: int, scan_id: int, payload: bytes, name: str):
    return client.post(f"/api/projects/{project_id}/label-imports/",
                       {"scan": scan_id, "file": SimpleUploadedFile(name, payload)})


@pytest.mark.parametrize("fmt,name", [("dicom_seg", "seg.dcm"), ("nifti", "labels.nii.gz")])
def test_it_works(dicom_world, eager_tasks, django_capture_on_commit_callbacks, fmt, name):
    files = exported(dicom_world, django_capture_on_commit_callbacks, fmt)
    scan = dicom_world["phantom_scans"][0]
    source = scan.annotations.get()
    client = helpers.client_for(dicom_world["manager"])  # a second reader of the scan
    response = upload(client, dicom_world["project"].pk, scan.pk, files[scan.pk], name)
    assert response.status_code == 201, response.content
    body = response.json()
    imported = Annotation.objects.get(pk=body["annotation"])
    assert imported.pk != source.pk and imported.annotator == dicom_world["manager"] and imported.state == "draft"
    assert body["source"] == "imported" and name in body["message"]
    assert np.array_equal(label_map(imported.current_version), label_map(source.current_version))
    lesions = [s for s in imported.current_version.segments if s["label"] == dicom_world["lesion_label"].pk]
    assert len(lesions) == len(dicom_world["phantoms"][0].lesions)  # one object per lesion component


def test_it_checks_membership(dicom_world):
    other = make_project_world("charlie")
    scan = dicom_world["phantom_scans"][0]
    payload = nifti_bytes(np.zeros(scan.pet.shape, dtype=np.uint8), np.asarray(scan.pet.affine), kind="label")
    response = upload(helpers.client_for(other["annotator"]), dicom_world["project"].pk, scan.pk, payload, "x.nii.gz")
    assert response.status_code == 404
    # Through their own project, our scan does not exist.
    response = upload(helpers.client_for(other["annotator"]), other["project"].pk, scan.pk, payload, "x.nii.gz")
    assert response.status_code == 404
    assert upload(helpers.client_for(dicom_world["reviewer"]), dicom_world["project"].pk, scan.pk, payload,
                  "x.nii.gz").status_code == 403


def test_bad_files_get_a_400(dicom_world, eager_tasks, django_capture_on_commit_callbacks):
    seg = exported(dicom_world, django_capture_on_commit_callbacks, "dicom_seg")
    first, second = dicom_world["phantom_scans"]
    client = helpers.client_for(dicom_world["manager"])
    project = dicom_world["project"].pk
    corrupt = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI" + b"garbage" * 50
    truncated = seg[first.pk][: len(seg[first.pk]) // 2]
    wrong_grid = nifti_bytes(np.ones((4, 4, 4), dtype=np.uint8), np.eye(4), kind="label")
    unknown_value = nifti_bytes(np.full(first.pet.shape, 7, dtype=np.uint8), np.asarray(first.pet.affine), kind="label")
    cases = [(first.pk, corrupt, "corrupt.dcm", "SEG"), (first.pk, truncated, "cut.dcm", "SEG"),
             (second.pk, seg[first.pk], "other-scan.dcm", "does not reference"),
             (first.pk, b"not a nifti at all", "x.nii.gz", "NIfTI"),
             (first.pk, wrong_grid, "grid.nii.gz", "PET grid"), (first.pk, unknown_value, "v.nii.gz", "label set")]
    for scan_id, payload, name, message in cases:
        response = upload(client, project, scan_id, payload, name)
        assert response.status_code == 400, (name, response.content)
        assert message in response.json()["detail"], (name, response.json())
    assert not Annotation.objects.filter(annotator=dicom_world["manager"]).exists()


def test_a_seg_cannot_go_onto_a_scan_without_dicom_sources(dicom_world, eager_tasks,
                                                           django_capture_on_commit_callbacks):
    seg = exported(dicom_world, django_capture_on_commit_callbacks, "dicom_seg")
    client = helpers.client_for(dicom_world["manager"])
    response = upload(client, dicom_world["project"].pk, dicom_world["scan"].pk,
                      next(iter(seg.values())), "seg.dcm")
    assert response.status_code == 400 and "not ingested from DICOM" in response.json()["detail"]
