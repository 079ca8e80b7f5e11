"""DICOM SEG export: dciodvfy finds no errors; highdicom and plain pydicom read back the same voxels."""

from __future__ import annotations

import io
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from backend.annotations.services import read_mask
from tests.exports import helpers

pytestmark = pytest.mark.slow


@pytest.fixture
def seg_files(dicom_world, eager_tasks, django_capture_on_commit_callbacks, tmp_path) -> dict:
    client = helpers.client_for(dicom_world["manager"])
    job = helpers.export(client, dicom_world["project"].pk, django_capture_on_commit_callbacks,
                         {"formats": ["dicom_seg"]})
    archive, manifest = helpers.open_archive(helpers.download(client, job))
    files = {}
    for scan in dicom_world["phantom_scans"]:
        annotation = scan.annotations.get()
        name = f"dicom_seg/scan{scan.pk:05d}/annotation{annotation.pk:05d}_v1.dcm"
        path = tmp_path / name.replace("/", "_")
        path.write_bytes(archive.read(name))
        files[scan.pk] = (scan, annotation, path)
    return files


def pydicom_segment_map(dataset, sop_uids: list[str]) -> np.ndarray:
    """Independent of highdicom: place each frame by its referenced source instance and segment number."""
    frames = dataset.pixel_array.reshape(-1, dataset.Rows, dataset.Columns)
    slot = {uid: index for index, uid in enumerate(sop_uids)}
    result = np.zeros((len(sop_uids), dataset.Rows, dataset.Columns), dtype=np.uint16)
    for frame, item in zip(frames, dataset.PerFrameFunctionalGroupsSequence, strict=True):
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        result[slot[source]][frame > 0] = number
    return result


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools is not installed (make system-deps)")
def test_dciodvfy_reports_no_errors(seg_files):
    for _scan, _annotation, path in seg_files.values():
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if "Error" in line]
        assert not errors, output
        assert "Segmentation" in output  # it recognised the IOD


def test_highdicom_and_pydicom_read_the_masks_back_voxel_for_voxel(seg_files):
    for scan, annotation, path in seg_files.values():
        pet = scan.pet
        objects = read_mask(annotation.current_version)
        segments = annotation.current_version.segments
        dataset = pydicom.dcmread(path)
        assert dataset.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and dataset.SegmentationType == "BINARY"
        assert dataset.StudyInstanceUID == scan.study_instance_uid
        assert dataset.FrameOfReferenceUID == pet.frame_of_reference_uid
        referenced = dataset.ReferencedSeriesSequence[0]
        assert referenced.SeriesInstanceUID == pet.series_instance_uid
        assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} <= set(pet.sop_instance_uids)
        # Segment n is the n-th object (ids sorted), named after its label.
        names = {label.pk: label.name for label in scan.project.labels.all()}
        assert [str(s.SegmentLabel) for s in dataset.SegmentSequence] == [names[s["label"]] for s in segments]
        expected = np.zeros(objects.shape, dtype=np.uint16)
        for number, segment in enumerate(segments, start=1):
            expected[objects == segment["id"]] = number

        assert np.array_equal(pydicom_segment_map(dataset, list(pet.sop_instance_uids)), expected)

        seg = hd.seg.segread(io.BytesIO(path.read_bytes()))
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(pet.sop_instance_uids), segment_numbers=list(range(1, len(segments) + 1)),
            combine_segments=True, relabel=False)
        assert np.array_equal(np.asarray(pixels), expected)


def test_a_version_exported_twice_gives_the_same_seg(dicom_world, eager_tasks, django_capture_on_commit_callbacks):
    client = helpers.client_for(dicom_world["manager"])
    payloads = []
    for _ in range(2):
        job = helpers.export(client, dicom_world["project"].pk, django_capture_on_commit_callbacks,
                             {"formats": ["dicom_seg"]})
        archive, _ = helpers.open_archive(helpers.download(client, job))
        payloads.append({n: archive.read(n) for n in archive.namelist() if n.endswith(".dcm")})
    assert payloads[0] == payloads[1] and payloads[0]
    dataset = pydicom.dcmread(io.BytesIO(next(iter(payloads[0].values()))))
    version = dicom_world["phantom_scans"][0].annotations.get().current_version
    assert dataset.ContentDate == version.created_at.strftime("%Y%m%d")
