"""Phantom anatomy: organ, body and lesion geometry, and the voxel grids they are painted on.

Conventions are those of backend.imaging.dicom_series: arrays are ``[slice, row, col]`` with slices ascending
along the slice normal (row cosine × column cosine), and affines map array indices to LPS mm.

Anatomy is a set of ellipsoids and elliptic cylinders defined for a reference adult (mm, body frame:
x = patient left, y = posterior, z = distance below the vertex). It is scaled into the field of view
(each of the lateral/axial scales capped at 1, so a large FOV gives an adult-sized patient) and
voxelised at voxel centres. Lesions are spheres of real size (5–40 mm), placed inside a host organ or
the soft tissue of the trunk.

Performance: each shape is evaluated only inside its bounding box, with coordinates built from
broadcast 1-D terms, so an axis-aligned grid costs little more than the painted voxels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

# LPS (DICOM patient frame) ↔ RAS (NIfTI world frame): x and y change sign; the matrix is its own inverse.
from worker.nifti_layout import LPS_TO_RAS  # noqa: F401  (re-exported with the phantom package)

Orientation = Literal["axial", "oblique"]

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
class Organ:
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


BODY_SHAPES: tuple[Shape, ...] = (
    _e(0, 0, 110, 78, 98, 110),  # head
    _c(0, 15, 55, 55, 190, 300),  # neck
    _e(0, 5, 335, 185, 105, 80),  # shoulders
    _c(0, 5, 165, 112, 330, 850),  # chest and abdomen
    _e(0, 5, 850, 175, 115, 110),  # pelvis
    _c(95, 10, 80, 85, 850, 1800),  # left leg
    _c(-95, 10, 80, 85, 850, 1800),  # right leg
)
ARM_SHAPES: tuple[Shape, ...] = (
    _c(235, 10, 42, 45, 340, 900),
    _c(-235, 10, 42, 45, 340, 900),
)

# Painted in this order; later organs overwrite earlier ones. SUVs are typical mean values at ~60 min.
ORGANS: tuple[Organ, ...] = (
    Organ("bowel", 0, (_e(0, -30, 770, 120, 60, 70),), 1.6, 3.0, 25),
    Organ("spine", 12, (_c(0, 80, 18, 18, 210, 900),), 1.3, 1.0, 450),
    Organ("aorta", 11, (_c(20, 52, 12, 12, 390, 840),), 1.7, 1.6, 40),
    Organ("lung_left", 8, (_e(85, 5, 450, 70, 90, 135),), 0.5, 0.3, -850),
    Organ("lung_right", 9, (_e(-85, 5, 450, 72, 90, 140),), 0.5, 0.3, -850),
    Organ("heart", 2, (_e(30, -35, 490, 58, 52, 60),), 4.0, 1.8, 40),
    Organ("liver", 3, (_e(-70, 5, 620, 105, 85, 85),), 2.3, 5.5, 60),
    Organ("spleen", 4, (_e(100, 45, 600, 40, 38, 58),), 1.9, 7.0, 48),
    Organ("kidney_left", 5, (_e(75, 70, 690, 30, 30, 58),), 3.0, 35.0, 35),
    Organ("kidney_right", 6, (_e(-75, 70, 700, 30, 30, 58),), 3.0, 35.0, 35),
    Organ("bladder", 7, (_e(0, -35, 930, 45, 40, 38),), 15.0, 25.0, 8),
    Organ(
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
    Organ("brain", 1, (_e(0, 5, 95, 65, 82, 72),), 7.0, 0.15, 35),
)


HEART_BLOOD_POOL = _e(30, -35, 490, 38, 33, 40)
SKULL = _e(0, 0, 110, 74, 94, 106)
SKULL_INNER = _e(0, 0, 110, 68, 88, 100)
FEMURS = (_c(95, 10, 15, 15, 900, 1800), _c(-95, 10, 15, 15, 900, 1800))
_LESION_HOSTS = ("liver", "lung_left", "lung_right", "soft_tissue", "spine", "spleen")
_LESION_HOST_WEIGHTS = (0.25, 0.15, 0.15, 0.3, 0.1, 0.05)


@dataclass(frozen=True)
class BodyFrame:
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


def paint(volume: np.ndarray, grid: Grid, shape: Shape, value: float) -> None:
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
# Placing the body and the lesions
# --------------------------------------------------------------------------------------------------


def body_frame(
    grid_shape: Sequence[int], spacing: Sequence[float], centre: np.ndarray, arms: bool
) -> BodyFrame:
    axial_extent = grid_shape[0] * spacing[0]
    row_extent, column_extent = grid_shape[1] * spacing[1], grid_shape[2] * spacing[2]
    width = _REFERENCE_WIDTH_WITH_ARMS_MM if arms else _REFERENCE_WIDTH_MM
    scale_xy = min(1.0, _FILL_FRACTION * min(column_extent / width, row_extent / _REFERENCE_DEPTH_MM))
    scale_z = min(1.0, 0.97 * axial_extent / _REFERENCE_LENGTH_MM)
    vertex_z = float(centre[2]) + axial_extent / 2.0 - 0.015 * axial_extent
    return BodyFrame(scale_xy, scale_z, vertex_z, float(centre[0]), float(centre[1]))


@dataclass(frozen=True)
class LesionPlan:
    host: str
    centre: np.ndarray  # LPS
    diameter_mm: float
    uptake_suv: float
    necrotic: bool


def _host_shapes(host: str, frame: BodyFrame) -> tuple[Shape, ...]:
    if host == "soft_tissue":
        return (
            frame.shape(_c(0, 5, 165, 112, 330, 850), shrink_mm=40.0),
            frame.shape(_c(0, 15, 55, 55, 190, 300), 15.0),
        )
    organ = next(o for o in ORGANS if o.name == host)
    return tuple(frame.shape(s) for s in organ.shapes)


def _inside_any(shapes: Iterable[Shape], point: np.ndarray) -> bool:
    return any(bool(contains(shape, point)) for shape in shapes)


def plan_lesions(
    count: int, rng: np.random.Generator, frame: BodyFrame, grid: Grid, uptakes: dict[str, float]
) -> list[LesionPlan]:
    organ_shapes = [frame.shape(s) for o in ORGANS if o.label for s in o.shapes]
    body_shapes = [frame.shape(s) for s in BODY_SHAPES]
    plans: list[LesionPlan] = []
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
            plans.append(LesionPlan(host, centre, diameter, uptake, necrotic))
            break
    return plans
