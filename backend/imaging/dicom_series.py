"""Read DICOM files, group them into series and load one series as a checked 3D volume.

Pure Python (numpy + pydicom); no Django.

Conventions used by every module in backend.imaging (dicom_series, nifti_io, phantom, suv):

* Array axis order: ``array[slice, row, col]`` (C order; one axial slice is ``array[k]`` for an axial
  series). ``row``/``col`` are the DICOM pixel row and column; ``slice`` runs in *ascending* position
  along the slice normal n = row cosine × column cosine (from ImageOrientationPatient). Slices are
  never ordered by InstanceNumber or file name.
* ``affine`` maps array indices, in array axis order, to DICOM patient coordinates (LPS, mm):
  ``[x, y, z, 1]ᵀ = affine @ [slice, row, col, 1]ᵀ``, with voxel *centres* at integer indices.
  Its columns are: slice step (the vector between consecutive slice origins, ≈ n × spacing),
  column cosine × PixelSpacing[0] (next row), row cosine × PixelSpacing[1] (next column), and the
  ImagePositionPatient of slice 0.
* ``affine_ras`` is the same mapping into RAS (NIfTI/nibabel world): diag(-1, -1, 1, 1) @ affine.
  nifti_io transposes to nibabel's (col, row, slice) order when writing and back when reading.
* ``spacing`` is (slice, row, col) in mm: the distance between slice planes along n, then
  PixelSpacing[0] (between rows) and PixelSpacing[1] (between columns); product = voxel volume.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from worker.nifti_layout import LPS_TO_RAS

from .suv import SuvHeader, suv_header_from_dataset

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# Files above this size keep their pixel data on disk until a series is actually loaded.
DEFER_PIXELS_ABOVE = "64 KB"

DicomSource = str | os.PathLike[str] | bytes | tuple[str, bytes] | BinaryIO


class SeriesError(ValueError):
    """A set of files that cannot be turned into one consistent volume; the message is for users."""


@dataclass(frozen=True)
class GeometryTolerance:
    """How far real-world headers may stray from perfect geometry before a series is rejected."""

    orientation: float = 1e-3  # max difference of direction cosines
    pixel_spacing_mm: float = 1e-3
    slice_spacing_relative: float = 0.01  # of the nominal spacing
    slice_spacing_mm: float = 0.02  # added to the relative part (IPP strings are rounded)
    collinearity_mm: float = 0.05  # slice origins off the straight line through them


@dataclass
class DicomFile:
    name: str
    dataset: Dataset


@dataclass(frozen=True)
class SkippedFile:
    name: str
    reason: str


@dataclass
class DicomReadResult:
    files: list[DicomFile]
    skipped: list[SkippedFile]


@dataclass
class SeriesGroup:
    series_instance_uid: str
    files: list[DicomFile]

    @property
    def modalities(self) -> list[str]:
        return sorted({str(f.dataset.get("Modality", "")) for f in self.files})

    @property
    def modality(self) -> str:
        return "/".join(self.modalities)

    @property
    def description(self) -> str:
        return str(self.files[0].dataset.get("SeriesDescription", "") or "")

    @property
    def series_number(self) -> int | None:
        value = self.files[0].dataset.get("SeriesNumber")
        return int(value) if value not in (None, "") else None

    @property
    def study_instance_uid(self) -> str:
        return str(self.files[0].dataset.get("StudyInstanceUID", "") or "")

    def summary(self) -> dict[str, Any]:
        return {
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "modality": self.modality,
            "series_number": self.series_number,
            "series_description": self.description,
            "file_count": len(self.files),
        }


@dataclass(frozen=True)
class SeriesMetadata:
    """Descriptive attributes (first slice) worth showing or storing; all JSON-able."""

    modality: str = ""
    patient_id: str = ""
    patient_name: str = ""
    patient_sex: str = ""
    patient_age: str = ""
    patient_birth_date: str = ""
    patient_weight_kg: float | None = None
    patient_size_m: float | None = None
    study_instance_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    series_instance_uid: str = ""
    series_number: int | None = None
    series_date: str = ""
    series_time: str = ""
    series_description: str = ""
    frame_of_reference_uid: str = ""
    manufacturer: str = ""
    manufacturer_model: str = ""
    institution: str = ""
    body_part: str = ""
    patient_position: str = ""
    units: str = ""
    tracer: str = ""
    radionuclide: str = ""
    image_orientation: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_orientation"] = list(self.image_orientation)
        return data


@dataclass
class LoadedSeries:
    """One series as a volume; see the module docstring for axis order and affine convention."""

    array: np.ndarray  # float32 [slice, row, col], rescaled (stored × slope + intercept)
    affine: np.ndarray  # 4×4, array index → LPS mm
    spacing: tuple[float, float, float]  # (slice, row, col) mm
    modality: str
    series_instance_uid: str
    metadata: SeriesMetadata
    slice_headers: list[SuvHeader]  # array slice order
    slice_positions_mm: list[float]  # ImagePositionPatient · slice normal, ascending
    sop_instance_uids: list[str]
    file_names: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def affine_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.affine

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def index_to_patient(self, indices: np.ndarray | Sequence[float]) -> np.ndarray:
        """(…, 3) array indices [slice, row, col] → (…, 3) LPS mm."""
        return apply_affine(self.affine, indices)

    def patient_to_index(self, points: np.ndarray | Sequence[float]) -> np.ndarray:
        """(…, 3) LPS mm → (…, 3) fractional array indices [slice, row, col]."""
        return apply_affine(np.linalg.inv(self.affine), points)


def apply_affine(affine: np.ndarray, points: np.ndarray | Sequence[float]) -> np.ndarray:
    coordinates = np.asarray(points, dtype=np.float64)
    return coordinates @ affine[:3, :3].T + affine[:3, 3]


# --------------------------------------------------------------------------------------------------
# Reading and grouping
# --------------------------------------------------------------------------------------------------


def _name_and_stream(source: DicomSource, position: int) -> tuple[str, Any]:
    if isinstance(source, tuple):
        name, payload = source
        return name, io.BytesIO(payload)
    if isinstance(source, bytes | bytearray):
        return f"<bytes #{position}>", io.BytesIO(bytes(source))
    if isinstance(source, str | os.PathLike):
        return os.fspath(source), os.fspath(source)
    return str(getattr(source, "name", f"<stream #{position}>")), source


def _looks_like_raw_dataset(stream: Any) -> bool:
    """DICOM without the 128-byte preamble usually starts with a group 0002 or 0008 tag."""
    if isinstance(stream, str):
        with open(stream, "rb") as handle:
            head = handle.read(4)
    else:
        stream.seek(0)
        head = stream.read(4)
        stream.seek(0)
    return head[:2] in (b"\x02\x00", b"\x08\x00")


def read_dicom_file(source: DicomSource, position: int = 0) -> DicomFile | SkippedFile:
    """One file → DicomFile, or SkippedFile saying why it is not a usable image."""
    name, stream = _name_and_stream(source, position)
    try:
        try:
            dataset = pydicom.dcmread(stream, defer_size=DEFER_PIXELS_ABOVE)
        except InvalidDicomError:
            if not _looks_like_raw_dataset(stream):
                return SkippedFile(name, "not a DICOM file")
            if not isinstance(stream, str):
                stream.seek(0)
            dataset = pydicom.dcmread(stream, defer_size=DEFER_PIXELS_ABOVE, force=True)
            if "SOPClassUID" not in dataset and "Modality" not in dataset:
                return SkippedFile(name, "not a DICOM file")
    except (OSError, EOFError, ValueError, TypeError, KeyError) as error:
        return SkippedFile(name, f"unreadable DICOM file ({error.__class__.__name__}: {error})")

    media_class = str(getattr(getattr(dataset, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if media_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in dataset:
        return SkippedFile(name, "DICOMDIR index file (no image)")
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        modality = dataset.get("Modality", "?")
        return SkippedFile(
            name, f"no pixel data (Modality {modality}, SOP class {dataset.get('SOPClassUID', '?')})"
        )
    if not dataset.get("SeriesInstanceUID"):
        return SkippedFile(name, "image without SeriesInstanceUID")
    return DicomFile(name, dataset)


def read_dicom_files(sources: Iterable[DicomSource]) -> DicomReadResult:
    """Read many files; non-DICOM and non-image files are skipped with a note, never raised.

    Pixel data of path sources is read lazily (defer_size), so the files must still exist when the series
    is loaded; headers stay in memory, which keeps large multi-series uploads cheap to group.
    """
    files: list[DicomFile] = []
    skipped: list[SkippedFile] = []
    for position, source in enumerate(sources):
        outcome = read_dicom_file(source, position)
        (files if isinstance(outcome, DicomFile) else skipped).append(outcome)  # type: ignore[arg-type]
    return DicomReadResult(files, skipped)


def group_by_series(files: Iterable[DicomFile]) -> list[SeriesGroup]:
    """Group by SeriesInstanceUID; ordered by study, series number, then UID."""
    groups: dict[str, list[DicomFile]] = {}
    for dicom_file in files:
        uid = str(dicom_file.dataset.get("SeriesInstanceUID", ""))
        groups.setdefault(uid, []).append(dicom_file)
    series = [SeriesGroup(uid, members) for uid, members in groups.items()]
    return sorted(
        series,
        key=lambda group: (group.study_instance_uid, group.series_number or 0, group.series_instance_uid),
    )


def load_series_from_sources(
    sources: Iterable[DicomSource],
    series_instance_uid: str | None = None,
    tolerance: GeometryTolerance | None = None,
) -> LoadedSeries:
    """Convenience: read, group, pick the one series (or the named one) and load it."""
    result = read_dicom_files(sources)
    groups = group_by_series(result.files)
    if series_instance_uid is not None:
        groups = [group for group in groups if group.series_instance_uid == series_instance_uid]
    if not groups:
        notes = "; ".join(f"{_short_name(s.name)}: {s.reason}" for s in result.skipped[:5])
        raise SeriesError("No DICOM image series found" + (f" ({notes})" if notes else ""))
    if len(groups) > 1:
        raise SeriesError(_several_series_message(groups))
    loaded = load_series(groups[0].files, tolerance=tolerance)
    loaded.warnings.extend(f"skipped {_short_name(s.name)}: {s.reason}" for s in result.skipped)
    return loaded


def _several_series_message(groups: Sequence[SeriesGroup]) -> str:
    parts = [
        f"{group.modality or '?'} series {group.series_number or ''} '{group.description}' "
        f"({len(group.files)} files, SeriesInstanceUID {group.series_instance_uid})"
        for group in groups
    ]
    return (
        f"The files belong to {len(groups)} different series: "
        + "; ".join(parts)
        + ". Load one series at a time."
    )


# --------------------------------------------------------------------------------------------------
# Geometry checks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SliceGeometry:
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]
    orientation: np.ndarray  # (6,)
    position: np.ndarray  # (3,)


def _short_name(name: str) -> str:
    """Base name for messages: upload paths are long and temporary."""
    return Path(name).name or name


def _floats(value: Any, count: int, keyword: str, name: str) -> np.ndarray:
    if value is None or value == "":
        raise SeriesError(f"{name} has no {keyword}; the slice cannot be placed in space")
    try:
        numbers = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SeriesError(f"{name} has an unreadable {keyword} ({value!r})") from error
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise SeriesError(f"{name} has a malformed {keyword} ({value!r})")
    return numbers


def _slice_geometry(dicom_file: DicomFile) -> _SliceGeometry:
    dataset, name = dicom_file.dataset, _short_name(dicom_file.name)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise SeriesError(
            f"{name} is a multi-frame image ({frames} frames); only single-frame slices are supported"
        )
    spacing = _floats(dataset.get("PixelSpacing"), 2, "PixelSpacing", name)
    if np.any(spacing <= 0):
        raise SeriesError(f"{name} has a non-positive PixelSpacing {spacing.tolist()}")
    return _SliceGeometry(
        rows=int(dataset.get("Rows", 0) or 0),
        columns=int(dataset.get("Columns", 0) or 0),
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        orientation=_floats(dataset.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", name),
        position=_floats(dataset.get("ImagePositionPatient"), 3, "ImagePositionPatient", name),
    )


def _check_same(files: Sequence[DicomFile], values: Sequence[Any], what: str) -> None:
    counts = Counter(values)
    if len(counts) <= 1:
        return
    common, _ = counts.most_common(1)[0]
    odd = [_short_name(f.name) for f, value in zip(files, values, strict=True) if value != common][:3]
    described = ", ".join(f"{value} in {count} file(s)" for value, count in counts.most_common())
    raise SeriesError(f"Slices have different {what}: {described} (e.g. {', '.join(odd)})")


# A series must come from one patient, one study and one frame of reference; a shared SeriesInstanceUID
# (a copy-paste error of an anonymiser, or files of two patients merged) must not merge them into one volume.
IDENTITY_ATTRIBUTES = (("PatientID", "patients"), ("StudyInstanceUID", "studies"),
                       ("FrameOfReferenceUID", "frames of reference"))


def _check_series_identity(files: Sequence[DicomFile]) -> None:
    uids = Counter(str(f.dataset.get("SeriesInstanceUID", "")) for f in files)
    if len(uids) > 1:
        groups = group_by_series(files)
        raise SeriesError(_several_series_message(groups))
    _check_same(files, [str(f.dataset.get("Modality", "")) for f in files], "modalities (Modality)")
    for keyword, plural in IDENTITY_ATTRIBUTES:
        values = [str(f.dataset.get(keyword, "") or "").strip() for f in files]
        counts = Counter(values)
        if len(counts) <= 1:
            continue
        common, _ = counts.most_common(1)[0]
        odd = next(_short_name(f.name) for f, value in zip(files, values, strict=True) if value != common)
        described = ", ".join(f"'{value or '(absent)'}' in {count} file(s)" for value, count in counts.most_common())
        raise SeriesError(
            f"Series {next(iter(uids))} mixes {len(counts)} {plural} ({keyword}): {described} (e.g. {odd}). "
            "A series must come from one patient, one study and one frame of reference; upload each separately")


def _unit_cosines(orientation: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    row_cosine, column_cosine = orientation[:3], orientation[3:]
    norms = np.linalg.norm(row_cosine), np.linalg.norm(column_cosine)
    if min(norms) < 1e-6:
        raise SeriesError(f"{name} has a degenerate ImageOrientationPatient {orientation.tolist()}")
    row_cosine, column_cosine = row_cosine / norms[0], column_cosine / norms[1]
    if abs(float(row_cosine @ column_cosine)) > 1e-3:
        raise SeriesError(
            f"{name}: the row and column directions in ImageOrientationPatient are not perpendicular"
        )
    return row_cosine, column_cosine


def _check_orientations(files: Sequence[DicomFile], geometries: Sequence[_SliceGeometry], tol: float) -> None:
    reference = geometries[0].orientation
    for dicom_file, geometry in zip(files, geometries, strict=True):
        if np.max(np.abs(geometry.orientation - reference)) > tol:
            raise SeriesError(
                "Slices have different orientations (ImageOrientationPatient): "
                f"{_short_name(files[0].name)} has {np.round(reference, 4).tolist()} but "
                f"{_short_name(dicom_file.name)} has "
                f"{np.round(geometry.orientation, 4).tolist()}; a series must be one stack of parallel slices"
            )


def _check_pixel_spacing(
    files: Sequence[DicomFile], geometries: Sequence[_SliceGeometry], tol: float
) -> None:
    reference = np.array(geometries[0].pixel_spacing)
    for dicom_file, geometry in zip(files, geometries, strict=True):
        if np.max(np.abs(np.array(geometry.pixel_spacing) - reference)) > tol:
            raise SeriesError(
                f"Slices have different PixelSpacing: {_short_name(files[0].name)} has {reference.tolist()} mm "
                f"but {_short_name(dicom_file.name)} has {list(geometry.pixel_spacing)} mm"
            )


def _check_slice_spacing(positions: np.ndarray, names: Sequence[str], tolerance: GeometryTolerance) -> float:
    """Nominal spacing of sorted slice positions; rejects duplicates, gaps (missing slices) and unevenness."""
    gaps = np.diff(positions)
    duplicate_floor = max(tolerance.slice_spacing_mm, 1e-3)
    duplicates = np.flatnonzero(gaps < duplicate_floor)
    if duplicates.size:
        index = int(duplicates[0])
        raise SeriesError(
            f"{duplicates.size} slice position(s) occur more than once (e.g. {names[index]} and "
            f"{names[index + 1]} both at {positions[index]:.2f} mm along the slice normal); this looks like "
            "several time frames, gates or a repeated acquisition in one series"
        )
    nominal = float(np.median(gaps))
    allowed = tolerance.slice_spacing_mm + tolerance.slice_spacing_relative * nominal
    missing_counts = np.rint(gaps / nominal).astype(int) - 1
    gap_indices = np.flatnonzero(
        (missing_counts >= 1) & (np.abs(gaps - (missing_counts + 1) * nominal) <= allowed * 2)
    )
    if gap_indices.size:
        index = int(gap_indices[0])
        total_missing = int(missing_counts[gap_indices].sum())
        raise SeriesError(
            f"{total_missing} slice(s) missing: a gap of {gaps[index]:.2f} mm between positions "
            f"{positions[index]:.2f} and {positions[index + 1]:.2f} mm ({names[index]} → {names[index + 1]}) "
            f"where the slice spacing is {nominal:.2f} mm"
        )
    uneven = np.flatnonzero(np.abs(gaps - nominal) > allowed)
    if uneven.size:
        index = int(uneven[0])
        raise SeriesError(
            f"Uneven slice spacing: gaps range from {gaps.min():.3f} to {gaps.max():.3f} mm (nominal "
            f"{nominal:.3f} mm, e.g. {gaps[index]:.3f} mm between {names[index]} and {names[index + 1]})"
        )
    return nominal


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _as_files(items: Sequence[DicomFile | Dataset]) -> list[DicomFile]:
    return [
        item
        if isinstance(item, DicomFile)
        else DicomFile(str(getattr(item, "filename", None) or f"<dataset #{position}>"), item)
        for position, item in enumerate(items)
    ]


def _rescaled_pixels(dicom_file: DicomFile, rows: int, columns: int) -> np.ndarray:
    dataset = dicom_file.dataset
    try:
        stored = dataset.pixel_array
    except Exception as error:  # noqa: BLE001 - decoder errors come in many types; report them all alike
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        syntax_name = getattr(syntax, "name", str(syntax))
        raise SeriesError(
            f"Cannot decode the pixels of {_short_name(dicom_file.name)} (transfer syntax {syntax_name}): {error}"
        ) from error
    if stored.shape != (rows, columns):
        raise SeriesError(
            f"{_short_name(dicom_file.name)} has pixel data of shape {stored.shape}, expected {(rows, columns)}"
        )
    slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    return stored.astype(np.float64) * slope + intercept


def _metadata(dataset: Dataset, orientation: np.ndarray) -> SeriesMetadata:
    header = suv_header_from_dataset(dataset)

    def text(keyword: str) -> str:
        value = dataset.get(keyword)
        return "" if value is None else str(value).strip()

    series_number = dataset.get("SeriesNumber")
    return SeriesMetadata(
        modality=text("Modality"),
        patient_id=text("PatientID"),
        patient_name=text("PatientName"),
        patient_sex=text("PatientSex"),
        patient_age=text("PatientAge"),
        patient_birth_date=text("PatientBirthDate"),
        patient_weight_kg=header.patient_weight_kg,
        patient_size_m=header.patient_size_m,
        study_instance_uid=text("StudyInstanceUID"),
        study_date=text("StudyDate"),
        study_time=text("StudyTime"),
        study_description=text("StudyDescription"),
        accession_number=text("AccessionNumber"),
        series_instance_uid=text("SeriesInstanceUID"),
        series_number=int(series_number) if series_number not in (None, "") else None,
        series_date=text("SeriesDate"),
        series_time=text("SeriesTime"),
        series_description=text("SeriesDescription"),
        frame_of_reference_uid=text("FrameOfReferenceUID"),
        manufacturer=text("Manufacturer"),
        manufacturer_model=text("ManufacturerModelName"),
        institution=text("InstitutionName"),
        body_part=text("BodyPartExamined"),
        patient_position=text("PatientPosition"),
        units=header.units or ("HU" if text("Modality") == "CT" else ""),
        tracer=header.radiopharmaceutical or "",
        radionuclide=header.radionuclide or "",
        image_orientation=tuple(float(v) for v in orientation),
    )


def build_affine(
    row_cosine: np.ndarray,
    column_cosine: np.ndarray,
    pixel_spacing: tuple[float, float],
    first_position: np.ndarray,
    slice_step: np.ndarray,
) -> np.ndarray:
    """LPS affine in array axis order [slice, row, col] (see module docstring)."""
    affine = np.eye(4)
    affine[:3, 0] = slice_step
    affine[:3, 1] = column_cosine * pixel_spacing[0]
    affine[:3, 2] = row_cosine * pixel_spacing[1]
    affine[:3, 3] = first_position
    return affine


def load_series(
    items: Sequence[DicomFile | Dataset],
    tolerance: GeometryTolerance | None = None,
) -> LoadedSeries:
    """Validate one series and return it as a volume; raises SeriesError with a user-readable message."""
    tolerance = tolerance or GeometryTolerance()
    files = _as_files(items)
    if not files:
        raise SeriesError("No files given for the series")
    _check_series_identity(files)
    if len(files) < 2:
        raise SeriesError(
            f"The series has a single slice ({_short_name(files[0].name)}); a volume needs at least 2 slices"
        )

    geometries = [_slice_geometry(f) for f in files]
    _check_same(files, [(g.rows, g.columns) for g in geometries], "image sizes (Rows, Columns)")
    _check_pixel_spacing(files, geometries, tolerance.pixel_spacing_mm)
    _check_orientations(files, geometries, tolerance.orientation)

    row_cosine, column_cosine = _unit_cosines(geometries[0].orientation, _short_name(files[0].name))
    normal = np.cross(row_cosine, column_cosine)
    projections = np.array([g.position @ normal for g in geometries])
    order = np.argsort(projections, kind="stable")
    files = [files[i] for i in order]
    geometries = [geometries[i] for i in order]
    positions = projections[order]
    names = [_short_name(f.name) for f in files]
    _check_slice_spacing(positions, names, tolerance)

    origins = np.array([g.position for g in geometries])
    slice_step = (origins[-1] - origins[0]) / (len(origins) - 1)
    expected = origins[0] + np.arange(len(origins))[:, None] * slice_step
    deviation = np.linalg.norm(origins - expected, axis=1)
    if deviation.max() > tolerance.collinearity_mm + tolerance.slice_spacing_relative * np.linalg.norm(
        slice_step
    ):
        worst = int(deviation.argmax())
        raise SeriesError(
            f"Slice origins do not lie on a straight line: {names[worst]} is {deviation[worst]:.2f} mm off; "
            "the slices cannot form one regular volume"
        )

    warnings: list[str] = []
    tilt = np.degrees(np.arccos(np.clip(abs(slice_step @ normal) / np.linalg.norm(slice_step), -1.0, 1.0)))
    if tilt > 0.01:
        warnings.append(f"sheared volume: slice origins step {tilt:.2f}° off the slice normal (gantry tilt?)")

    rows, columns = geometries[0].rows, geometries[0].columns
    array = np.empty((len(files), rows, columns), dtype=np.float32)
    for index, dicom_file in enumerate(files):
        array[index] = _rescaled_pixels(dicom_file, rows, columns)

    first = files[0].dataset
    spacing = (float(slice_step @ normal), *geometries[0].pixel_spacing)
    return LoadedSeries(
        array=array,
        affine=build_affine(row_cosine, column_cosine, geometries[0].pixel_spacing, origins[0], slice_step),
        spacing=spacing,  # type: ignore[arg-type]
        modality=str(first.get("Modality", "")),
        series_instance_uid=str(first.get("SeriesInstanceUID", "")),
        metadata=_metadata(first, geometries[0].orientation),
        slice_headers=[suv_header_from_dataset(f.dataset) for f in files],
        slice_positions_mm=[float(p) for p in positions],
        sop_instance_uids=[str(f.dataset.get("SOPInstanceUID", "")) for f in files],
        file_names=[f.name for f in files],
        warnings=warnings,
    )


def sorted_paths(directory: str | Path) -> list[Path]:
    """All regular files below a directory (recursively), for feeding read_dicom_files."""
    return sorted(path for path in Path(directory).rglob("*") if path.is_file())
