"""DICOM Segmentation objects (highdicom) for annotation versions, and reading them back.

Pure Python (numpy, pydicom, highdicom); no Django. Ingest keeps no DICOM files, so the source PET
series is described from what the Series row stores (UIDs of the series, the frame of reference and every
instance in array slice order, plus the grid) and `source_datasets` rebuilds the header-only datasets that
highdicom needs to reference them.

Determinism: the SEG's UIDs derive from `uid_seed` (the caller passes the source version id, its checksum
and the export's label selection), and all dates and times are the version's creation time, so the same
version exported twice gives byte-identical files.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import highdicom as hd
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
MANUFACTURER = "SegAnyPET Studio"
SOFTWARE_VERSION = "0.1.0"

# highdicom logs every copied module at INFO: one line per attribute group of every SEG.
logging.getLogger("highdicom").setLevel(logging.WARNING)


class SegError(ValueError):
    """A SEG that cannot be made or used; the message is for the user."""


@dataclass
class ReferencedSeries:
    """What the SEG needs to know about the source PET series (array order [slice, row, col], LPS affine)."""

    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: Sequence[str]  # one per array slice, in array order
    affine: np.ndarray
    shape: tuple[int, int, int]
    sop_class_uid: str = PET_IMAGE_STORAGE
    patient_id: str = ""
    patient_name: str = ""
    patient_sex: str = ""
    study_date: str = ""  # YYYYMMDD
    accession_number: str = ""

    def check(self) -> None:
        missing = [name for name in ("study_instance_uid", "series_instance_uid", "frame_of_reference_uid")
                   if not getattr(self, name)]
        if missing:
            raise SegError(f"The source series lacks {', '.join(missing)}.")
        if len(self.sop_instance_uids) != self.shape[0] or not all(self.sop_instance_uids):
            raise SegError(f"The source series has {len(self.sop_instance_uids)} known instances for "
                           f"{self.shape[0]} slices.")


@dataclass
class SegSegment:
    number_in_map: int  # value in the map handed to build_seg
    label: str  # SegmentLabel (the project label's name)
    kind: str  # "organ", "lesion" or "other"
    description: str = ""
    tracking_id: str = ""
    extra: dict = field(default_factory=dict)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _ds_text(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def source_datasets(ref: ReferencedSeries) -> list[Dataset]:
    """Header-only datasets of the source instances (geometry and identity, no pixels)."""
    ref.check()
    affine = np.asarray(ref.affine, dtype=np.float64)
    slice_step, column_step, row_step = affine[:3, 0], affine[:3, 1], affine[:3, 2]
    orientation = [*(_unit(row_step)), *(_unit(column_step))]
    pixel_spacing = [float(np.linalg.norm(column_step)), float(np.linalg.norm(row_step))]
    thickness = float(np.linalg.norm(slice_step))
    datasets = []
    for index, sop_uid in enumerate(ref.sop_instance_uids):
        ds = Dataset()
        ds.SOPClassUID = ref.sop_class_uid or PET_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = ref.study_instance_uid
        ds.SeriesInstanceUID = ref.series_instance_uid
        ds.FrameOfReferenceUID = ref.frame_of_reference_uid
        ds.Modality = "PT"
        ds.PatientID = ref.patient_id
        ds.PatientName = ref.patient_name
        ds.PatientBirthDate = ""
        ds.PatientSex = ref.patient_sex if ref.patient_sex in ("M", "F", "O") else ""
        ds.StudyDate = ref.study_date
        ds.StudyTime = ""
        ds.StudyID = ""
        ds.AccessionNumber = ref.accession_number
        ds.ReferringPhysicianName = ""
        ds.InstanceNumber = index + 1
        ds.Rows, ds.Columns = int(ref.shape[1]), int(ref.shape[2])
        ds.PixelSpacing = [_ds_text(v) for v in pixel_spacing]
        ds.SliceThickness = _ds_text(thickness)
        ds.ImageOrientationPatient = [_ds_text(v) for v in orientation]
        position = affine[:3, :3] @ np.array([index, 0.0, 0.0]) + affine[:3, 3]
        ds.ImagePositionPatient = [_ds_text(v) for v in position]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        datasets.append(ds)
    return datasets


def _property(kind: str) -> tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]:
    if kind == "lesion":
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    if kind == "organ":
        return codes.SCT.AnatomicalStructure, codes.SCT.Organ
    return codes.SCT.Tissue, codes.SCT.Tissue


def build_seg(ref: ReferencedSeries, segment_map: np.ndarray, segments: Sequence[SegSegment], *, uid_seed: str,
              content_datetime: datetime, series_number: int = 900, series_description: str = "",
              content_creator: str = "") -> Dataset:
    """A BINARY SEG of `segment_map` (0 background, else SegSegment.number_in_map) on the source grid."""
    if tuple(segment_map.shape) != tuple(ref.shape):
        raise SegError(f"The mask {segment_map.shape} is not on the source grid {tuple(ref.shape)}.")
    if not segments:
        raise SegError("A DICOM SEG needs at least one segment.")
    sources = source_datasets(ref)
    # highdicom wants segment numbers 1..n in order.
    lookup = np.zeros(max(int(segment_map.max()), max(s.number_in_map for s in segments)) + 1, dtype=np.uint16)
    descriptions = []
    for number, segment in enumerate(segments, start=1):
        lookup[segment.number_in_map] = number
        category, kind = _property(segment.kind)
        tracking = segment.tracking_id or f"{segment.label} {number}"
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=segment.label[:64], segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            tracking_uid=generate_uid(entropy_srcs=[uid_seed, "tracking", str(number)]),
            tracking_id=tracking[:64]))
    labelled = lookup[segment_map]
    if not labelled.any():
        raise SegError("The selected objects are empty.")
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=labelled, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(entropy_srcs=[uid_seed, "series"]), series_number=series_number,
        sop_instance_uid=generate_uid(entropy_srcs=[uid_seed, "instance"]), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="SegAnyPET Studio export",
        software_versions=SOFTWARE_VERSION, device_serial_number="0",
        series_description=series_description[:64] or "Segmentation", content_label="SEGMENTATION",
        content_description="Reviewed annotation exported by SegAnyPET Studio"[:64],
        content_creator_name=content_creator or None, transfer_syntax_uid=ExplicitVRLittleEndian,
        omit_empty_frames=True)
    _fix_times_and_uids(seg, uid_seed, content_datetime)
    return seg


def _fix_times_and_uids(seg: Dataset, uid_seed: str, moment: datetime) -> None:
    """Replace the wall-clock times and random UIDs highdicom fills in."""
    date, time = moment.strftime("%Y%m%d"), moment.strftime("%H%M%S")
    for keyword in ("ContentDate", "SeriesDate", "InstanceCreationDate"):
        if keyword in seg:
            setattr(seg, keyword, date)
    for keyword in ("ContentTime", "SeriesTime", "InstanceCreationTime"):
        if keyword in seg:
            setattr(seg, keyword, time)
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = moment.strftime("%Y%m%d%H%M%S")
    dimension_uid = generate_uid(entropy_srcs=[uid_seed, "dimension-organization"])
    for item in seg.get("DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = dimension_uid
    for item in seg.get("DimensionIndexSequence", []):
        item.DimensionOrganizationUID = dimension_uid


def seg_bytes(seg: Dataset) -> bytes:
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# --- reading ------------------------------------------------------------------------------------------


@dataclass
class ReadSeg:
    segment_map: np.ndarray  # [slice, row, col] on the referenced grid, values = segment numbers
    labels: dict[int, str]  # segment number -> SegmentLabel
    overlapping_voxels: int


def read_seg(payload: bytes, ref: ReferencedSeries) -> ReadSeg:
    """A SEG that references `ref`'s instances, as a map of segment numbers on that grid.

    Where segments overlap, the higher segment number wins (the count is reported)."""
    try:
        dataset = dcmread(io.BytesIO(payload))
        seg = hd.seg.Segmentation.from_dataset(dataset, copy=False)
    except Exception as error:  # noqa: BLE001 - pydicom and highdicom raise many types for bad files
        raise SegError(f"Not a readable DICOM SEG: {error}") from None
    if seg.SOPClassUID != SEG_STORAGE:
        raise SegError("The file is DICOM but not a Segmentation object.")
    known = set(ref.sop_instance_uids)
    referenced = [uid for uid in seg.get_source_image_uids()]
    if not any(item[2] in known for item in referenced):
        raise SegError("The SEG does not reference this scan's PET series.")
    labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    try:
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(ref.sop_instance_uids), segment_numbers=sorted(labels),
            combine_segments=False, ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
    except Exception as error:  # noqa: BLE001
        raise SegError(f"The SEG's frames cannot be placed on this scan's PET slices: {error}") from None
    pixels = np.asarray(pixels)  # (slices, rows, cols, segments)
    if pixels.shape[:3] != tuple(ref.shape):
        raise SegError(f"The SEG frames {pixels.shape[1:3]} do not match the PET slices {tuple(ref.shape)[1:]}.")
    segment_map = np.zeros(ref.shape, dtype=np.uint16)
    overlap = int((pixels.astype(bool).sum(axis=-1) > 1).sum())
    for position, number in enumerate(sorted(labels)):
        segment_map[pixels[..., position] > 0] = number
    return ReadSeg(segment_map, labels, overlap)
