"""DICOM ingest through the service: geometry, SUV, CT, metadata, and all-or-nothing failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.imaging import storage
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan, ScanStatus, Series
from backend.projects.models import Project
from worker import phantoms as phantom_module

pytestmark = pytest.mark.django_db


def files_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


@pytest.fixture
def project():
    return Project.objects.create(name="ingest")


def new_scan(project, **fields) -> Scan:
    return Scan.objects.create(project=project, **fields)


def test_it_ingests_pet_and_ct_into_suv(project, small_phantom, phantom_dicom_dir):
    scan = ingest_dicom(new_scan(project), files_in(phantom_dicom_dir))
    assert scan.status == ScanStatus.READY, scan.status_message
    pet, ct = scan.pet, scan.ct
    assert pet.units == "SUVbw" and pet.suv["status"] == "ok"
    volume = storage.read_volume(pet.volume_file, pet.sha256)
    assert volume.array.shape == small_phantom.shape
    np.testing.assert_allclose(volume.array, small_phantom.suv, atol=2e-3 * small_phantom.suv.max())
    np.testing.assert_allclose(np.array(pet.affine), small_phantom.pet_affine, atol=1e-3)
    assert ct is not None and ct.units == "HU"
    ct_volume = storage.read_volume(ct.volume_file, ct.sha256)
    np.testing.assert_allclose(ct_volume.array, small_phantom.ct_hu, atol=1.0)
    assert scan.patient_weight_kg == pytest.approx(small_phantom.patient.weight_kg, rel=1e-3)
    assert scan.tracer and scan.study_instance_uid
    assert storage.media_path(pet.preview_file).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("variant", [{"feet_first": True}, {"orientation": "oblique"}])
def test_orientation_variants_keep_geometry(project, tmp_path, variant):
    phantom = phantom_module.make_phantom(seed=11, n_lesions=2, **variant)
    phantom_module.write_dicom_series(phantom, tmp_path, write_ct=False, scramble_instance_numbers=True)
    scan = ingest_dicom(new_scan(project), files_in(tmp_path))
    assert scan.status == ScanStatus.READY, scan.status_message
    volume = storage.read_volume(scan.pet.volume_file, scan.pet.sha256)
    np.testing.assert_allclose(np.array(scan.pet.affine), phantom.pet_affine, atol=1e-3)
    np.testing.assert_allclose(volume.array, phantom.suv, atol=2e-3 * phantom.suv.max())


def test_missing_weight_imports_with_needs_suv_parameters(project, small_phantom, tmp_path):
    phantom_module.write_dicom_series(small_phantom, tmp_path, write_ct=False, omit_tags=["PatientWeight"])
    scan = ingest_dicom(new_scan(project), files_in(tmp_path))
    assert scan.status == ScanStatus.NEEDS_SUV_PARAMETERS
    assert "weight" in scan.status_message.lower()
    assert scan.pet.units == "BQML"
    volume = storage.read_volume(scan.pet.volume_file, scan.pet.sha256)
    np.testing.assert_allclose(volume.array, small_phantom.activity_bqml, rtol=2e-3,
                               atol=2e-3 * small_phantom.activity_bqml.max())


def test_not_attenuation_corrected_keeps_raw_units_with_a_warning(project, small_phantom, tmp_path):
    phantom_module.write_dicom_series(small_phantom, tmp_path, write_ct=False, corrected_image=["DECY"])
    scan = ingest_dicom(new_scan(project), files_in(tmp_path))
    assert scan.status == ScanStatus.READY
    assert scan.pet.units == "BQML"
    assert "No SUV" in scan.status_message and "not attenuation corrected" in scan.status_message


def test_missing_slice_fails_with_a_clear_message_and_leaves_nothing(project, small_phantom, tmp_path):
    phantom_module.write_dicom_series(small_phantom, tmp_path, write_ct=False)
    pet_files = files_in(tmp_path)
    pet_files[len(pet_files) // 2].unlink()
    scan = ingest_dicom(new_scan(project), files_in(tmp_path))
    assert scan.status == ScanStatus.FAILED
    assert "PET series cannot be used" in scan.status_message and "slice" in scan.status_message.lower()
    assert not Series.objects.filter(scan=scan).exists()
    assert not storage.media_path(storage.scan_dir_relative(scan.pk)).exists()


def test_no_pet_in_upload(project, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    scan = ingest_dicom(new_scan(project), files_in(tmp_path))
    assert scan.status == ScanStatus.FAILED
    assert "No PET series found" in scan.status_message and "not a DICOM file" in scan.status_message


def test_two_studies_in_one_upload_are_refused(project, tmp_path):
    for seed in (1, 2):
        phantom = phantom_module.make_phantom(seed=seed, n_lesions=1, shape=(20, 32, 32))
        phantom_module.write_dicom_series(phantom, tmp_path / str(seed), write_ct=False)
    scan = ingest_dicom(new_scan(project), files_in(tmp_path))
    assert scan.status == ScanStatus.FAILED
    assert "2 PET studies" in scan.status_message


def test_unexpected_errors_fail_cleanly(project, phantom_dicom_dir, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(storage, "coronal_mip_png", explode)
    scan = ingest_dicom(new_scan(project), files_in(phantom_dicom_dir))
    assert scan.status == ScanStatus.FAILED
    assert "unexpectedly" in scan.status_message and "disk on fire" not in scan.status_message
    assert not Series.objects.filter(scan=scan).exists()
    assert not storage.media_path(storage.scan_dir_relative(scan.pk)).exists()


def test_corrupt_file_among_good_ones_is_skipped(project, small_phantom, tmp_path, phantom_dicom_dir):
    shutil.copytree(phantom_dicom_dir, tmp_path / "study")
    (tmp_path / "study" / "garbage.dcm").write_bytes(b"DICM" * 10)
    scan = ingest_dicom(new_scan(project), files_in(tmp_path))
    assert scan.status == ScanStatus.READY, scan.status_message
