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
    """A positive click, the peak its region grows from, the peak's value and its smoothed level."""

    click: Index
    peak: Index
    peak_value: float
    smoothed_value: float


def body_background(volume: np.ndarray) -> float:
    """A robust body background level: median of the voxels above 10 % of the 99.5th percentile.

    No longer used by the engine (issue 14: with an FDG brain in view it lands above muscle; regions use a
    local shell instead); kept for callers that want a whole-volume level.

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


# ---------------------------------------------------------------------- local background and barrier

# Directions of the barrier's rays: a (polar, azimuth) table.
_RAY_POLAR = 8
_RAY_AZIMUTH = 16


def _shell_median(
    volume: np.ndarray, region: _Region, spacing: tuple[float, float, float], near_mm: float, far_mm: float
) -> float | None:
    """Lower quartile of the voxels ``near_mm``–``far_mm`` outside ``region`` (values > 0: air out).

    Large crops are looked at on 2×2×2 blocks (the shell is a few voxels thick; ±1 voxel does not matter).
    """
    step = 2 if region.mask.size > _EXACT_DISTANCE_VOXELS else 1
    far_voxels = [max(1, math.ceil(far_mm / (s * step))) for s in spacing]
    bounds = _Bounds(
        _triple(max(0, lo - f * step) for lo, f in zip(region.bounds.lower, far_voxels, strict=True)),
        _triple(min(n, hi + f * step) for hi, f, n in zip(region.bounds.upper, far_voxels, volume.shape, strict=True)),
    )
    inside = _paste_into(region.mask, region.bounds, bounds)[::step, ::step, ::step]
    values = np.asarray(volume[bounds.slices][::step, ::step, ::step], dtype=np.float32)
    distance = ndimage.distance_transform_edt(~inside, sampling=tuple(s * step for s in spacing))
    shell = (distance > near_mm) & (distance <= far_mm) & (values > 0) & np.isfinite(values)
    if not shell.any():
        return None
    # The lower quartile: a shell that still runs partly inside the object (a first, partial region of an
    # organ) must not raise the background.
    return float(np.percentile(values[shell], 25))


@dataclass(frozen=True)
class _Star:
    """A barrier grown from a point: how far (mm) the object reaches along each ray, capped."""

    centre: Index
    radii: np.ndarray  # (_RAY_POLAR, _RAY_AZIMUTH), mm, margin included

    def allowed(self, bounds: _Bounds, spacing: tuple[float, float, float]) -> np.ndarray:
        offsets = [
            ((np.arange(lo, hi) - c) * s).astype(np.float32)
            for lo, hi, c, s in zip(bounds.lower, bounds.upper, self.centre, spacing, strict=True)
        ]
        a, b, c = np.meshgrid(*offsets, indexing="ij", sparse=True)
        distance = np.sqrt(a * a + b * b + c * c)
        polar = np.arccos(np.clip(a / np.maximum(distance, 1e-6), -1.0, 1.0))
        azimuth = np.arctan2(c, b)
        i = np.minimum((polar / np.pi * _RAY_POLAR).astype(np.int32), _RAY_POLAR - 1)
        j = np.minimum(((azimuth + np.pi) / (2 * np.pi) * _RAY_AZIMUTH).astype(np.int32), _RAY_AZIMUTH - 1)
        return distance <= self.radii[i, j]


def _star_barrier(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    centre: Index,
    threshold: float,
    max_mm: float,
    cap_ratio: float,
    margin_mm: float,
) -> _Star:
    """How far the object reaches from ``centre`` along rays at ``threshold``, each capped at ``cap_ratio``
    times the median reach (a ray that runs on into a touching structure stops near the object's size).

    Along a ray the profile (linear interpolation, averaged over one voxel) first has to reach the
    threshold (a click in a cold pocket such as the cardiac blood pool starts below it); the reach is where
    it then stays below the threshold for more than one voxel.
    """
    step = 0.75 * min(spacing)
    distances = np.arange(0.0, max_mm + step, step)
    polar = (np.arange(_RAY_POLAR) + 0.5) / _RAY_POLAR * np.pi
    azimuth = (np.arange(_RAY_AZIMUTH) + 0.5) / _RAY_AZIMUTH * 2 * np.pi - np.pi
    p, q = np.meshgrid(polar, azimuth, indexing="ij")
    directions = np.stack([np.cos(p), np.sin(p) * np.cos(q), np.sin(p) * np.sin(q)], axis=-1)  # mm
    points = centre + directions[..., None, :] * distances[:, None] / np.asarray(spacing)
    coordinates = points.reshape(-1, 3).T
    inside = np.all((coordinates >= 0) & (coordinates <= np.asarray(volume.shape)[:, None] - 1), axis=0)
    low = np.clip(np.floor(coordinates).astype(np.int64), 0, np.asarray(volume.shape)[:, None] - 2)
    box = _Bounds(_triple(low.min(axis=1)), _triple(np.minimum(low.max(axis=1) + 2, volume.shape)))
    crop = np.asarray(volume[box.slices], dtype=np.float32)
    local = coordinates - np.asarray(box.lower)[:, None]
    samples = ndimage.map_coordinates(crop, local, order=1, mode="nearest")
    samples[~inside] = 0.0
    profile = samples.reshape(_RAY_POLAR * _RAY_AZIMUTH, distances.size)
    width = max(1, int(round(min(spacing) / step)))
    profile = ndimage.uniform_filter1d(profile, size=width + 1, axis=1, mode="nearest")
    above = profile >= threshold
    reached = np.maximum.accumulate(above, axis=1)
    run = max(2, int(math.ceil(1.5 * min(spacing) / step)))
    below_run = ndimage.minimum_filter1d((~above).astype(np.uint8), size=run, axis=1, origin=-(run // 2), mode="nearest")
    stop = reached & (below_run > 0)
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), distances.size - 1)
    reach = distances[first]
    reach[~reached.any(axis=1)] = 0.0
    positive = reach[reach > 0]
    cap = cap_ratio * float(np.median(positive)) if positive.size else 0.0
    radii = np.minimum(reach, cap).reshape(_RAY_POLAR, _RAY_AZIMUTH)
    # A voxel is judged by the ray of its direction bin; its neighbours' reach too, so that a corner or a
    # surface the bin's own ray grazes is not cut off by the binning.
    radii = ndimage.maximum_filter(radii, size=3, mode=("nearest", "wrap"))
    return _Star(centre, radii + margin_mm)


# A neck (the bridge a region leaks through into a touching structure) is at most this wide (mm, per side).
_NECK_MM = 8.0


def _neck_split(
    component: np.ndarray, spacing: tuple[float, float, float], negative: Index, seeds: list[Index]
) -> np.ndarray | None:
    """What a negative point removes when it sits beyond a neck: the part that erosion by the fewest voxels
    (up to ``_NECK_MM``) separates from every seed, plus the voxels nearer to that part than to the seeds'
    part. ``None`` when no such erosion separates them (then the level rules decide)."""
    most = max(1, math.ceil(_NECK_MM / min(spacing)))
    eroded = component
    for _ in range(most):
        eroded = ndimage.binary_erosion(eroded, structure=_FACE_CONNECTIVITY)
        if not eroded[negative]:
            return None
        labels, _ = ndimage.label(eroded, structure=_FACE_CONNECTIVITY)
        kept = {int(labels[s]) for s in seeds} - {0}
        if not kept:
            return None
        if int(labels[negative]) not in kept:
            keep_core = np.isin(labels, list(kept))
            remove_core = labels == labels[negative]
            return _nearest_split(component, keep_core, remove_core, spacing)
    return None


# A negative point this close (in voxels of the coarsest axis) to the outside of a large object is on its
# rim; the rim is then shaved within _SHAVE_MM of it.
_RIM_DEPTH_VOXELS = 1.5
# A positive click this close to the current mask adds the part of its region within this distance; a
# negative click on an organ removes at least this far around itself.
_EDGE_ADD_MM = 15.0
_SHAVE_MM = 15.0
_PLATEAU_SPREAD = 1.3


def _rim_shave(
    component: np.ndarray, smoothed: np.ndarray, spacing: tuple[float, float, float], negative: Index
) -> np.ndarray | None:
    """What a negative point on the rim of a plateau (an organ) removes: the voxels within ``_SHAVE_MM`` of
    it that lie no deeper in the object than it does (half a voxel of slack). ``None`` when the point is
    deeper or the object is peaked (its 95th percentile over ``_PLATEAU_SPREAD`` times its median, on the
    ``smoothed`` values): a lesion's rim is cut by the level rules instead."""
    inside = smoothed[component]
    if np.percentile(inside, 95) > _PLATEAU_SPREAD * np.median(inside):
        return None
    depth = ndimage.distance_transform_edt(np.pad(component, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    coarsest = max(spacing)
    if depth[negative] > _RIM_DEPTH_VOXELS * coarsest:
        return None
    offsets = [
        ((np.arange(n) - c) * s) ** 2 for n, c, s in zip(component.shape, negative, spacing, strict=True)
    ]
    near = (offsets[0][:, None, None] + offsets[1][None, :, None] + offsets[2][None, None, :]) <= _SHAVE_MM**2
    return component & near & (depth <= depth[negative] + 0.5 * coarsest)


def _encloses(volume: np.ndarray, bounds: _Bounds, threshold: float, click: Index) -> bool:
    """Whether the voxels ``>= threshold`` around ``bounds`` enclose the (colder) clicked voxel."""
    padded = bounds.padded(2, volume.shape)
    hot = np.asarray(volume[padded.slices]) >= threshold
    local = padded.local(click)
    if not padded.contains(click) or hot[local]:
        return False
    return bool(ndimage.binary_fill_holes(hot)[local])


def _ball(bounds: _Bounds, centre: Index, spacing: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """The voxels of the box ``bounds`` within ``radius_mm`` of voxel ``centre`` (both in volume indices)."""
    squares = [
        ((np.arange(lo, hi) - c) * s) ** 2
        for lo, hi, c, s in zip(bounds.lower, bounds.upper, centre, spacing, strict=True)
    ]
    return (squares[0][:, None, None] + squares[1][None, :, None] + squares[2][None, None, :]) <= radius_mm**2


def _near_mask(mask: np.ndarray, index: Index, spacing: tuple[float, float, float]) -> bool:
    """Whether voxel ``index`` is outside ``mask`` but within 1.5 voxels (coarsest axis) of it."""
    if mask[index]:
        return False
    reach = 1.5 * max(spacing)
    window = _Bounds(
        _triple(max(0, i - math.ceil(reach / s)) for i, s in zip(index, spacing, strict=True)),
        _triple(min(n, i + math.ceil(reach / s) + 1) for i, s, n in zip(index, spacing, mask.shape, strict=True)),
    )
    return bool((mask[window.slices] & _ball(window, index, spacing, reach)).any())
