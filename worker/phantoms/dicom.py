"""Deterministic synthetic whole-body PET/CT phantom, written as real DICOM (pydicom) and NIfTI.

Pure Python (numpy, scipy, pydicom, nibabel); no Django. Used by tests, benchmarks and demo data.

Conventions are those of dicom_series: arrays are ``[slice, row, col]`` with slices ascending along the
slice normal (row cosine × column cosine), and affines map array indices to LPS mm. A phantom's arrays are
therefore exactly what dicom_series.load_series returns for the written files, whatever the orientation,
patient position or instance numbering.

Anatomy is a set of ellipsoids and elliptic cylinders defined for a reference adult (mm, body frame:
x = patient left, y = posterior, z = distance below the vertex). It is scaled into the field of view
(each of the lateral/axial scales capped at 1, so a large FOV gives an adult-sized patient) and
voxelised at voxel centres. Lesions are spheres of real size (5–40 mm). The PET is the true uptake
blurred by a Gaussian PSF with correlated multiplicative noise; the SUV volume *after* blur and noise is
the reference that a DICOM round trip must reproduce. The label map is the unblurred geometry.

Performance: each shape is evaluated only inside its bounding box, with coordinates built from
broadcast 1-D terms, so an axis-aligned grid costs little more than the painted voxels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds
from scipy import ndimage

from backend.imaging.dicom_series import LPS_TO_RAS
from backend.imaging.nifti_io import write_label_names, write_nifti
from backend.imaging.suv import GE_PET_PRIVATE_CREATOR, PHILIPS_PRIVATE_CREATOR

Tracer = Literal["FDG", "PSMA"]
Orientation = Literal["axial", "oblique"]
PetUnits = Literal["BQML", "CNTS", "GML"]
DecayCorrection = Literal["START", "ADMIN", "NONE"]
Vendor = Literal["generic", "GE", "Philips", "Siemens"]

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

TEST_SIZE: dict[str, tuple] = {"shape": (80, 64, 64), "spacing": (4.0, 4.0, 4.0)}
REALISTIC_SIZE: dict[str, tuple] = {"shape": (300, 200, 200), "spacing": (3.27, 3.5, 3.5)}

LABEL_NAMES: dict[int, str] = {
    1: "brain",
    2: "heart",
    3: "liver",
    4: "spleen",
    5: "kidney_left",
    6: "kidney_right",
    7: "bladder",
    8: "lung_left",
    9: "lung_right",
    10: "salivary_glands",
    11: "aorta",
    12: "spine",
    13: "lesion",
}
LESION_LABEL = 13

# Reference adult: vertex to mid-thigh (a whole-body PET field) and lateral/AP extent of the trunk.
_REFERENCE_LENGTH_MM = 1000.0
_REFERENCE_WIDTH_MM = 370.0
_REFERENCE_WIDTH_WITH_ARMS_MM = 560.0
_REFERENCE_DEPTH_MM = 250.0
_FILL_FRACTION = 0.92

_INT16_MAX = 32767


@dataclass(frozen=True)
class _Nuclide:
    name: str
    half_life_s: float
    positron_fraction: float
    code_value: str
    code_meaning: str


_F18 = _Nuclide("F-18", 6586.2, 0.9673, "C-111A1", "^18^Fluorine")
_GA68 = _Nuclide("Ga-68", 4062.6, 0.8891, "C-131A3", "^68^Gallium")


@dataclass(frozen=True)
class _TracerSpec:
    radiopharmaceutical: str
    nuclide: _Nuclide
    dose_mbq_per_kg: float
    code: tuple[str, str, str] | None  # (value, scheme, meaning) of RadiopharmaceuticalCodeSequence


_TRACERS: dict[str, _TracerSpec] = {
    "FDG": _TracerSpec("Fluorodeoxyglucose", _F18, 3.7, ("C-B1031", "SRT", "Fluorodeoxyglucose F^18^")),
    "PSMA": _TracerSpec("Ga-68 PSMA-11", _GA68, 2.0, None),
}


# --------------------------------------------------------------------------------------------------
# Shapes and anatomy
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ellipsoid:
    """Axis-aligned ellipsoid; centre and semi-axes in whichever frame the caller uses (x, y, z)."""

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]


@dataclass(frozen=True)
class Cylinder:
    """Elliptic cylinder along z between z_low and z_high."""

    centre_xy: tuple[float, float]
    semi_axes_xy: tuple[float, float]
    z_low: float
    z_high: float


Shape = Ellipsoid | Cylinder


@dataclass(frozen=True)
class _Organ:
    name: str
    label: int  # 0: painted but not labelled
    shapes: tuple[Shape, ...]
    fdg_suv: float
    psma_suv: float
    hu: float


def _e(cx: float, cy: float, cz: float, a: float, b: float, c: float) -> Ellipsoid:
    return Ellipsoid((cx, cy, cz), (a, b, c))


def _c(cx: float, cy: float, a: float, b: float, z_top: float, z_bottom: float) -> Cylinder:
    # Body-frame z grows downwards from the vertex; the world conversion flips it.
    return Cylinder((cx, cy), (a, b), z_top, z_bottom)


_BODY_SHAPES: tuple[Shape, ...] = (
    _e(0, 0, 110, 78, 98, 110),  # head
    _c(0, 15, 55, 55, 190, 300),  # neck
    _e(0, 5, 335, 185, 105, 80),  # shoulders
    _c(0, 5, 165, 112, 330, 850),  # chest and abdomen
    _e(0, 5, 850, 175, 115, 110),  # pelvis
    _c(95, 10, 80, 85, 850, 1800),  # left leg
    _c(-95, 10, 80, 85, 850, 1800),  # right leg
)
_ARM_SHAPES: tuple[Shape, ...] = (
    _c(235, 10, 42, 45, 340, 900),
    _c(-235, 10, 42, 45, 340, 900),
)

# Painted in this order; later organs overwrite earlier ones. SUVs are typical mean values at ~60 min.
_ORGANS: tuple[_Organ, ...] = (
    _Organ("bowel", 0, (_e(0, -30, 770, 120, 60, 70),), 1.6, 3.0, 25),
    _Organ("spine", 12, (_c(0, 80, 18, 18, 210, 900),), 1.3, 1.0, 450),
    _Organ("aorta", 11, (_c(20, 52, 12, 12, 390, 840),), 1.7, 1.6, 40),
    _Organ("lung_left", 8, (_e(85, 5, 450, 70, 90, 135),), 0.5, 0.3, -850),
    _Organ("lung_right", 9, (_e(-85, 5, 450, 72, 90, 140),), 0.5, 0.3, -850),
    _Organ("heart", 2, (_e(30, -35, 490, 58, 52, 60),), 4.0, 1.8, 40),
    _Organ("liver", 3, (_e(-70, 5, 620, 105, 85, 85),), 2.3, 5.5, 60),
    _Organ("spleen", 4, (_e(100, 45, 600, 40, 38, 58),), 1.9, 7.0, 48),
    _Organ("kidney_left", 5, (_e(75, 70, 690, 30, 30, 58),), 3.0, 35.0, 35),
    _Organ("kidney_right", 6, (_e(-75, 70, 700, 30, 30, 58),), 3.0, 35.0, 35),
    _Organ("bladder", 7, (_e(0, -35, 930, 45, 40, 38),), 15.0, 25.0, 8),
    _Organ(
        "salivary_glands",
        10,
        (
            _e(55, 10, 185, 16, 22, 28),
            _e(-55, 10, 185, 16, 22, 28),
            _e(38, -30, 215, 12, 12, 12),
            _e(-38, -30, 215, 12, 12, 12),
        ),
        1.8,
        14.0,
        30,
    ),
    _Organ("brain", 1, (_e(0, 5, 95, 65, 82, 72),), 7.0, 0.15, 35),
)
_HEART_BLOOD_POOL = _e(30, -35, 490, 38, 33, 40)
_BLOOD_POOL_SUV = {"FDG": 1.8, "PSMA": 1.6}
_BACKGROUND_SUV = {"FDG": 0.8, "PSMA": 0.6}
_SKULL = _e(0, 0, 110, 74, 94, 106)
_SKULL_INNER = _e(0, 0, 110, 68, 88, 100)
_FEMURS = (_c(95, 10, 15, 15, 900, 1800), _c(-95, 10, 15, 15, 900, 1800))
_LESION_HOSTS = ("liver", "lung_left", "lung_right", "soft_tissue", "spine", "spleen")
_LESION_HOST_WEIGHTS = (0.25, 0.15, 0.15, 0.3, 0.1, 0.05)


@dataclass(frozen=True)
class _BodyFrame:
    """Maps reference body-frame shapes into LPS mm: X = s_xy·x, Y = s_xy·y, Z = vertex − s_z·z."""

    scale_xy: float
    scale_z: float
    vertex_z: float
    centre_x: float
    centre_y: float

    def shape(self, shape: Shape, shrink_mm: float = 0.0) -> Shape:
        if isinstance(shape, Ellipsoid):
            cx, cy, cz = shape.centre
            a, b, c = (max(axis - shrink_mm, 1.0) for axis in shape.semi_axes)
            return Ellipsoid(
                (
                    self.centre_x + self.scale_xy * cx,
                    self.centre_y + self.scale_xy * cy,
                    self.vertex_z - self.scale_z * cz,
                ),
                (self.scale_xy * a, self.scale_xy * b, self.scale_z * c),
            )
        cx, cy = shape.centre_xy
        a, b = (max(axis - shrink_mm, 1.0) for axis in shape.semi_axes_xy)
        return Cylinder(
            (self.centre_x + self.scale_xy * cx, self.centre_y + self.scale_xy * cy),
            (self.scale_xy * a, self.scale_xy * b),
            self.vertex_z - self.scale_z * shape.z_high,
            self.vertex_z - self.scale_z * shape.z_low,
        )


def _bounds(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(shape, Ellipsoid):
        centre, axes = np.array(shape.centre), np.array(shape.semi_axes)
        return centre - axes, centre + axes
    (cx, cy), (a, b) = shape.centre_xy, shape.semi_axes_xy
    return np.array([cx - a, cy - b, shape.z_low]), np.array([cx + a, cy + b, shape.z_high])


def contains(shape: Shape, points: np.ndarray) -> np.ndarray:
    """Which (…, 3) LPS points lie inside a world-frame shape."""
    if isinstance(shape, Ellipsoid):
        scaled = (points - np.array(shape.centre)) / np.array(shape.semi_axes)
        return np.sum(scaled**2, axis=-1) <= 1.0
    (cx, cy), (a, b) = shape.centre_xy, shape.semi_axes_xy
    radial = ((points[..., 0] - cx) / a) ** 2 + ((points[..., 1] - cy) / b) ** 2
    return (radial <= 1.0) & (points[..., 2] >= shape.z_low) & (points[..., 2] <= shape.z_high)


# --------------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]
    affine: np.ndarray  # LPS, array order [slice, row, col]

    @property
    def spacing(self) -> tuple[float, float, float]:
        lengths = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(lengths[0]), float(lengths[1]), float(lengths[2])

    def box_for(self, low: np.ndarray, high: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index box covering a world axis-aligned box (all 8 corners mapped), or None when outside."""
        corners = np.array(
            [[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
        )
        inverse = np.linalg.inv(self.affine)
        indices = corners @ inverse[:3, :3].T + inverse[:3, 3]
        start = np.maximum(np.floor(indices.min(axis=0)).astype(int), 0)
        stop = np.minimum(np.ceil(indices.max(axis=0)).astype(int) + 1, self.shape)
        if np.any(stop <= start):
            return None
        return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))  # type: ignore[return-value]

    def coordinate(self, axis: int, box: tuple[slice, slice, slice]) -> np.ndarray:
        """World coordinate ``axis`` (0=x, 1=y, 2=z) over a box, built from broadcast 1-D terms."""
        total: np.ndarray | float = float(self.affine[axis, 3])
        for dim in range(3):
            coefficient = float(self.affine[axis, dim])
            if coefficient == 0.0:
                continue
            indices = np.arange(box[dim].start, box[dim].stop, dtype=np.float32)
            view = [1, 1, 1]
            view[dim] = indices.size
            total = total + coefficient * indices.reshape(view)
        return np.asarray(total, dtype=np.float32)

    def mask(self, shape: Shape) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        box = self.box_for(*_bounds(shape))
        if box is None:
            return None
        size = tuple(s.stop - s.start for s in box)
        if isinstance(shape, Ellipsoid):
            total: np.ndarray | float = 0.0
            for axis in range(3):
                total = (
                    total + ((self.coordinate(axis, box) - shape.centre[axis]) / shape.semi_axes[axis]) ** 2
                )
            inside = np.broadcast_to(total <= 1.0, size)
        else:
            radial = ((self.coordinate(0, box) - shape.centre_xy[0]) / shape.semi_axes_xy[0]) ** 2 + (
                (self.coordinate(1, box) - shape.centre_xy[1]) / shape.semi_axes_xy[1]
            ) ** 2
            z = self.coordinate(2, box)
            inside = np.broadcast_to((radial <= 1.0) & (z >= shape.z_low) & (z <= shape.z_high), size)
        return box, inside

    def index_to_world(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(indices, dtype=np.float64) @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        inverse = np.linalg.inv(self.affine)
        return np.asarray(points, dtype=np.float64) @ inverse[:3, :3].T + inverse[:3, 3]


def _paint(volume: np.ndarray, grid: Grid, shape: Shape, value: float) -> None:
    found = grid.mask(shape)
    if found is not None:
        box, inside = found
        np.copyto(volume[box], np.asarray(value, dtype=volume.dtype), where=inside)


def _rotation(angles_deg: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = (math.radians(a) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def image_orientation(
    orientation: Orientation, feet_first: bool, oblique_angles_deg: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(row cosine, column cosine) in LPS.

    Feet-first series are written with the row direction reversed (IOP -1\\0\\0\\0\\1\\0, as scanners that
    do not re-orient FFS images produce), so their slice normal points to the feet.
    """
    row = np.array([-1.0, 0.0, 0.0]) if feet_first else np.array([1.0, 0.0, 0.0])
    column = np.array([0.0, 1.0, 0.0])
    if orientation == "oblique":
        rotation = _rotation(oblique_angles_deg)
        row, column = rotation @ row, rotation @ column
    return row, column


def make_grid(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    row_cosine: np.ndarray,
    column_cosine: np.ndarray,
    centre: np.ndarray,
) -> Grid:
    normal = np.cross(row_cosine, column_cosine)
    affine = np.eye(4)
    affine[:3, 0] = normal * spacing[0]
    affine[:3, 1] = column_cosine * spacing[1]
    affine[:3, 2] = row_cosine * spacing[2]
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return Grid(tuple(int(n) for n in shape), affine)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Phantom
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientInfo:
    patient_id: str
    name: str
    sex: Literal["M", "F"]
    age_years: int
    birth_date: date
    weight_kg: float
    height_m: float


@dataclass(frozen=True)
class Lesion:
    index: int  # value in Phantom.lesion_labels
    host: str
    centre_lps: tuple[float, float, float]
    centre_index: tuple[float, float, float]  # fractional [slice, row, col] on the PET grid
    diameter_mm: float
    uptake_suv: float  # true (unblurred) uptake of the lesion rim
    necrotic: bool
    voxel_count: int
    suv_max: float  # in the final (blurred, noisy) SUV volume, over the lesion's labelled voxels
    suv_mean: float

    @property
    def radius_mm(self) -> float:
        return self.diameter_mm / 2.0


@dataclass
class Phantom:
    seed: int
    tracer: str
    radiopharmaceutical: str
    radionuclide: str
    half_life_s: float
    positron_fraction: float
    patient: PatientInfo
    injected_dose_bq: float
    injection_datetime: datetime
    scan_datetime: datetime  # PET acquisition start = SeriesDate/Time; START decay reference
    slice_acquisition_datetimes: list[datetime]  # per PET array slice
    frame_duration_s: float
    suv: np.ndarray  # float32 [slice,row,col], body-weight SUV (g/ml)
    activity_bqml: np.ndarray  # float32, Bq/ml decay-corrected to scan_datetime
    true_suv: np.ndarray  # float32, uptake before PSF and noise
    labels: np.ndarray  # uint8, LABEL_NAMES values, PET grid
    lesion_labels: np.ndarray  # uint16, 0 or Lesion.index
    body_mask: np.ndarray  # bool, PET grid
    label_names: dict[int, str]
    lesions: list[Lesion]
    pet_affine: np.ndarray  # LPS
    ct_hu: np.ndarray  # int16 [slice,row,col] on the CT grid
    ct_affine: np.ndarray  # LPS
    ct_scan_datetime: datetime
    feet_first: bool
    orientation: str
    psf_fwhm_mm: float
    noise_level: float
    uid_salt: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.suv.shape)  # type: ignore[return-value]

    @property
    def pet_spacing(self) -> tuple[float, float, float]:
        lengths = np.linalg.norm(self.pet_affine[:3, :3], axis=0)
        return float(lengths[0]), float(lengths[1]), float(lengths[2])

    @property
    def ct_spacing(self) -> tuple[float, float, float]:
        lengths = np.linalg.norm(self.ct_affine[:3, :3], axis=0)
        return float(lengths[0]), float(lengths[1]), float(lengths[2])

    @property
    def pet_affine_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.pet_affine

    @property
    def ct_affine_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.ct_affine

    @property
    def patient_position(self) -> str:
        return "FFS" if self.feet_first else "HFS"

    @property
    def uptake_time_s(self) -> float:
        return (self.scan_datetime - self.injection_datetime).total_seconds()

    @property
    def suv_factor(self) -> float:
        """Bq/ml (decay-corrected to scan start) → SUVbw, by the same formula suv.py applies."""
        decayed = self.injected_dose_bq * 2.0 ** (-self.uptake_time_s / self.half_life_s)
        return self.patient.weight_kg * 1000.0 / decayed

    def uid(self, purpose: str) -> str:
        return generate_uid(entropy_srcs=[f"seganypet-phantom:{self.seed}:{self.uid_salt}:{purpose}"])


def _patient(rng: np.random.Generator, seed: int) -> PatientInfo:
    sex: Literal["M", "F"] = "M" if rng.random() < 0.5 else "F"
    height = round(float(rng.normal(1.78 if sex == "M" else 1.65, 0.07)), 2)
    bmi = float(rng.uniform(19.0, 32.0))
    weight = round(min(max(bmi * height**2, 40.0), 150.0), 1)
    age = int(rng.integers(25, 86))
    birth = date(2024 - age, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    return PatientInfo(f"PHANTOM-{seed:05d}", f"Phantom^Seed{seed}", sex, age, birth, weight, height)


def _default_injection(rng: np.random.Generator) -> datetime:
    day = date(2024, 3, 4) + timedelta(days=int(rng.integers(0, 60)))
    return datetime(day.year, day.month, day.day, 8, 0, 0) + timedelta(minutes=int(rng.integers(0, 7 * 60)))


def _body_frame(
    grid_shape: Sequence[int], spacing: Sequence[float], centre: np.ndarray, arms: bool
) -> _BodyFrame:
    axial_extent = grid_shape[0] * spacing[0]
    row_extent, column_extent = grid_shape[1] * spacing[1], grid_shape[2] * spacing[2]
    width = _REFERENCE_WIDTH_WITH_ARMS_MM if arms else _REFERENCE_WIDTH_MM
    scale_xy = min(1.0, _FILL_FRACTION * min(column_extent / width, row_extent / _REFERENCE_DEPTH_MM))
    scale_z = min(1.0, 0.97 * axial_extent / _REFERENCE_LENGTH_MM)
    vertex_z = float(centre[2]) + axial_extent / 2.0 - 0.015 * axial_extent
    return _BodyFrame(scale_xy, scale_z, vertex_z, float(centre[0]), float(centre[1]))


def _organ_uptakes(tracer: str, rng: np.random.Generator) -> dict[str, float]:
    """Per-patient organ SUVs: the typical value × a ±15 % individual factor."""
    return {
        organ.name: (organ.fdg_suv if tracer == "FDG" else organ.psma_suv) * float(rng.uniform(0.85, 1.15))
        for organ in _ORGANS
    }


@dataclass(frozen=True)
class _LesionPlan:
    host: str
    centre: np.ndarray  # LPS
    diameter_mm: float
    uptake_suv: float
    necrotic: bool


def _host_shapes(host: str, frame: _BodyFrame) -> tuple[Shape, ...]:
    if host == "soft_tissue":
        return (
            frame.shape(_c(0, 5, 165, 112, 330, 850), shrink_mm=40.0),
            frame.shape(_c(0, 15, 55, 55, 190, 300), 15.0),
        )
    organ = next(o for o in _ORGANS if o.name == host)
    return tuple(frame.shape(s) for s in organ.shapes)


def _inside_any(shapes: Iterable[Shape], point: np.ndarray) -> bool:
    return any(bool(contains(shape, point)) for shape in shapes)


def _plan_lesions(
    count: int, rng: np.random.Generator, frame: _BodyFrame, grid: Grid, uptakes: dict[str, float]
) -> list[_LesionPlan]:
    organ_shapes = [frame.shape(s) for o in _ORGANS if o.label for s in o.shapes]
    body_shapes = [frame.shape(s) for s in _BODY_SHAPES]
    plans: list[_LesionPlan] = []
    weights = np.array(_LESION_HOST_WEIGHTS) / sum(_LESION_HOST_WEIGHTS)
    for _ in range(count):
        host = str(rng.choice(_LESION_HOSTS, p=weights))
        shapes = _host_shapes(host, frame)
        diameter = float(rng.uniform(5.0, 40.0))
        for _attempt in range(200):
            low, high = _bounds(shapes[int(rng.integers(len(shapes)))])
            centre = low + rng.random(3) * (high - low)
            index = grid.world_to_index(centre)
            margin = diameter / 2.0 / np.array(grid.spacing)
            if np.any(index < margin) or np.any(index > np.array(grid.shape) - 1 - margin):
                continue
            if not _inside_any(shapes, centre) or not _inside_any(body_shapes, centre):
                continue
            if host == "soft_tissue" and _inside_any(organ_shapes, centre):
                continue
            if any(np.linalg.norm(centre - p.centre) < (diameter + p.diameter_mm) / 2.0 + 4.0 for p in plans):
                continue
            host_suv = uptakes.get(host, 0.8)
            uptake = max(float(np.exp(rng.uniform(np.log(2.5), np.log(18.0)))), 1.6 * host_suv)
            necrotic = diameter > 28.0 and bool(rng.random() < 0.5)
            plans.append(_LesionPlan(host, centre, diameter, uptake, necrotic))
            break
    return plans


def _background_and_body(grid: Grid, frame: _BodyFrame, arms: bool, value: float) -> np.ndarray:
    body = np.zeros(grid.shape, dtype=np.float32)
    for shape in _BODY_SHAPES + (_ARM_SHAPES if arms else ()):
        _paint(body, grid, frame.shape(shape), value)
    return body


def _paint_pet(
    grid: Grid,
    frame: _BodyFrame,
    arms: bool,
    tracer: str,
    uptakes: dict[str, float],
    lesions: Sequence[_LesionPlan],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True uptake (SUV), organ/lesion labels and lesion instance labels on the PET grid."""
    uptake = _background_and_body(grid, frame, arms, _BACKGROUND_SUV[tracer])
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for organ in _ORGANS:
        for shape in organ.shapes:
            world = frame.shape(shape)
            _paint(uptake, grid, world, uptakes[organ.name])
            _paint(labels, grid, world, organ.label)
    _paint(uptake, grid, frame.shape(_HEART_BLOOD_POOL), _BLOOD_POOL_SUV[tracer])
    body = uptake > 0
    labels[~body] = 0
    lesion_labels = np.zeros(grid.shape, dtype=np.uint16)
    for number, plan in enumerate(lesions, start=1):
        sphere = Ellipsoid(tuple(plan.centre), (plan.diameter_mm / 2.0,) * 3)  # type: ignore[arg-type]
        found = grid.mask(sphere)
        if found is None or not found[1].any():
            # A 5 mm lesion may hold no voxel centre on a 4 mm grid; keep it visible as one voxel.
            nearest = tuple(
                int(v)
                for v in np.clip(np.rint(grid.world_to_index(plan.centre)), 0, np.array(grid.shape) - 1)
            )
            uptake[nearest] = plan.uptake_suv
            labels[nearest] = LESION_LABEL
            lesion_labels[nearest] = number
            continue
        box, inside = found
        np.copyto(uptake[box], np.float32(plan.uptake_suv), where=inside)
        np.copyto(labels[box], np.uint8(LESION_LABEL), where=inside)
        np.copyto(lesion_labels[box], np.uint16(number), where=inside)
        if plan.necrotic:
            core = Ellipsoid(tuple(plan.centre), (plan.diameter_mm * 0.2,) * 3)  # type: ignore[arg-type]
            _paint(uptake, grid, core, uptakes.get(plan.host, 0.8) * 0.6)
    return uptake, labels, lesion_labels


def _blur_and_noise(
    true_suv: np.ndarray,
    spacing: Sequence[float],
    fwhm_mm: float,
    noise_level: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Gaussian PSF, then multiplicative noise with ~1.5-voxel correlation (like reconstructed PET)."""
    image = true_suv
    if fwhm_mm > 0:
        sigma = [fwhm_mm / 2.3548 / s for s in spacing]
        image = ndimage.gaussian_filter(true_suv, sigma=sigma, mode="constant", truncate=3.0)
    if noise_level > 0:
        noise = rng.standard_normal(true_suv.shape, dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, sigma=0.7, mode="wrap", truncate=2.5)
        noise /= max(float(noise.std()), 1e-6)
        image = image * (1.0 + noise_level * noise)
    return np.clip(image, 0.0, None).astype(np.float32)


def _paint_ct(
    grid: Grid,
    frame: _BodyFrame,
    arms: bool,
    lesions: Sequence[_LesionPlan],
    rng: np.random.Generator,
    noise_hu: float,
) -> np.ndarray:
    hu = np.full(grid.shape, -1000, dtype=np.int16)
    body_shapes = _BODY_SHAPES + (_ARM_SHAPES if arms else ())
    for shape in body_shapes:  # subcutaneous fat …
        _paint(hu, grid, frame.shape(shape), -90)
    for shape in body_shapes:  # … around muscle
        _paint(hu, grid, frame.shape(shape, shrink_mm=15.0), 40)
    _paint(hu, grid, frame.shape(_SKULL), 800)
    _paint(hu, grid, frame.shape(_SKULL_INNER), 30)
    for shape in _FEMURS:
        _paint(hu, grid, frame.shape(shape), 700)
    for organ in _ORGANS:
        for shape in organ.shapes:
            _paint(hu, grid, frame.shape(shape), organ.hu)
    for plan in lesions:
        lesion_hu = {"liver": 20, "spine": 300, "spleen": 25}.get(plan.host, 35)
        _paint(hu, grid, Ellipsoid(tuple(plan.centre), (plan.diameter_mm / 2.0,) * 3), lesion_hu)  # type: ignore[arg-type]
    if noise_hu > 0:
        # float32 noise, rounded in place: this is the costliest step for a 400×400×300 CT.
        noise = rng.standard_normal(hu.shape, dtype=np.float32)
        noise *= noise_hu
        np.rint(noise, out=noise)
        noise[hu == -1000] = 0.0  # air outside the body stays clean
        hu += noise.astype(np.int16)
    np.clip(hu, -1024, 3071, out=hu)
    return hu


def _slice_acquisition_times(
    count: int, spacing_mm: float, scan_start: datetime, bed_length_mm: float, frame_duration_s: float
) -> list[datetime]:
    """Whole-body step-and-shoot: bed positions from the last array slice (head for HFS, feet for FFS)."""
    slices_per_bed = max(1, int(round(bed_length_mm / spacing_mm)))
    times = []
    for index in range(count):
        bed = (count - 1 - index) // slices_per_bed
        times.append(scan_start + timedelta(seconds=bed * frame_duration_s))
    return times


def _lesion_records(
    plans: Sequence[_LesionPlan], grid: Grid, lesion_labels: np.ndarray, suv: np.ndarray
) -> list[Lesion]:
    records = []
    index_arrays = ndimage.find_objects(lesion_labels.astype(np.int32))
    for number, plan in enumerate(plans, start=1):
        region = index_arrays[number - 1] if number - 1 < len(index_arrays) else None
        values = (
            suv[region][lesion_labels[region] == number] if region is not None else np.zeros(0, np.float32)
        )
        records.append(
            Lesion(
                index=number,
                host=plan.host,
                centre_lps=tuple(float(v) for v in plan.centre),  # type: ignore[arg-type]
                centre_index=tuple(float(v) for v in grid.world_to_index(plan.centre)),  # type: ignore[arg-type]
                diameter_mm=round(plan.diameter_mm, 2),
                uptake_suv=float(plan.uptake_suv),
                necrotic=plan.necrotic,
                voxel_count=int(values.size),
                suv_max=float(values.max()) if values.size else 0.0,
                suv_mean=float(values.mean()) if values.size else 0.0,
            )
        )
    return records


def make_phantom(
    seed: int = 0,
    shape: tuple[int, int, int] = (80, 64, 64),
    spacing: tuple[float, float, float] = (4.0, 4.0, 4.0),
    tracer: Tracer = "FDG",
    n_lesions: int = 5,
    feet_first: bool = False,
    orientation: Orientation = "axial",
    oblique_angles_deg: tuple[float, float, float] = (12.0, 8.0, 5.0),
    arms: bool = False,
    psf_fwhm_mm: float = 6.0,
    noise_level: float = 0.08,
    ct_inplane_factor: int = 2,
    ct_slice_factor: int = 1,
    ct_noise_hu: float = 12.0,
    injection_datetime: datetime | None = None,
    uptake_time_s: float | None = None,
    frame_duration_s: float = 120.0,
    bed_length_mm: float = 150.0,
    table_centre_lps: tuple[float, float, float] = (0.0, -20.0, -600.0),
    uid_salt: str = "",
) -> Phantom:
    """Build a phantom. ``shape``/``spacing`` are PET [slice, row, col] (see TEST_SIZE, REALISTIC_SIZE).

    The CT shares the PET orientation and field of view, with ``ct_inplane_factor``× finer pixels and
    ``ct_slice_factor``× thinner slices. Everything derives from ``seed`` (patient, organ uptakes,
    lesions, times, noise), so equal arguments give identical phantoms and UIDs.
    """
    if tracer not in _TRACERS:
        raise ValueError(f"tracer must be one of {sorted(_TRACERS)}, got {tracer!r}")
    if orientation not in ("axial", "oblique"):
        raise ValueError(f"orientation must be 'axial' or 'oblique', got {orientation!r}")
    streams = np.random.SeedSequence(seed).spawn(5)
    patient_rng, anatomy_rng, lesion_rng, pet_noise_rng, ct_noise_rng = (
        np.random.default_rng(s) for s in streams
    )
    spec = _TRACERS[tracer]

    patient = _patient(patient_rng, seed)
    # Whole 0.1 MBq so that the DS string written to DICOM is exactly the value used here.
    dose_bq = float(
        round(spec.dose_mbq_per_kg * patient.weight_kg * float(patient_rng.uniform(0.9, 1.1)) * 10) * 100_000
    )
    injection = injection_datetime or _default_injection(patient_rng)
    uptake_s = uptake_time_s if uptake_time_s is not None else float(patient_rng.integers(50 * 60, 75 * 60))
    scan_start = injection + timedelta(seconds=round(uptake_s))

    row_cosine, column_cosine = image_orientation(orientation, feet_first, oblique_angles_deg)
    centre = np.array(table_centre_lps, dtype=np.float64)
    pet_grid = make_grid(shape, spacing, row_cosine, column_cosine, centre)
    ct_shape = (shape[0] * ct_slice_factor, shape[1] * ct_inplane_factor, shape[2] * ct_inplane_factor)
    ct_spacing = (
        spacing[0] / ct_slice_factor,
        spacing[1] / ct_inplane_factor,
        spacing[2] / ct_inplane_factor,
    )
    ct_grid = make_grid(ct_shape, ct_spacing, row_cosine, column_cosine, centre)
    frame = _body_frame(shape, spacing, centre, arms)

    uptakes = _organ_uptakes(tracer, anatomy_rng)
    plans = _plan_lesions(n_lesions, lesion_rng, frame, pet_grid, uptakes)
    true_suv, labels, lesion_labels = _paint_pet(pet_grid, frame, arms, tracer, uptakes, plans)
    suv = _blur_and_noise(true_suv, spacing, psf_fwhm_mm, noise_level, pet_noise_rng)
    ct_hu = _paint_ct(ct_grid, frame, arms, plans, ct_noise_rng, ct_noise_hu)

    phantom = Phantom(
        seed=seed,
        tracer=tracer,
        radiopharmaceutical=spec.radiopharmaceutical,
        radionuclide=spec.nuclide.name,
        half_life_s=spec.nuclide.half_life_s,
        positron_fraction=spec.nuclide.positron_fraction,
        patient=patient,
        injected_dose_bq=dose_bq,
        injection_datetime=injection,
        scan_datetime=scan_start,
        slice_acquisition_datetimes=_slice_acquisition_times(
            shape[0], spacing[0], scan_start, bed_length_mm, frame_duration_s
        ),
        frame_duration_s=frame_duration_s,
        suv=suv,
        activity_bqml=np.zeros(0, np.float32),
        true_suv=true_suv,
        labels=labels,
        lesion_labels=lesion_labels,
        body_mask=true_suv > 0,
        label_names=dict(LABEL_NAMES),
        lesions=_lesion_records(plans, pet_grid, lesion_labels, suv),
        pet_affine=pet_grid.affine,
        ct_hu=ct_hu,
        ct_affine=ct_grid.affine,
        ct_scan_datetime=scan_start - timedelta(minutes=4),
        feet_first=feet_first,
        orientation=orientation,
        psf_fwhm_mm=psf_fwhm_mm,
        noise_level=noise_level,
        uid_salt=uid_salt,
        extra={"organ_uptakes": uptakes, "body_scale_xy": frame.scale_xy, "body_scale_z": frame.scale_z},
    )
    phantom.activity_bqml = (suv.astype(np.float64) / phantom.suv_factor).astype(np.float32)
    return phantom


# --------------------------------------------------------------------------------------------------
# DICOM writing
# --------------------------------------------------------------------------------------------------


def _ds(value: float) -> str:
    """DS text of at most 16 characters; what a reader parses back is exactly float(_ds(value))."""
    return format_number_as_ds(float(value))


def _da(moment: date) -> str:
    return moment.strftime("%Y%m%d")


def _tm(moment: datetime) -> str:
    return moment.strftime("%H%M%S")


def _dt(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


@dataclass
class WrittenSeries:
    pet_dir: Path
    ct_dir: Path | None
    pet_files: list[Path]  # PET array slice order
    ct_files: list[Path]
    study_instance_uid: str
    pet_series_instance_uid: str
    ct_series_instance_uid: str | None
    frame_of_reference_uid: str
    pet_rescale_slopes: list[float]  # as written, PET array slice order
    pet_written_values: str  # "BQML START", "CNTS", ...


_MANUFACTURERS = {
    "generic": ("SegAnyPET Phantom", "Synthetic PET/CT"),
    "GE": ("GE MEDICAL SYSTEMS", "Discovery MI"),
    "Philips": ("Philips Medical Systems", "Vereos PET/CT"),
    "Siemens": ("SIEMENS", "Biograph Vision"),
}


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


class _SliceFileWriter:
    """Writes many single-slice files that share most elements.

    The shared elements are encoded once (explicit VR little endian) and spliced, in tag order, with the
    few per-slice ones; pydicom's dcmwrite per file spends most of its time re-encoding the shared part.
    The output is an ordinary Part 10 file (preamble, DICM, file meta group, dataset).
    """

    def __init__(self, shared: Dataset, sop_class_uid: str, omit_tags: Iterable[str]) -> None:
        self._sop_class_uid = sop_class_uid
        self._omit = tuple(omit_tags)
        self._character_set = shared.get("SpecificCharacterSet", "ISO_IR 100")
        self._shared = {int(tag): self._encode(shared[tag]) for tag in shared.keys() if not self._skip(tag)}

    @staticmethod
    def _skip(tag: int) -> bool:
        # Group length elements (gggg,0000) are retired outside the file meta group.
        return (tag & 0xFFFF) == 0 and (tag >> 16) > 6

    def _encode(self, element: object) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_data_element(buffer, element, self._character_set)  # type: ignore[arg-type]
        return buffer.getvalue()

    def write(self, path: Path, varying: Dataset) -> Path:
        _remove_tags(varying, self._omit)
        encoded = dict(self._shared)
        encoded.update({int(tag): self._encode(varying[tag]) for tag in varying.keys()})
        meta = DicomBytesIO()
        meta.is_little_endian, meta.is_implicit_VR = True, False
        write_file_meta_info(meta, _file_meta(self._sop_class_uid, str(varying.SOPInstanceUID)))
        with open(path, "wb") as handle:
            handle.write(b"\0" * 128 + b"DICM")
            handle.write(meta.getvalue())
            handle.write(b"".join(encoded[tag] for tag in sorted(encoded)))
        return path


def _common_dataset(phantom: Phantom, vendor: Vendor, study_uid: str, frame_uid: str) -> Dataset:
    patient = phantom.patient
    manufacturer, model = _MANUFACTURERS[vendor]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = _da(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{patient.age_years:03d}Y"
    ds.PatientWeight = _ds(patient.weight_kg)
    ds.PatientSize = _ds(patient.height_m)
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = _da(phantom.ct_scan_datetime)
    ds.StudyTime = _tm(phantom.ct_scan_datetime)
    ds.StudyID = f"{phantom.seed}"
    ds.AccessionNumber = f"ACC{phantom.seed:07d}"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"PET/CT whole body {phantom.tracer} (synthetic)"
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.InstitutionName = "SegAnyPET Phantom Clinic"
    ds.BodyPartExamined = "WHOLEBODY"
    ds.PatientPosition = phantom.patient_position
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    return ds


def _orientation_strings(affine: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    column_cosine = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    row_cosine = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    return [_ds(v) for v in (*row_cosine, *column_cosine)], row_cosine, column_cosine


def _instance_order(count: int, scramble: bool, seed: int, first_acquired_last: bool) -> list[int]:
    """InstanceNumber per array slice: acquisition order (from the last array slice) unless scrambled."""
    numbers = list(range(count, 0, -1)) if first_acquired_last else list(range(1, count + 1))
    if scramble:
        permutation = np.random.default_rng(seed + 7919).permutation(count)
        numbers = [int(p) + 1 for p in permutation]
    return numbers


def _remove_tags(dataset: Dataset, keywords: Iterable[str]) -> None:
    for keyword in keywords:
        if keyword in dataset:
            delattr(dataset, keyword)
        for item in dataset.get("RadiopharmaceuticalInformationSequence", []) or []:
            if keyword in item:
                delattr(item, keyword)


def _quantise(values: np.ndarray) -> tuple[np.ndarray, float]:
    """int16 pixels and the per-slice RescaleSlope (GE style: the slice maximum maps to 32767)."""
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    slope = float(_ds(peak / _INT16_MAX)) if peak > 0 else 1.0
    stored = np.clip(np.rint(values / slope), -_INT16_MAX - 1, _INT16_MAX).astype(np.int16)
    return stored, slope


def _pet_slice_values(
    phantom: Phantom, units: PetUnits, decay_correction: DecayCorrection, counts_scale: float
) -> list[np.ndarray]:
    """Per-slice pixel values (before quantisation) in the written units."""
    weight_g = phantom.patient.weight_kg * 1000.0
    suv = phantom.suv.astype(np.float64)
    if units == "GML":
        return list(suv)
    if decay_correction == "ADMIN":
        activity = suv * phantom.injected_dose_bq / weight_g
        slices = list(activity)
    elif decay_correction == "NONE":
        slices = []
        for index, moment in enumerate(phantom.slice_acquisition_datetimes):
            elapsed = (moment - phantom.injection_datetime).total_seconds()
            remaining = phantom.injected_dose_bq * 2.0 ** (-elapsed / phantom.half_life_s)
            slices.append(suv[index] * remaining / weight_g)
    else:
        slices = list(suv / phantom.suv_factor)
    if units == "CNTS":
        slices = [values / counts_scale for values in slices]
    return slices


def _radiopharmaceutical_item(phantom: Phantom, dose_in_mbq: bool) -> Dataset:
    spec = _TRACERS[phantom.tracer]
    item = Dataset()
    item.Radiopharmaceutical = spec.radiopharmaceutical
    item.RadiopharmaceuticalStartTime = _tm(phantom.injection_datetime)
    item.RadiopharmaceuticalStartDateTime = _dt(phantom.injection_datetime)
    item.RadionuclideTotalDose = _ds(
        phantom.injected_dose_bq / 1e6 if dose_in_mbq else phantom.injected_dose_bq
    )
    item.RadionuclideHalfLife = _ds(spec.nuclide.half_life_s)
    item.RadionuclidePositronFraction = _ds(spec.nuclide.positron_fraction)
    code = Dataset()
    code.CodeValue = spec.nuclide.code_value
    code.CodingSchemeDesignator = "SRT"
    code.CodeMeaning = spec.nuclide.code_meaning
    item.RadionuclideCodeSequence = DicomSequence([code])
    if spec.code is not None:
        drug = Dataset()
        drug.CodeValue, drug.CodingSchemeDesignator, drug.CodeMeaning = spec.code
        item.RadiopharmaceuticalCodeSequence = DicomSequence([drug])
    return item


def write_pet_series(
    phantom: Phantom,
    out_dir: str | Path,
    *,
    units: PetUnits = "BQML",
    decay_correction: DecayCorrection = "START",
    vendor: Vendor = "generic",
    corrected_image: Sequence[str] | None = None,
    omit_tags: Iterable[str] = (),
    dose_in_mbq: bool = False,
    series_time_offset_s: float = 0.0,
    ge_scan_datetime_tag: bool | None = None,
    philips_scale_tags: Sequence[str] = ("suv", "activity"),
    counts_scale: float = 2.5,
    scramble_instance_numbers: bool = False,
    file_prefix: str = "PT",
    study_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
) -> tuple[list[Path], list[float], str]:
    """Write the PET as one DICOM file per slice; returns (files in array slice order, slopes, series UID).

    ``units``/``decay_correction`` choose the stored values (see _pet_slice_values). ``corrected_image``
    defaults to a GE-like list with DECY dropped for DecayCorrection NONE. ``series_time_offset_s`` > 0
    imitates a post-processed series whose SeriesTime is after the acquisition. GE vendor writes the
    private scan date/time (0009,100D) unless ``ge_scan_datetime_tag`` is False. CNTS writes Philips
    (7053,1000) SUV scale ('suv') and/or (7053,1009) activity concentration scale ('activity').
    ``counts_scale`` is Bq/ml per count for CNTS.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = study_instance_uid or phantom.uid("study")
    frame_uid = frame_of_reference_uid or phantom.uid("frame")
    series_uid = phantom.uid(f"pet-series:{units}:{decay_correction}:{vendor}")
    if corrected_image is None:
        corrected_image = ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"]
        if decay_correction == "NONE":
            corrected_image = [c for c in corrected_image if c != "DECY"]
    write_ge_tag = vendor == "GE" if ge_scan_datetime_tag is None else ge_scan_datetime_tag

    base = _common_dataset(phantom, vendor, study_uid, frame_uid)
    series_moment = phantom.scan_datetime + timedelta(seconds=series_time_offset_s)
    base.SOPClassUID = PET_IMAGE_STORAGE
    base.Modality = "PT"
    base.SeriesInstanceUID = series_uid
    base.SeriesNumber = 3
    base.SeriesDescription = f"PET WB {phantom.tracer} {'AC' if 'ATTN' in corrected_image else 'NAC'}"
    base.SeriesDate = _da(series_moment)
    base.SeriesTime = _tm(series_moment)
    base.ImageType = ["ORIGINAL", "PRIMARY"]
    base.SeriesType = ["WHOLE BODY", "IMAGE"]
    base.Units = units
    base.CountsSource = "EMISSION"
    base.CorrectedImage = list(corrected_image)
    base.DecayCorrection = decay_correction
    base.RandomsCorrectionMethod = "DLYD"
    base.AttenuationCorrectionMethod = "CT"
    base.ReconstructionMethod = "OSEM 3i18s"
    base.NumberOfSlices = phantom.shape[0]
    if units == "GML":
        base.SUVType = "BW"
    base.RadiopharmaceuticalInformationSequence = DicomSequence(
        [_radiopharmaceutical_item(phantom, dose_in_mbq)]
    )
    base.CollimatorType = "NONE"
    # NM/PET Patient Orientation module: both Type 2, present even when empty.
    base.PatientOrientationCodeSequence = DicomSequence([])
    base.PatientGantryRelationshipCodeSequence = DicomSequence([])
    if write_ge_tag:
        block = base.private_block(0x0009, GE_PET_PRIVATE_CREATOR, create=True)
        block.add_new(0x0D, "DT", _dt(phantom.scan_datetime))
    base.Rows, base.Columns = phantom.shape[1], phantom.shape[2]
    base.PixelSpacing = [_ds(phantom.pet_spacing[1]), _ds(phantom.pet_spacing[2])]
    base.SliceThickness = _ds(phantom.pet_spacing[0])
    orientation, row_cosine, column_cosine = _orientation_strings(phantom.pet_affine)
    base.ImageOrientationPatient = orientation
    base.BitsStored, base.HighBit, base.PixelRepresentation = 16, 15, 1
    base.RescaleIntercept = "0"
    base.ActualFrameDuration = int(round(phantom.frame_duration_s * 1000.0))
    _remove_tags(base, omit_tags)

    normal = np.cross(row_cosine, column_cosine)
    values = _pet_slice_values(phantom, units, decay_correction, counts_scale)
    instances = _instance_order(
        phantom.shape[0], scramble_instance_numbers, phantom.seed, first_acquired_last=True
    )
    if units == "CNTS":
        block = base.private_block(0x7053, PHILIPS_PRIVATE_CREATOR, create=True)
        if "suv" in philips_scale_tags:
            block.add_new(0x00, "DS", _ds(counts_scale * phantom.suv_factor))
        if "activity" in philips_scale_tags:
            block.add_new(0x09, "DS", _ds(counts_scale))
    files: list[Path] = []
    slopes: list[float] = []
    # One dataset reused for every slice: only per-slice elements are reassigned (copying is the slow part).
    base.ContentDate, base.ContentTime = _da(series_moment), _tm(series_moment)
    writer = _SliceFileWriter(base, PET_IMAGE_STORAGE, omit_tags)
    for index, slice_values in enumerate(values):
        stored, slope = _quantise(slice_values)
        acquired = phantom.slice_acquisition_datetimes[index]
        since_start = (acquired - phantom.scan_datetime).total_seconds()
        position = phantom.pet_affine[:3, :3] @ np.array([index, 0.0, 0.0]) + phantom.pet_affine[:3, 3]
        ds = Dataset()
        ds.SOPInstanceUID = phantom.uid(f"pet:{series_uid}:{index}")
        ds.InstanceNumber = instances[index]
        ds.ImageIndex = phantom.shape[0] - index
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(position @ normal))
        ds.AcquisitionDate, ds.AcquisitionTime = _da(acquired), _tm(acquired)
        # One static frame for the whole series, as scanners write it for a whole-body acquisition;
        # a per-bed value makes converters such as dcm2niix split the series into several volumes.
        ds.FrameReferenceTime = _ds(phantom.frame_duration_s / 2.0 * 1000.0)
        ds.DecayFactor = (
            _ds(2.0 ** (since_start / phantom.half_life_s)) if decay_correction == "START" else "1"
        )
        ds.RescaleSlope = _ds(slope)
        ds.add_new(0x7FE00010, "OW", stored.tobytes())
        files.append(writer.write(directory / f"{file_prefix}{instances[index]:04d}.dcm", ds))
        slopes.append(slope)
    return files, slopes, series_uid


def write_ct_series(
    phantom: Phantom,
    out_dir: str | Path,
    *,
    vendor: Vendor = "generic",
    omit_tags: Iterable[str] = (),
    scramble_instance_numbers: bool = False,
    study_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
) -> tuple[list[Path], str]:
    """Write the CT (HU = stored − 1024) as one file per slice; returns (files in array order, series UID)."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = study_instance_uid or phantom.uid("study")
    frame_uid = frame_of_reference_uid or phantom.uid("frame")
    series_uid = phantom.uid("ct-series")
    base = _common_dataset(phantom, vendor, study_uid, frame_uid)
    base.SOPClassUID = CT_IMAGE_STORAGE
    base.Modality = "CT"
    base.SeriesInstanceUID = series_uid
    base.SeriesNumber = 2
    base.SeriesDescription = "CT WB attenuation correction (synthetic)"
    base.SeriesDate, base.SeriesTime = _da(phantom.ct_scan_datetime), _tm(phantom.ct_scan_datetime)
    base.AcquisitionDate, base.AcquisitionTime = base.SeriesDate, base.SeriesTime
    base.ContentDate, base.ContentTime = base.SeriesDate, base.SeriesTime
    base.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    base.KVP = "120"
    base.AcquisitionNumber = 1
    base.ConvolutionKernel = "STANDARD"
    ct_shape = phantom.ct_hu.shape
    base.Rows, base.Columns = ct_shape[1], ct_shape[2]
    spacing = phantom.ct_spacing
    base.PixelSpacing = [_ds(spacing[1]), _ds(spacing[2])]
    base.SliceThickness = _ds(spacing[0])
    orientation, row_cosine, column_cosine = _orientation_strings(phantom.ct_affine)
    base.ImageOrientationPatient = orientation
    base.BitsStored, base.HighBit, base.PixelRepresentation = 12, 11, 0
    base.RescaleIntercept, base.RescaleSlope, base.RescaleType = "-1024", "1", "HU"
    base.WindowCenter, base.WindowWidth = "40", "400"
    _remove_tags(base, omit_tags)
    normal = np.cross(row_cosine, column_cosine)
    instances = _instance_order(
        ct_shape[0], scramble_instance_numbers, phantom.seed + 1, first_acquired_last=True
    )
    files: list[Path] = []
    writer = _SliceFileWriter(base, CT_IMAGE_STORAGE, omit_tags)
    for index in range(ct_shape[0]):
        position = phantom.ct_affine[:3, :3] @ np.array([index, 0.0, 0.0]) + phantom.ct_affine[:3, 3]
        ds = Dataset()
        ds.SOPInstanceUID = phantom.uid(f"ct:{index}")
        ds.InstanceNumber = instances[index]
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(position @ normal))
        ds.add_new(
            0x7FE00010, "OW", (phantom.ct_hu[index].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        )
        files.append(writer.write(directory / f"CT{instances[index]:04d}.dcm", ds))
    return files, series_uid


def write_dicom_series(
    phantom: Phantom,
    out_dir: str | Path,
    *,
    write_ct: bool = True,
    units: PetUnits = "BQML",
    decay_correction: DecayCorrection = "START",
    vendor: Vendor = "generic",
    corrected_image: Sequence[str] | None = None,
    omit_tags: Iterable[str] = (),
    dose_in_mbq: bool = False,
    series_time_offset_s: float = 0.0,
    ge_scan_datetime_tag: bool | None = None,
    philips_scale_tags: Sequence[str] = ("suv", "activity"),
    counts_scale: float = 2.5,
    scramble_instance_numbers: bool = False,
) -> WrittenSeries:
    """Write PET (``out_dir/PT``) and, by default, CT (``out_dir/CT``) of one study / frame of reference.

    Variants: ``units='CNTS', vendor='Philips'`` (Philips counts with private scale factors),
    ``units='GML'`` (values already SUV), ``decay_correction`` START/ADMIN/NONE, ``omit_tags`` (keywords
    removed everywhere, including inside RadiopharmaceuticalInformationSequence) and ``dose_in_mbq``
    for the "missing/implausible SUV tags" paths. See write_pet_series for the rest.
    """
    root = Path(out_dir)
    omitted = tuple(omit_tags)
    study_uid, frame_uid = phantom.uid("study"), phantom.uid("frame")
    pet_files, slopes, pet_uid = write_pet_series(
        phantom,
        root / "PT",
        units=units,
        decay_correction=decay_correction,
        vendor=vendor,
        corrected_image=corrected_image,
        omit_tags=omitted,
        dose_in_mbq=dose_in_mbq,
        series_time_offset_s=series_time_offset_s,
        ge_scan_datetime_tag=ge_scan_datetime_tag,
        philips_scale_tags=philips_scale_tags,
        counts_scale=counts_scale,
        scramble_instance_numbers=scramble_instance_numbers,
        study_instance_uid=study_uid,
        frame_of_reference_uid=frame_uid,
    )
    ct_files: list[Path] = []
    ct_uid = None
    if write_ct:
        ct_files, ct_uid = write_ct_series(
            phantom,
            root / "CT",
            vendor=vendor,
            omit_tags=omitted,
            scramble_instance_numbers=scramble_instance_numbers,
            study_instance_uid=study_uid,
            frame_of_reference_uid=frame_uid,
        )
    return WrittenSeries(
        pet_dir=root / "PT",
        ct_dir=root / "CT" if write_ct else None,
        pet_files=pet_files,
        ct_files=ct_files,
        study_instance_uid=study_uid,
        pet_series_instance_uid=pet_uid,
        ct_series_instance_uid=ct_uid,
        frame_of_reference_uid=frame_uid,
        pet_rescale_slopes=slopes,
        pet_written_values=f"{units} {decay_correction}",
    )


# --------------------------------------------------------------------------------------------------
# NIfTI writing
# --------------------------------------------------------------------------------------------------


def write_label_nifti(phantom: Phantom, path: str | Path, sidecar: bool = True) -> Path:
    """Ground-truth label map on the PET grid (uint8, LABEL_NAMES), plus a '<name>.labels.json' sidecar."""
    destination = write_nifti(
        path, phantom.labels, phantom.pet_affine, kind="label", description="phantom labels"
    )
    if sidecar:
        stem = destination.name.removesuffix(".gz").removesuffix(".nii")
        write_label_names(destination.with_name(f"{stem}.labels.json"), phantom.label_names)
    return destination


def write_pet_nifti(phantom: Phantom, path: str | Path, values: Literal["suv", "bqml"] = "suv") -> Path:
    array = phantom.suv if values == "suv" else phantom.activity_bqml
    return write_nifti(path, array, phantom.pet_affine, description=f"phantom PET {values.upper()}")


def write_ct_nifti(phantom: Phantom, path: str | Path) -> Path:
    return write_nifti(path, phantom.ct_hu.astype(np.float32), phantom.ct_affine, description="phantom CT HU")


def lesion_table(phantom: Phantom) -> str:
    """JSON description of the lesions (for benchmarks and fixtures)."""
    return json.dumps([lesion.__dict__ for lesion in phantom.lesions], indent=2, default=float)
