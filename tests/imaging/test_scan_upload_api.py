"""Uploading scans through the API: DICOM files, zips, NIfTI; bad uploads; volumes; SUV parameters."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from backend.imaging import storage
from backend.imaging.models import Scan, ScanStatus
from backend.imaging.nifti_io import nifti_bytes
from backend.imaging.uploads import staging_root
from tests.base import make_project_world
from worker import phantoms as phantom_module

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


@pytest.fixture
def world():
    return make_project_world("alice")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload(client: Client, project_id: int, data: dict):
    return client.post(f"/api/projects/{project_id}/scans/", data)


def dicom_uploads(directory: Path) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(directory.rglob("*")) if p.is_file()]


def zipped(directory: Path, extra: dict[str, bytes] | None = None) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(directory).as_posix())
        for name, payload in (extra or {}).items():
            bundle.writestr(name, payload)
    return SimpleUploadedFile("study.zip", buffer.getvalue(), content_type="application/zip")


def run_upload(django_capture_on_commit_callbacks, client, project_id, data):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, project_id, data)
    return response


def test_it_works_with_many_dicom_files(world, phantom_dicom_dir, django_capture_on_commit_callbacks):
    client = client_for(world["manager"])
    response = run_upload(django_capture_on_commit_callbacks, client, world["project"].pk,
                          {"files": dicom_uploads(phantom_dicom_dir), "name": "phantom 3"})
    assert response.status_code == 202, response.content
    scan = Scan.objects.get(pk=response.json()["id"])
    assert scan.status == ScanStatus.READY, scan.status_message
    assert scan.name == "phantom 3"
    assert {s.modality for s in scan.series.all()} == {"PT", "CT"}
    assert not any(staging_root().iterdir()), "staging files must be removed after ingest"

    detail = client.get(f"/api/projects/{world['project'].pk}/scans/{scan.pk}/").json()
    assert detail["status"] == "ready" and detail["ingest_progress"] == 1.0
    volume = client.get(f"/api/projects/{world['project'].pk}/scans/{scan.pk}/volumes/pet/")
    assert volume.status_code == 200 and volume["ETag"] == f'"{scan.pet.sha256}"'
    image = nib.Nifti1Image.from_bytes(gzip.decompress(b"".join(volume.streaming_content)))
    assert image.shape == tuple(reversed(scan.pet.shape))
    fused = client.get(f"/api/projects/{world['project'].pk}/scans/{scan.pk}/volumes/ct-on-pet/")
    assert fused.status_code == 200
    ct_on_pet = nib.Nifti1Image.from_bytes(gzip.decompress(b"".join(fused.streaming_content)))
    assert ct_on_pet.shape == image.shape
    np.testing.assert_allclose(ct_on_pet.affine, image.affine, atol=1e-4)
    preview = client.get(f"/api/projects/{world['project'].pk}/scans/{scan.pk}/preview/")
    assert preview.status_code == 200 and preview["Content-Type"] == "image/png"


def test_it_works_with_a_zip(world, phantom_dicom_dir, django_capture_on_commit_callbacks):
    client = client_for(world["manager"])
    response = run_upload(django_capture_on_commit_callbacks, client, world["project"].pk,
                          {"files": [zipped(phantom_dicom_dir, {"DICOMDIR_README.txt": b"not dicom"})]})
    assert response.status_code == 202
    scan = Scan.objects.get(pk=response.json()["id"])
    assert scan.status == ScanStatus.READY, scan.status_message


@pytest.mark.parametrize("evil", ["../../etc/cron.d/x", "/etc/passwd", "C:/windows/evil.dll", "a/../../b"])
def test_path_traversal_zip_is_refused_and_nothing_is_created(world, evil):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("ok.dcm", b"x")
        bundle.writestr(evil, b"owned")
    client = client_for(world["manager"])
    before = Scan.objects.count()
    response = upload(client, world["project"].pk, {"files": [SimpleUploadedFile("evil.zip", buffer.getvalue())]})
    assert response.status_code == 400
    assert "unsafe path" in response.json()["files"][0]
    assert Scan.objects.count() == before
    assert not any(staging_root().iterdir())


def test_corrupt_zip_and_empty_upload(world):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("slice.dcm", b"x" * 5000)
    corrupt = bytearray(buffer.getvalue())
    corrupt[40:60] = b"\xff" * 20  # inside the compressed member
    client = client_for(world["manager"])
    response = upload(client, world["project"].pk, {"files": [SimpleUploadedFile("a.zip", bytes(corrupt))]})
    assert response.status_code == 400, response.content
    assert "zip" in response.json()["files"][0]
    assert not any(staging_root().iterdir())
    response = upload(client, world["project"].pk, {})
    assert response.status_code == 400
    assert "either DICOM" in str(response.json())


def test_malformed_dicom_upload_fails_readably(world, django_capture_on_commit_callbacks):
    client = client_for(world["manager"])
    response = run_upload(django_capture_on_commit_callbacks, client, world["project"].pk,
                          {"files": [SimpleUploadedFile("x.dcm", b"\x00" * 128 + b"DICM" + b"\xff" * 50)]})
    scan = Scan.objects.get(pk=response.json()["id"])
    assert scan.status == ScanStatus.FAILED
    assert "No PET series" in scan.status_message
    assert not scan.series.exists()


def test_annotators_cannot_upload(world, phantom_dicom_dir):
    response = upload(client_for(world["annotator"]), world["project"].pk, {"files": dicom_uploads(phantom_dicom_dir)})
    assert response.status_code == 403


def nifti_file(name: str, array: np.ndarray, affine_lps: np.ndarray) -> SimpleUploadedFile:
    kind = "label" if array.dtype.kind in "ui" else "image"
    return SimpleUploadedFile(name, nifti_bytes(array, affine_lps, kind=kind))


def test_nifti_upload_in_suv_with_labels(world, small_phantom, django_capture_on_commit_callbacks):
    client = client_for(world["manager"])
    affine = small_phantom.pet_affine
    response = run_upload(django_capture_on_commit_callbacks, client, world["project"].pk, {
        "pet": nifti_file("pet.nii.gz", small_phantom.suv, affine), "pet_units": "SUVbw",
        # The project's label set has liver = 1; the phantom's liver is 3.
        "labels": nifti_file("labels.nii.gz", np.where(small_phantom.labels == 3, 1, 0).astype(np.uint8), affine),
    })
    assert response.status_code == 202, response.content
    scan = Scan.objects.get(pk=response.json()["id"])
    assert scan.status == ScanStatus.READY, scan.status_message
    assert client.get(f"/api/projects/{world['project'].pk}/scans/{scan.pk}/").json()["series"][0]["units"] == "SUVbw"
    volume = storage.read_volume(scan.pet.volume_file, scan.pet.sha256)
    np.testing.assert_allclose(volume.array, small_phantom.suv, rtol=1e-6)
    np.testing.assert_allclose(volume.affine, small_phantom.pet_affine, atol=1e-4)
    labels = storage.read_volume(scan.imported_labels_file)
    assert labels.array.shape == small_phantom.shape
    draft = scan.annotations.get()
    assert draft.annotator == world["manager"] and draft.state == "draft"
    assert draft.current_version.source == "imported"
    from backend.annotations.services import label_map

    np.testing.assert_array_equal(label_map(draft.current_version), np.where(small_phantom.labels == 3, 1, 0))


def test_label_values_outside_the_label_set_fail_the_ingest(world, small_phantom, django_capture_on_commit_callbacks):
    response = run_upload(django_capture_on_commit_callbacks, client_for(world["manager"]), world["project"].pk, {
        "pet": nifti_file("pet.nii.gz", small_phantom.suv, small_phantom.pet_affine), "pet_units": "SUV",
        "labels": nifti_file("labels.nii.gz", small_phantom.labels, small_phantom.pet_affine)})
    scan = Scan.objects.get(pk=response.json()["id"])
    assert scan.status == ScanStatus.FAILED and "not in the project's label set" in scan.status_message
    assert not scan.series.exists() and not scan.annotations.exists()


def test_nifti_needs_declared_units(world, small_phantom):
    response = upload(client_for(world["manager"]), world["project"].pk,
                      {"pet": nifti_file("pet.nii.gz", small_phantom.suv, small_phantom.pet_affine)})
    assert response.status_code == 400
    assert "pet_units" in response.json()


def test_nifti_labels_on_another_grid_are_refused(world, small_phantom, django_capture_on_commit_callbacks):
    response = run_upload(django_capture_on_commit_callbacks, client_for(world["manager"]), world["project"].pk, {
        "pet": nifti_file("pet.nii.gz", small_phantom.suv, small_phantom.pet_affine), "pet_units": "SUV",
        "labels": nifti_file("labels.nii.gz", small_phantom.labels[:-1], small_phantom.pet_affine),
    })
    scan = Scan.objects.get(pk=response.json()["id"])
    assert scan.status == ScanStatus.FAILED and "does not match the PET grid" in scan.status_message
    assert not storage.media_path(storage.scan_dir_relative(scan.pk)).exists()


def test_bqml_nifti_then_manager_supplies_suv_parameters(world, small_phantom, django_capture_on_commit_callbacks):
    client = client_for(world["manager"])
    response = run_upload(django_capture_on_commit_callbacks, client, world["project"].pk, {
        "pet": nifti_file("pet.nii.gz", small_phantom.activity_bqml, small_phantom.pet_affine),
        "pet_units": "BQML"})
    scan = Scan.objects.get(pk=response.json()["id"])
    assert scan.status == ScanStatus.NEEDS_SUV_PARAMETERS
    url = f"/api/projects/{world['project'].pk}/scans/{scan.pk}/suv-parameters/"
    incomplete = client.post(url, {"patient_weight_kg": 70}, content_type="application/json")
    assert incomplete.status_code == 400 and "injected_dose_bq" in str(incomplete.json())
    scan.refresh_from_db()
    assert scan.status == ScanStatus.NEEDS_SUV_PARAMETERS
    response = client.post(url, {
        "patient_weight_kg": small_phantom.patient.weight_kg,
        "injected_dose_bq": small_phantom.injected_dose_bq,
        "injection_datetime": small_phantom.injection_datetime.isoformat() + "Z",
        "scan_datetime": small_phantom.scan_datetime.isoformat() + "Z",
        "half_life_s": small_phantom.half_life_s,
    }, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ready"
    scan.refresh_from_db()
    volume = storage.read_volume(scan.pet.volume_file, scan.pet.sha256)
    np.testing.assert_allclose(volume.array, small_phantom.suv, rtol=1e-3, atol=1e-4)


def test_dicom_missing_weight_then_supplied(world, small_phantom, tmp_path, django_capture_on_commit_callbacks):
    phantom_module.write_dicom_series(small_phantom, tmp_path, write_ct=False, omit_tags=["PatientWeight"])
    client = client_for(world["manager"])
    response = run_upload(django_capture_on_commit_callbacks, client, world["project"].pk,
                          {"files": dicom_uploads(tmp_path)})
    scan = Scan.objects.get(pk=response.json()["id"])
    assert scan.status == ScanStatus.NEEDS_SUV_PARAMETERS
    url = f"/api/projects/{world['project'].pk}/scans/{scan.pk}/suv-parameters/"
    assert client_for(world["annotator"]).post(url, {"patient_weight_kg": 70},
                                               content_type="application/json").status_code == 403
    response = client.post(url, {"patient_weight_kg": small_phantom.patient.weight_kg},
                           content_type="application/json")
    assert response.status_code == 200, response.content
    scan.refresh_from_db()
    volume = storage.read_volume(scan.pet.volume_file, scan.pet.sha256)
    np.testing.assert_allclose(volume.array, small_phantom.suv, atol=2e-3 * small_phantom.suv.max())
    assert scan.pet.suv["overrides"]["patient_weight_kg"] == small_phantom.patient.weight_kg


def test_deleting_a_scan_removes_its_files(world, phantom_dicom_dir, django_capture_on_commit_callbacks):
    client = client_for(world["manager"])
    response = run_upload(django_capture_on_commit_callbacks, client, world["project"].pk,
                          {"files": dicom_uploads(phantom_dicom_dir)})
    scan_id = response.json()["id"]
    folder = storage.media_path(storage.scan_dir_relative(scan_id))
    assert folder.exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/projects/{world['project'].pk}/scans/{scan_id}/").status_code == 204
    assert not folder.exists()
