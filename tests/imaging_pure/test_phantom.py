"""Synthetic PET/CT phantom: determinism, anatomy, DICOM attributes, NIfTI label export."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from backend.imaging.nifti_io import read_nifti
from worker import phantoms as phantom_module
from worker.phantoms import (
    LABEL_NAMES,
    LESION_LABEL,
    make_phantom,
    write_dicom_series,
    write_label_nifti,
)


@pytest.fixture(scope="module")
def fdg() -> phantom_module.Phantom:
    return make_phantom(seed=11, n_lesions=6)


def _organ_mean(phantom: phantom_module.Phantom, name: str) -> float:
    value = next(key for key, label in phantom.label_names.items() if label == name)
    return float(phantom.true_suv[phantom.labels == value].mean())


def test_same_seed_gives_identical_phantom(fdg: phantom_module.Phantom) -> None:
    again = make_phantom(seed=11, n_lesions=6)
    np.testing.assert_array_equal(again.suv, fdg.suv)
    np.testing.assert_array_equal(again.labels, fdg.labels)
    np.testing.assert_array_equal(again.lesion_labels, fdg.lesion_labels)
    np.testing.assert_array_equal(again.ct_hu, fdg.ct_hu)
    np.testing.assert_array_equal(again.pet_affine, fdg.pet_affine)
    assert again.lesions == fdg.lesions
    assert again.patient == fdg.patient
    assert again.injection_datetime == fdg.injection_datetime
    assert again.uid("study") == fdg.uid("study")


def test_other_seed_gives_other_phantom(fdg: phantom_module.Phantom) -> None:
    other = make_phantom(seed=12, n_lesions=6)
    assert not np.array_equal(other.suv, fdg.suv)
    assert other.uid("study") != fdg.uid("study")


def test_volumes_have_the_documented_shapes_and_types(fdg: phantom_module.Phantom) -> None:
    assert fdg.suv.shape == (80, 64, 64) and fdg.suv.dtype == np.float32
    assert fdg.labels.shape == fdg.suv.shape and fdg.labels.dtype == np.uint8
    assert fdg.ct_hu.shape == (80, 128, 128) and fdg.ct_hu.dtype == np.int16
    assert fdg.pet_spacing == pytest.approx((4.0, 4.0, 4.0))
    assert fdg.ct_spacing == pytest.approx((4.0, 2.0, 2.0))
    assert fdg.label_names == LABEL_NAMES
    # PET and CT share the field of view: the centres of both grids coincide.
    pet_centre = fdg.pet_affine[:3, :3] @ ((np.array(fdg.suv.shape) - 1) / 2) + fdg.pet_affine[:3, 3]
    ct_centre = fdg.ct_affine[:3, :3] @ ((np.array(fdg.ct_hu.shape) - 1) / 2) + fdg.ct_affine[:3, 3]
    np.testing.assert_allclose(pet_centre, ct_centre, atol=1e-9)


def test_activity_and_suv_are_linked_by_the_suv_factor(fdg: phantom_module.Phantom) -> None:
    np.testing.assert_allclose(fdg.activity_bqml * fdg.suv_factor, fdg.suv, rtol=1e-5, atol=1e-6)
    weight_g = fdg.patient.weight_kg * 1000
    decayed = fdg.injected_dose_bq * 0.5 ** (fdg.uptake_time_s / fdg.half_life_s)
    assert fdg.suv_factor == pytest.approx(weight_g / decayed)


def test_fdg_uptake_is_anatomically_plausible(fdg: phantom_module.Phantom) -> None:
    liver = _organ_mean(fdg, "liver")
    assert 1.3 <= liver <= 3.0  # the usual FDG liver quality check
    assert _organ_mean(fdg, "brain") > 5.0
    assert _organ_mean(fdg, "bladder") > 10.0
    assert _organ_mean(fdg, "lung_left") < liver
    assert fdg.suv[~fdg.body_mask].mean() < 0.2
    for name in LABEL_NAMES.values():
        if name != "lesion":
            assert np.any(fdg.labels == next(k for k, v in LABEL_NAMES.items() if v == name)), name


def test_psma_changes_the_uptake_pattern() -> None:
    psma = make_phantom(seed=11, tracer="PSMA", n_lesions=2)
    assert psma.radionuclide == "Ga-68" and psma.half_life_s == pytest.approx(4062.6)
    assert _organ_mean(psma, "kidney_left") > 20.0
    assert _organ_mean(psma, "salivary_glands") > 8.0
    assert _organ_mean(psma, "brain") < 0.5
    assert 3.0 < _organ_mean(psma, "liver") < 8.0


def test_lesions_are_described_and_labelled(fdg: phantom_module.Phantom) -> None:
    assert 1 <= len(fdg.lesions) <= 6
    for lesion in fdg.lesions:
        assert 5.0 <= lesion.diameter_mm <= 40.0
        mask = fdg.lesion_labels == lesion.index
        assert mask.sum() == lesion.voxel_count >= 1
        assert np.all(fdg.labels[mask] == LESION_LABEL)
        assert lesion.suv_max == pytest.approx(float(fdg.suv[mask].max()))
        centre = fdg.pet_affine[:3, :3] @ np.array(lesion.centre_index) + fdg.pet_affine[:3, 3]
        np.testing.assert_allclose(centre, lesion.centre_lps, atol=1e-6)
    json.loads(phantom_module.lesion_table(fdg))


def test_default_phantom_is_fast_to_make_and_write(tmp_path: Path) -> None:
    start = time.perf_counter()
    write_dicom_series(make_phantom(seed=3), tmp_path)
    elapsed = time.perf_counter() - start
    # Typically ~0.5 s; the bound leaves room for slow CI machines.
    assert elapsed < 4.0


def test_written_pet_files_carry_the_pet_attributes(fdg: phantom_module.Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(fdg, tmp_path, vendor="GE")
    assert len(written.pet_files) == 80 and len(written.ct_files) == 80
    first = pydicom.dcmread(written.pet_files[0])
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.SOPClassUID == phantom_module.PET_IMAGE_STORAGE
    assert first.Modality == "PT" and first.Units == "BQML" and first.DecayCorrection == "START"
    assert {"ATTN", "DECY"} <= set(first.CorrectedImage)
    info = first.RadiopharmaceuticalInformationSequence[0]
    assert float(info.RadionuclideTotalDose) == fdg.injected_dose_bq
    assert float(info.RadionuclideHalfLife) == pytest.approx(6586.2)
    assert info.RadiopharmaceuticalStartDateTime == fdg.injection_datetime.strftime("%Y%m%d%H%M%S")
    assert info.RadionuclideCodeSequence[0].CodeMeaning == "^18^Fluorine"
    assert float(first.PatientWeight) == fdg.patient.weight_kg
    assert first.PatientSex == fdg.patient.sex
    assert first.FrameOfReferenceUID == written.frame_of_reference_uid
    assert first.PixelRepresentation == 1 and first.BitsAllocated == 16
    assert first.get_private_item(0x0009, 0x0D, "GEMS_PETD_01").value == fdg.scan_datetime.strftime(
        "%Y%m%d%H%M%S"
    )
    slopes = {
        float(pydicom.dcmread(path, stop_before_pixels=True).RescaleSlope) for path in written.pet_files
    }
    assert len(slopes) > 10  # chosen per slice, GE style
    # Each slice uses the int16 range: its largest stored value is 32767.
    assert int(np.abs(first.pixel_array).max()) in (0, 32767)

    ct = pydicom.dcmread(written.ct_files[0])
    assert ct.Modality == "CT" and ct.SOPClassUID == phantom_module.CT_IMAGE_STORAGE
    assert float(ct.RescaleIntercept) == -1024 and ct.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert ct.StudyInstanceUID == first.StudyInstanceUID and ct.SeriesInstanceUID != first.SeriesInstanceUID
    assert (ct.Rows, ct.Columns) == (128, 128)


def test_tags_can_be_omitted_everywhere(fdg: phantom_module.Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(
        fdg, tmp_path, write_ct=False, omit_tags=("PatientWeight", "RadionuclideTotalDose", "AcquisitionTime")
    )
    dataset = pydicom.dcmread(written.pet_files[5])
    assert "PatientWeight" not in dataset and "AcquisitionTime" not in dataset
    assert "RadionuclideTotalDose" not in dataset.RadiopharmaceuticalInformationSequence[0]
    assert written.ct_dir is None


def test_label_nifti_matches_the_pet_grid(fdg: phantom_module.Phantom, tmp_path: Path) -> None:
    path = write_label_nifti(fdg, tmp_path / "labels.nii.gz")
    volume = read_nifti(path, kind="label")
    np.testing.assert_array_equal(volume.array, fdg.labels)
    np.testing.assert_allclose(volume.affine, fdg.pet_affine, atol=1e-4)
    names = json.loads((tmp_path / "labels.labels.json").read_text())
    assert names["3"] == "liver" and names[str(LESION_LABEL)] == "lesion"


def test_orientation_options_change_only_the_grid() -> None:
    oblique = make_phantom(seed=2, orientation="oblique")
    rotation = oblique.pet_affine[:3, :3] / 4.0
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    assert abs(rotation[2, 0]) < 0.999  # the slice normal is tilted away from the body axis
    feet_first = make_phantom(seed=2, feet_first=True)
    assert feet_first.patient_position == "FFS"
    assert feet_first.pet_affine[2, 0] < 0  # slices run from head to feet
    with pytest.raises(ValueError, match="tracer"):
        make_phantom(tracer="FLT")  # type: ignore[arg-type]
