"""Region helpers of the threshold engine: bounds, connected parts, distance-based splits and level searches.

Kept apart from :mod:`worker.engines.classical` so the engine's rules read in one sitting."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from worker.engines.base import Point, PromptError, Prompts

Index = tuple[int, int, int]


_FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


_BACKGROUND_STRIDE = 4


_BACKGROUND_CACHE_SIZE = 32


# A negative point under this fraction of the seeds' level is on their surroundings, not on another object.
_COLDER = 0.6


# A plateau must be clearly colder than the seed (under this fraction of its level) to be cut off halfway;
# closer levels are two similar objects, separated at their valley instead.
_PLATEAU_RATIO = 0.8


# Below this slope (per voxel, as a fraction of the two levels' difference) a negative point is on a plateau.
_PLATEAU_SLOPE = 0.2


# Voxels around a cut-out object that may still belong to it (about one PSF width on clinical PET grids).
_RIM_VOXELS = 2


_SCORE_FULL_RESOLUTION_VOXELS = 500_000


# Above this many voxels, distances for splitting are computed on 2×2×2 blocks (8× faster, ±1 voxel).
_EXACT_DISTANCE_VOXELS = 200_000


def _triple(values: Iterable[int] | Iterable[np.integer]) -> Index:
    a, b, c = (int(v) for v in values)
    return a, b, c


@dataclass(frozen=True)
class _Bounds:
    """A half-open box ``[lower, upper)`` in voxel indices."""

    lower: Index
    upper: Index

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        lower, upper = self.lower, self.upper
        return slice(lower[0], upper[0]), slice(lower[1], upper[1]), slice(lower[2], upper[2])

    @property
    def shape(self) -> Index:
        return _triple(hi - lo for lo, hi in zip(self.lower, self.upper, strict=True))

    def local(self, index: Index) -> Index:
        return _triple(i - lo for i, lo in zip(index, self.lower, strict=True))

    def contains(self, index: Index) -> bool:
        return all(lo <= i < hi for i, lo, hi in zip(index, self.lower, self.upper, strict=True))

    def union(self, other: _Bounds) -> _Bounds:
        return _Bounds(_triple(map(min, self.lower, other.lower)), _triple(map(max, self.upper, other.upper)))

    def padded(self, pad: int, shape: tuple[int, ...]) -> _Bounds:
        return _Bounds(
            _triple(max(0, lo - pad) for lo in self.lower),
            _triple(min(s, hi + pad) for hi, s in zip(self.upper, shape, strict=True)),
        )


@dataclass(frozen=True)
class _Region:
    """A boolean mask stored in the crop ``bounds`` of the volume."""

    bounds: _Bounds
    mask: np.ndarray
    truncated: bool = False


@dataclass(frozen=True)
class _Seed:
    """A positive click, the peak its region grows from, and the region's threshold."""

    click: Index
    peak: Index
    threshold: float


def body_background(volume: np.ndarray) -> float:
    """A robust body background level: median of the voxels above 10 % of the 99.5th percentile.

    Computed on every ``_BACKGROUND_STRIDE``-th voxel per axis (fast on whole-body volumes); the 10 %
    level leaves out air and keeps soft tissue, whatever the units (SUV, Bq/ml).
    """
    sample = np.asarray(
        volume[tuple(slice(None, None, _BACKGROUND_STRIDE) for _ in range(3))], dtype=np.float32
    )
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0
    high = float(np.percentile(sample, 99.5))
    if high <= 0:
        return 0.0
    body = sample[sample > 0.1 * high]
    return float(np.median(body)) if body.size else 0.0


def _bounding_bounds(mask: np.ndarray) -> _Bounds | None:
    """The tight box around the ``True`` voxels of ``mask``, or ``None`` when it is empty."""
    lower: list[int] = []
    upper: list[int] = []
    for axis in range(mask.ndim):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other_axes))
        if present.size == 0:
            return None
        lower.append(int(present[0]))
        upper.append(int(present[-1]) + 1)
    return _Bounds(_triple(lower), _triple(upper))


def _component_containing(binary: np.ndarray, seeds: list[Index]) -> np.ndarray:
    """The 6-connected components of ``binary`` that contain any of ``seeds`` (local indices)."""
    labels, _ = ndimage.label(binary, structure=_FACE_CONNECTIVITY)
    wanted = {int(labels[s]) for s in seeds} - {0}
    if not wanted:
        return np.zeros_like(binary)
    return np.isin(labels, list(wanted))


def _nearer_to_second(
    candidates: np.ndarray, first: Index, second: Index, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Voxels of ``candidates`` strictly nearer (in mm) to voxel ``second`` than to voxel ``first``."""
    # The two-point Voronoi boundary is the bisecting plane: sign of (x - midpoint) · (second - first).
    side: np.ndarray | float = 0.0
    for axis in range(3):
        direction = (second[axis] - first[axis]) * spacing[axis] ** 2
        if direction == 0:
            continue
        coordinate = np.arange(candidates.shape[axis], dtype=np.float64) - 0.5 * (first[axis] + second[axis])
        view = [1, 1, 1]
        view[axis] = -1
        side = side + direction * coordinate.reshape(view)
    return candidates & (np.asarray(side) > 0)


def _nearest_split(
    candidates: np.ndarray,
    keep_core: np.ndarray,
    remove_core: np.ndarray,
    spacing: tuple[float, float, float],
) -> np.ndarray:
    """Voxels of ``candidates`` to remove: the remove core plus the voxels nearer to it (ties are kept)."""
    if not remove_core.any():
        return np.zeros_like(candidates)
    if not keep_core.any():
        return candidates.copy()
    to_remove = _distance_to(remove_core, spacing)
    to_keep = _distance_to(keep_core, spacing)
    return candidates & (remove_core | ((to_remove < to_keep) & ~keep_core))


def _distance_to(core: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) from every voxel to ``core``; on large crops computed on 2×2×2 blocks (±1 voxel)."""
    if core.size <= _EXACT_DISTANCE_VOXELS:
        return ndimage.distance_transform_edt(~core, sampling=spacing)
    padded = np.pad(core, [(0, n % 2) for n in core.shape])
    a, b, c = (n // 2 for n in padded.shape)
    blocks = padded.reshape(a, 2, b, 2, c, 2).any(axis=(1, 3, 5))
    coarse = ndimage.distance_transform_edt(~blocks, sampling=tuple(2 * s for s in spacing))
    fine = coarse.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    return fine[: core.shape[0], : core.shape[1], : core.shape[2]]


def _check_inputs(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    prompts: Prompts,
    previous_mask: np.ndarray | None,
) -> None:
    if volume.ndim != 3:
        raise PromptError(f"expected a 3D volume, got shape {tuple(volume.shape)}")
    if len(spacing) != 3 or not all(math.isfinite(float(s)) and float(s) > 0 for s in spacing):
        raise PromptError(f"spacing must be three positive numbers, got {spacing}")
    prompts.validate(volume.shape)
    if previous_mask is not None and previous_mask.shape != volume.shape:
        raise PromptError(f"previous mask shape {previous_mask.shape} differs from volume {volume.shape}")


def _resolve_conflicts(points: tuple[Point, ...]) -> list[Point]:
    """The points in order; for a voxel given twice only the later point is kept."""
    last_by_index: dict[Index, Point] = {}
    for point in points:
        index = _triple(point.index)
        last_by_index.pop(index, None)  # re-insert so the order follows the later click
        last_by_index[index] = Point(index, point.positive)
    return list(last_by_index.values())


def _union_all(parts: list[_Bounds]) -> _Bounds:
    bounds = parts[0]
    for other in parts[1:]:
        bounds = bounds.union(other)
    return bounds


def _touches_face(region: np.ndarray, axis: int, position: int) -> bool:
    return bool(np.take(region, position, axis=axis).any())


def _paste_into(source: np.ndarray, source_bounds: _Bounds, target: _Bounds) -> np.ndarray:
    """``source`` (stored in ``source_bounds``) seen through the box ``target``; outside it is ``False``."""
    out = np.zeros(target.shape, dtype=bool)
    lower = [max(a, b) for a, b in zip(source_bounds.lower, target.lower, strict=True)]
    upper = [min(a, b) for a, b in zip(source_bounds.upper, target.upper, strict=True)]
    if any(lo >= hi for lo, hi in zip(lower, upper, strict=True)):
        return out
    out_slices = tuple(slice(lo - t, hi - t) for lo, hi, t in zip(lower, upper, target.lower, strict=True))
    src_slices = tuple(
        slice(lo - s, hi - s) for lo, hi, s in zip(lower, upper, source_bounds.lower, strict=True)
    )
    out[out_slices] = source[src_slices]
    return out


def _smoothed(values: np.ndarray) -> np.ndarray:
    """Values smoothed with a 1-voxel Gaussian (noise percolates through thresholds otherwise)."""
    return ndimage.gaussian_filter(values, sigma=1.0, mode="nearest", truncate=2.0)


def _plateau_split(
    smoothed: np.ndarray,
    component: np.ndarray,
    spacing: tuple[float, float, float],
    negative: Index,
    seed: Index,
    seed_level: float,
    negative_level: float,
) -> np.ndarray | None:
    """What ``seed`` keeps when ``negative`` lies on a colder plateau (an organ around a lesion).

    The seed's core is its part above the level halfway between the two; the plateau's core is the colder
    part eroded by ``_RIM_VOXELS`` (so the seed's own thin rim is not taken for the plateau); the voxels in
    between go to the nearer core. ``None`` when the plateau is too thin to have a core.
    """
    halfway = 0.5 * (seed_level + negative_level)
    keep_core = _component_containing(component & (smoothed >= halfway), [seed])
    colder = ndimage.binary_erosion(
        component & (smoothed < halfway), structure=_FACE_CONNECTIVITY, iterations=_RIM_VOXELS
    )
    remove_core = _component_containing(colder, [negative])
    if not remove_core.any() or not keep_core.any():
        return None
    return component & ~_nearest_split(component, keep_core, remove_core, spacing)


def _slope_at(values: np.ndarray, index: Index, spacing: tuple[float, float, float]) -> float:
    """Gradient magnitude at ``index`` per voxel step of the finest axis (central differences)."""
    finest = min(spacing)
    squares = 0.0
    for axis in range(3):
        below = list(index)
        above = list(index)
        below[axis] = max(0, index[axis] - 1)
        above[axis] = min(values.shape[axis] - 1, index[axis] + 1)
        steps = above[axis] - below[axis]
        if steps:
            derivative = (float(values[tuple(above)]) - float(values[tuple(below)])) / (steps * spacing[axis])
            squares += (derivative * finest) ** 2
    return squares**0.5


def _voxels(like: np.ndarray, indices: list[Index]) -> np.ndarray:
    marked = np.zeros_like(like, dtype=bool)
    for index in indices:
        marked[index] = True
    return marked


def _separating_level(
    values: np.ndarray, component: np.ndarray, negative: Index, seed: Index
) -> float | None:
    """The lowest level ``t`` at which ``negative`` and ``seed`` are not 6-connected in ``component >= t``.

    Usually the colder of the two simply drops out just above its own value (one labelling). Otherwise a
    saddle separates them below that, found by bisection to 1/1024 of the range (connection only gets rarer
    as ``t`` rises). ``None`` when they stay connected until both drop together (equal values).
    """

    def connected(level: float) -> bool:
        labels, _ = ndimage.label(component & (values >= level), structure=_FACE_CONNECTIVITY)
        return bool(labels[negative] != 0 and labels[negative] == labels[seed])

    top = min(float(values[negative]), float(values[seed]))
    if connected(top):
        if float(values[negative]) == float(values[seed]):
            return None
        return float(np.nextafter(top, np.inf))
    low, high = float(values[component].min()), top
    for _ in range(10):
        middle = 0.5 * (low + high)
        if connected(middle):
            low = middle
        else:
            high = middle
    return high
