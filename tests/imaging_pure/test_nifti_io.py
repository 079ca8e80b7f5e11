"""NIfTI read/write in the dicom_series convention, checked against nibabel's own view of the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from backend.imaging.dicom_series import load_series_from_sources
from backend.imaging.nifti_io import (
    NiftiError,
    from_nibabel_layout,
    guess_pet_value_units,
    nifti_bytes,
    read_nifti,
    to_nibabel_layout,
    write_nifti,
)
from worker.phantoms import make_phantom, write_dicom_series, write_pet_nifti


def random_affine(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.array([3.0, 2.0, 1.5])
    affine[:3, 3] = rng.normal(scale=100, size=3)
    return affine


def test_image_round_trip_keeps_array_and_affine(tmp_path: Path) -> None:
    array = np.random.default_rng(0).random((7, 5, 6), dtype=np.float32) * 12
    affine = random_affine(1)
    path = write_nifti(tmp_path / "pet.nii.gz", array, affine, description="SUV")
    volume = read_nifti(path)
    assert volume.array.dtype == np.float32 and volume.shape == (7, 5, 6)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    assert volume.spacing == pytest.approx((3.0, 2.0, 1.5), abs=1e-5)
    assert volume.description == "SUV"
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip


def test_label_round_trip(tmp_path: Path) -> None:
    labels = np.random.default_rng(1).integers(0, 14, size=(4, 6, 5)).astype(np.uint8)
    path = write_nifti(tmp_path / "labels.nii.gz", labels, random_affine(2), kind="label")
    volume = read_nifti(path, kind="label")
    assert volume.array.dtype == np.uint8
    np.testing.assert_array_equal(volume.array, labels)
    assert nib.load(str(path)).get_data_dtype() == np.uint8
    wide = write_nifti(tmp_path / "wide.nii.gz", labels.astype(np.int32) * 100, np.eye(4), kind="label")
    assert read_nifti(wide, kind="label").array.dtype == np.uint16


def test_layout_conversion_is_its_own_inverse() -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    affine = random_affine(3)
    data, affine_ras = to_nibabel_layout(array, affine)
    assert data.shape == (4, 3, 2)
    back, affine_back = from_nibabel_layout(data, affine_ras)
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(affine_back, affine)


@pytest.mark.parametrize(
    "geometry", [{}, {"feet_first": True}, {"orientation": "oblique"}], ids=["hfs", "ffs", "oblique"]
)
def test_nibabel_sees_dicom_voxels_at_their_dicom_positions(geometry: dict, tmp_path: Path) -> None:
    phantom = make_phantom(seed=4, n_lesions=1, **geometry)
    files = write_dicom_series(phantom, tmp_path / "dicom", write_ct=False).pet_files
    series = load_series_from_sources(files)
    path = write_nifti(tmp_path / "pet.nii.gz", series.array, series.affine)
    image = nib.load(str(path))
    data = image.get_fdata()
    for slice_index, row, column in [(0, 0, 0), (10, 20, 30), (79, 63, 5)]:
        lps = series.index_to_patient([slice_index, row, column])
        ras = nib.affines.apply_affine(image.affine, [column, row, slice_index])
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-4)
        assert data[column, row, slice_index] == pytest.approx(
            series.array[slice_index, row, column], rel=1e-6
        )
    # nibabel's own orientation codes agree with DICOM's axis directions for the axial stacks.
    if not geometry:
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    if geometry.get("feet_first"):
        assert nib.aff2axcodes(image.affine) == ("R", "P", "I")
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    np.testing.assert_allclose(image.get_qform(), image.get_sform(), atol=1e-4)


def test_sheared_affine_keeps_sform_only(tmp_path: Path) -> None:
    affine = np.eye(4)
    affine[:3, :3] = np.diag([4.0, 2.0, 2.0])
    affine[1, 0] = 0.4  # slice origins drift along y: gantry tilt
    path = write_nifti(tmp_path / "tilt.nii", np.zeros((3, 4, 5), dtype=np.float32), affine)
    image = nib.load(str(path))
    assert int(image.header["qform_code"]) == 0
    np.testing.assert_allclose(read_nifti(path).affine, affine, atol=1e-6)


def test_bytes_round_trip_and_phantom_pet(tmp_path: Path) -> None:
    phantom = make_phantom(seed=9, n_lesions=1)
    for compress in (True, False):
        volume = read_nifti(nifti_bytes(phantom.suv, phantom.pet_affine, compress=compress))
        np.testing.assert_array_equal(volume.array, phantom.suv)
        np.testing.assert_allclose(volume.affine, phantom.pet_affine, atol=1e-5)
    path = write_pet_nifti(phantom, tmp_path / "suv.nii.gz")
    assert guess_pet_value_units(read_nifti(path).array) == "SUV"
    assert guess_pet_value_units(phantom.activity_bqml) == "BQML"


def test_ras_affine_input(tmp_path: Path) -> None:
    affine_lps = random_affine(5)
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps
    path = write_nifti(tmp_path / "ras.nii.gz", np.ones((2, 3, 4)), affine_ras, space="RAS")
    volume = read_nifti(path)
    np.testing.assert_allclose(volume.affine, affine_lps, atol=1e-5)
    np.testing.assert_allclose(volume.affine_ras, affine_ras, atol=1e-5)


def test_bad_inputs_are_rejected(tmp_path: Path) -> None:
    fractional = tmp_path / "fractional.nii.gz"
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 1.5, dtype=np.float32), np.eye(4)), str(fractional))
    with pytest.raises(NiftiError, match="whole numbers"):
        read_nifti(fractional, kind="label")
    four_d = tmp_path / "dynamic.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3), dtype=np.float32), np.eye(4)), str(four_d))
    with pytest.raises(NiftiError, match="3D"):
        read_nifti(four_d)
    single = tmp_path / "single.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 1), dtype=np.float32), np.eye(4)), str(single))
    assert read_nifti(single).shape == (4, 3, 2)
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not nifti")
    with pytest.raises(NiftiError, match="Not a readable NIfTI"):
        read_nifti(junk)
    with pytest.raises(NiftiError):
        write_nifti(tmp_path / "x.nii.gz", np.zeros((2, 2)), np.eye(4))
