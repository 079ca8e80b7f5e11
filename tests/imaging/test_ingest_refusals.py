"""Ingest refuses PET volumes with non-finite voxels and DICOM series that mix patients, studies or frames of
reference, with a message that says what and where; nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from backend.imaging.ingest import ingest_dicom, ingest_nifti
from backend.imaging.models import Scan, ScanStatus, Series
from backend.imaging.nifti_io import write_nifti
from backend.projects.models import Project
from tests.imaging_pure.suv_reference import case_named, write_series

pytestmark = pytest.mark.django_db


@pytest.fixture
def scan():
    return Scan.objects.create(project=Project.objects.create(name="refusals"), name="refused")


def test_non_finite_pet_voxels_are_refused_with_a_count_and_a_position(scan, tmp_path: Path):
    pet = np.ones((3, 4, 5), dtype=np.float32)
    pet[1, 2, 3] = np.nan
    pet[2, 0, 0] = np.inf
    pet[2, 3, 4] = np.nan
    path = write_nifti(tmp_path / "pet.nii.gz", pet, np.diag([3.0, 2.0, 2.0, 1.0]))
    scan = ingest_nifti(scan, path, "SUV")
    assert scan.status == ScanStatus.FAILED
    assert scan.status_message == (
        "The PET volume holds 3 non-finite voxel(s) (2 NaN, 1 +inf); the first is at [slice, row, col] = [1, 2, 3]. "
        "Statistics cannot be computed over them: fix or remove those values and upload again.")
    assert not Series.objects.filter(scan=scan).exists()


@pytest.mark.parametrize(("keyword", "plural"), [("PatientID", "patients"), ("StudyInstanceUID", "studies"),
                                                 ("FrameOfReferenceUID", "frames of reference")])
def test_a_series_mixing_patients_studies_or_frames_is_refused(scan, tmp_path: Path, keyword, plural):
    def value(k: int) -> str:
        return ("1.2.3.4" if k < 3 else "1.2.3.5") if keyword != "PatientID" else ("P-A" if k < 3 else "P-B")

    paths = write_series(case_named("bqml-start-series-time"), tmp_path, **{keyword: value})
    scan = ingest_dicom(scan, paths)
    series_uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    assert scan.status == ScanStatus.FAILED
    assert scan.status_message == (
        f"The PET series cannot be used: Series {series_uid} mixes 2 {plural} ({keyword}): "
        f"'{value(0)}' in 3 file(s), '{value(3)}' in 1 file(s) (e.g. slice003.dcm). A series must come from one "
        "patient, one study and one frame of reference; upload each separately")
    assert not Series.objects.filter(scan=scan).exists()
