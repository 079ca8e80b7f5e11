"""Reading, validating and loading DICOM series written by the phantom."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest

from backend.imaging.dicom_series import (
    DicomFile,
    SeriesError,
    group_by_series,
    load_series,
    load_series_from_sources,
    read_dicom_files,
    sorted_paths,
)
from backend.imaging.suv import compute_suv_factors
from worker.phantoms import Phantom, make_phantom, write_dicom_series

GEOMETRIES = {
    "head_first_axial": {},
    "feet_first_axial": {"feet_first": True},
    "head_first_oblique": {"orientation": "oblique"},
    "feet_first_oblique": {"feet_first": True, "orientation": "oblique"},
}


def assert_suv_round_trip(loaded, phantom: Phantom) -> None:
    """SUV from the files equals the phantom's SUV within half a quantisation step of each slice."""
    result = compute_suv_factors(loaded.slice_headers)
    assert result.status == "ok", result.reason
    suv = result.apply(loaded.array)
    slopes = np.array([header.rescale_slope for header in loaded.slice_headers])
    step = slopes * result.factors_array()
    error = np.abs(suv - phantom.suv).reshape(len(slopes), -1).max(axis=1)
    assert np.all(error <= 0.5 * step * 1.001 + 1e-5 * phantom.suv.max())
    assert np.abs(suv - phantom.suv).max() < 1e-3  # absolute: far below any clinical SUV precision


def shuffled(paths: list[Path], seed: int = 0) -> list[Path]:
    copy = list(paths)
    random.Random(seed).shuffle(copy)
    return copy


def datasets(paths: list[Path]) -> list[DicomFile]:
    return [DicomFile(path.name, pydicom.dcmread(path)) for path in paths]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory):
    phantom = make_phantom(seed=21, n_lesions=3)
    return phantom, write_dicom_series(
        phantom, tmp_path_factory.mktemp("study"), scramble_instance_numbers=True
    )


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_pet_round_trip_gives_the_phantom_suv(geometry: dict, tmp_path: Path) -> None:
    phantom = make_phantom(seed=5, n_lesions=4, **geometry)
    files = write_dicom_series(phantom, tmp_path, write_ct=False, scramble_instance_numbers=True).pet_files
    loaded = load_series_from_sources(shuffled(files))
    assert loaded.modality == "PT"
    assert loaded.shape == phantom.shape
    np.testing.assert_allclose(loaded.affine, phantom.pet_affine, atol=1e-6)
    assert loaded.spacing == pytest.approx(phantom.pet_spacing)
    assert loaded.slice_positions_mm == sorted(loaded.slice_positions_mm)
    assert_suv_round_trip(loaded, phantom)
    np.testing.assert_allclose(
        loaded.array, phantom.activity_bqml, rtol=1e-4, atol=1e-3 * phantom.activity_bqml.max()
    )


@pytest.mark.parametrize("geometry", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_affine_maps_voxels_to_image_position_patient(geometry: dict, tmp_path: Path) -> None:
    phantom = make_phantom(seed=6, n_lesions=1, **geometry)
    files = write_dicom_series(phantom, tmp_path, write_ct=False, scramble_instance_numbers=True).pet_files
    loaded = load_series_from_sources(shuffled(files, seed=3))
    headers = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in files)}
    for index, uid in enumerate(loaded.sop_instance_uids):
        dataset = headers[uid]
        position = np.array([float(v) for v in dataset.ImagePositionPatient])
        np.testing.assert_allclose(loaded.index_to_patient([index, 0, 0]), position, atol=1e-6)
        # Pixel (row r, column c) lies at IPP + c·Δcol·row cosine + r·Δrow·column cosine (PS3.3 C.7.6.2.1.1).
        orientation = np.array([float(v) for v in dataset.ImageOrientationPatient])
        row_spacing, column_spacing = (float(v) for v in dataset.PixelSpacing)
        r, c = 7, 11
        expected = position + c * column_spacing * orientation[:3] + r * row_spacing * orientation[3:]
        np.testing.assert_allclose(loaded.index_to_patient([index, r, c]), expected, atol=1e-6)
    np.testing.assert_allclose(loaded.patient_to_index(loaded.index_to_patient([3.0, 4.0, 5.0])), [3, 4, 5])
    assert loaded.voxel_volume_ml == pytest.approx(0.064)


def test_ct_round_trip_is_exact(written) -> None:
    phantom, files = written
    loaded = load_series_from_sources(shuffled(files.ct_files))
    assert loaded.modality == "CT"
    np.testing.assert_array_equal(loaded.array, phantom.ct_hu.astype(np.float32))
    np.testing.assert_allclose(loaded.affine, phantom.ct_affine, atol=1e-6)
    assert loaded.metadata.units == "HU"


def test_series_are_grouped_and_metadata_extracted(written) -> None:
    phantom, files = written
    result = read_dicom_files(shuffled(sorted_paths(files.pet_dir.parent)))
    groups = group_by_series(result.files)
    assert [group.modality for group in groups] == ["CT", "PT"]  # by series number
    pet_group = groups[1]
    assert pet_group.series_instance_uid == files.pet_series_instance_uid
    assert pet_group.summary()["file_count"] == 80
    loaded = load_series(pet_group.files)
    meta = loaded.metadata
    assert meta.patient_id == phantom.patient.patient_id
    assert meta.patient_weight_kg == phantom.patient.weight_kg
    assert meta.patient_size_m == phantom.patient.height_m
    assert meta.patient_sex == phantom.patient.sex
    assert meta.tracer == "Fluorodeoxyglucose" and meta.radionuclide == "^18^Fluorine"
    assert meta.units == "BQML" and meta.modality == "PT"
    assert meta.frame_of_reference_uid == files.frame_of_reference_uid
    assert meta.to_dict()["image_orientation"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_non_dicom_files_are_skipped_with_a_note(written, tmp_path: Path) -> None:
    _, files = written
    junk = tmp_path / "notes.txt"
    junk.write_text("not an image")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    result = read_dicom_files([junk, empty, *files.pet_files[:3]])
    assert len(result.files) == 3
    assert {skipped.name: skipped.reason for skipped in result.skipped}[str(junk)] == "not a DICOM file"
    assert len(result.skipped) == 2


def test_bytes_sources_are_read(written) -> None:
    phantom, files = written
    payloads = [(path.name, path.read_bytes()) for path in shuffled(files.pet_files)]
    loaded = load_series_from_sources(payloads)
    assert_suv_round_trip(loaded, phantom)
    raw = load_series_from_sources([path.read_bytes() for path in files.pet_files])
    assert raw.file_names[0].startswith("<bytes")


def test_missing_slice_is_rejected(written) -> None:
    _, files = written
    kept = [path for index, path in enumerate(files.pet_files) if index != 40]
    with pytest.raises(SeriesError, match=r"1 slice\(s\) missing.*gap of 8\.00 mm.*spacing is 4\.00 mm"):
        load_series_from_sources(kept)


def test_mixed_orientation_is_rejected(written) -> None:
    _, files = written
    items = datasets(files.pet_files)
    items[10].dataset.ImageOrientationPatient = [1, 0, 0, 0, 0.9848, -0.1736]
    with pytest.raises(SeriesError, match="different orientations"):
        load_series(items)


def test_uneven_spacing_is_rejected(written) -> None:
    _, files = written
    items = datasets(files.pet_files)
    position = [float(v) for v in items[30].dataset.ImagePositionPatient]
    position[2] += 1.0
    items[30].dataset.ImagePositionPatient = position
    with pytest.raises(SeriesError, match="Uneven slice spacing"):
        load_series(items)


def test_duplicate_positions_are_rejected(written) -> None:
    _, files = written
    items = datasets(files.pet_files[:10])
    items[4].dataset.ImagePositionPatient = list(items[5].dataset.ImagePositionPatient)
    with pytest.raises(SeriesError, match="occur more than once"):
        load_series(items)


def test_two_series_mixed_are_rejected(written) -> None:
    _, files = written
    with pytest.raises(SeriesError, match="2 different series"):
        load_series(datasets(files.pet_files[:5] + files.ct_files[:5]))
    with pytest.raises(SeriesError, match="Load one series at a time"):
        load_series_from_sources(files.pet_files + files.ct_files)


def test_inconsistent_sizes_and_missing_geometry_are_rejected(written) -> None:
    _, files = written
    items = datasets(files.pet_files[:6])
    del items[2].dataset.ImagePositionPatient
    with pytest.raises(SeriesError, match="has no ImagePositionPatient"):
        load_series(items)
    items = datasets(files.pet_files[:6])
    items[3].dataset.PixelSpacing = [3.0, 3.0]
    with pytest.raises(SeriesError, match="different PixelSpacing"):
        load_series(items)
    with pytest.raises(SeriesError, match="at least 2 slices"):
        load_series(datasets(files.pet_files[:1]))


def test_sheared_gantry_tilt_stack_loads_with_a_warning(written) -> None:
    _, files = written
    items = datasets(files.pet_files)
    for item in items:
        x, y, z = (float(v) for v in item.dataset.ImagePositionPatient)
        item.dataset.ImagePositionPatient = [x, y + 0.1 * (z + 600.0), z]  # origins drift along y with z
    loaded = load_series(items)
    assert any("sheared" in warning for warning in loaded.warnings)
    by_uid = {item.dataset.SOPInstanceUID: item.dataset for item in items}
    for index in (0, 40, 79):
        expected = [float(v) for v in by_uid[loaded.sop_instance_uids[index]].ImagePositionPatient]
        np.testing.assert_allclose(loaded.index_to_patient([index, 0, 0]), expected, atol=1e-6)
