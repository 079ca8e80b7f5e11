"""A weightless PET engine: background-corrected isocontours grown from clicks (EANM 41 % for peaks).

Rules (all deterministic; voxel indices in array axis order):

* **Positive point** — the peak is the hottest voxel within ``peak_search_radius`` voxels of the click
  (so a click just beside the hottest voxel still finds it; ties go to the first voxel in C order); its
  *level* is read on the volume smoothed with a 1-voxel Gaussian. The region is the 6-connected set of
  voxels ``>= threshold`` that contains the peak, with its enclosed holes filled (a necrotic core). The
  threshold is refined from the object's surroundings, never from the whole volume (a hot FDG brain
  elsewhere changes nothing):

  1. A first region at ``0.7 ×`` the smoothed level.
  2. Its *local background* ``b``: the lower quartile of the voxels 6–12 mm outside it (``shell_mm``;
     voxels ``<= 0`` such as air are left out). The lower quartile, so that a shell still partly inside a
     large organ does not raise it.
  3. The new threshold: ``b + fraction × (peak − b)`` (background-corrected 41 % of the raw peak). A region
     of ``plateau_ml`` or more whose smoothed level is at most 1.25 × its median is a *plateau* (an organ):
     its threshold is halfway between its median and ``b``, and what it encloses is part of it (renal
     medulla, blood pool). A distinct peak on a plateau (a lesion in an organ) takes the plateau's median
     as its background. A peak under ``min_contrast × b`` gives no region (only the clicked voxel).
  4. Regrow and repeat from 2 until the threshold moves by under 1 % of the level (at most 4 times).

  Leaks are controlled in three ways. A *barrier* grown from the click: rays from the clicked voxel in
  8 × 16 directions measure how far the object reaches at the threshold (a ray that starts in a cold
  pocket first has to reach it); each reach is capped at ``barrier_ratio`` × the median reach, widened to
  its neighbouring rays and by ``barrier_margin_mm``; voxels beyond it are left out — unless the region
  without the barrier is at most 1.3 × as large (then nothing leaked: a necrotic rim, an off-centre click).
  A *ceiling*: when the region's hot part (90th percentile) is over 1.25 × the clicked level and does not
  enclose the click, a hotter structure touches the object: voxels above 1.3 × the peak, and their
  one-voxel rim, are left out. A *cold pocket*: when that hot part is over 1.5 × the clicked level and
  encloses the click (the cardiac blood pool inside the myocardium), the hot part's level is used and the
  region is what it encloses. The region is grown in a crop around the peak that is extended on every
  side the region touches, up to ``max_half_size_mm`` from the peak; a region cut by that limit is
  *truncated* (it halves the score). 6-connectivity is used because noisy background percolates far sooner
  with 26 neighbours.
* **Several positive points** — union of their regions.
* **Box** — the box's background ``b`` is the median of its faces (voxels ``> 0``); the region is the voxels
  of the box ``>= b + fraction × (box max − b)`` in the 6-connected components that contain a voxel of the
  box's hot core (``>= b + box_core_fraction × (box max − b)``), holes filled. With a box, the regions of
  positive points are limited to the box.
* **Previous mask** — the starting point. Its earlier prompts are already in it, so only the newest point
  (the last one) is applied to it: a positive point adds its region (only the part within 15 mm of the
  click when the click lies outside the mask but within 1.5 voxels of it: a click on the edge of an
  object widens it there instead of growing a new object from a rim voxel's low level), from which the earlier negative
  points are carved again (what they removed does not come back; if that would drop the new click
  itself, the newer click wins); a negative point carves. Without a previous mask every prompt is
  applied: box and positive points, then negative points in order.
* **Negative point** ``n`` — outside the current mask it changes nothing. Inside, let ``C`` be the mask's
  6-connected component that contains ``n``, and the seeds the peaks of the positive points in ``C``.
  With no seed, nothing in ``C`` was asked for and ``C`` is removed. Otherwise each seed keeps its part of
  ``C`` and the rest is removed. Levels are compared on the volume smoothed with a 1-voxel Gaussian, and
  ``t*`` is the lowest level at which ``n`` and the seed are no longer 6-connected inside ``C``:

  1. ``n`` on a colder plateau (under 80 % of the seed's level, with a gentle slope: an organ around a
     lesion, a colder neighbour): the border lies halfway between the two levels. The seed keeps its part
     above that level, the plateau's core is the colder part eroded by two voxels, and the voxels in
     between go to the nearer core.
  2. ``n`` on the seed's colder edge (it drops out below ``t*``, or is under 60 % of the seed's level):
     the threshold is raised to ``t*``, just enough to exclude it; the seed keeps its part above ``t*``.
  3. ``n`` and the seed both above ``t*`` (two hot objects joined by a saddle): each keeps its part at
     ``t*`` and the voxels in between go to the nearer part, so the cut follows the valley.
  4. ``n`` hotter than the seed with no valley between them: the clicked object is cut at the level
     halfway between the two, together with a two-voxel rim, the rest going to the nearer part.

  If a cut would take more than half of ``C`` (typically a seed in a cold pocket such as the cardiac
  blood pool), it is limited to the voxels nearer to ``n`` than to the seed. Distances are in mm.

  Two cases come before these level rules. On a plateau (``C`` of ``plateau_ml`` or more whose smoothed
  95th percentile is at most 1.3 × its median: an organ), a negative point within 1.5 voxels of ``C``'s
  outside shaves the rim: the voxels within 15 mm of it that lie no deeper than it (half a voxel of slack)
  are removed. Otherwise, when eroding ``C`` by at most 8 mm separates ``n`` from every seed (a leak
  through a neck), the part beyond the neck goes, with the voxels nearer to it than to the seeds' part.
  Whatever rule decides, on an organ-sized ``C`` (``plateau_ml`` or more) a negative point removes only
  voxels within 15 mm of it or halfway to the nearest seed, whichever is farther.
* **Clicked voxels are always honoured** — a positively clicked voxel is in the result (even on
  background: then the result is that voxel, with a score near 0), a negatively clicked voxel is not.
  If one voxel is given both ways, only the later click counts.
* **Score** — ``(1 - shell mean / inside mean) * n / (n + 2)`` with ``n`` the voxel count and the shell
  the voxels 2–3 voxels outside the mask, halved when a region was truncated: contrast with the
  surroundings, discounted for tiny (noise-sized) results; 0 for an empty mask.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy import ndimage

from worker.engines.base import Box, Capabilities, Prompts, SegmentationResult, check_kind
from worker.engines.classical_negative import carve, carved_region
from worker.engines.classical_regions import (  # noqa: F401
    _BACKGROUND_CACHE_SIZE,
    _COLDER,
    _EDGE_ADD_MM,
    _FACE_CONNECTIVITY,
    _PLATEAU_RATIO,
    _PLATEAU_SLOPE,
    _RIM_VOXELS,
    _SCORE_FULL_RESOLUTION_VOXELS,
    Index,
    _ball,
    _bounding_bounds,
    _Bounds,
    _check_inputs,
    _component_containing,
    _encloses,
    _near_mask,
    _nearer_to_second,
    _nearest_split,
    _neck_split,
    _paste_into,
    _plateau_split,
    _Region,
    _resolve_conflicts,
    _rim_shave,
    _Seed,
    _separating_level,
    _shell_median,
    _slope_at,
    _smoothed,
    _Star,
    _star_barrier,
    _touches_face,
    _triple,
    _union_all,
    _voxels,
    body_background,
)

# The first region of a click is grown at this fraction of its peak; its shell gives the first background.
_START_FRACTION = 0.7
# At most this many background refinements (region → shell → level → region); usually 2 suffice.
_REFINEMENTS = 4
# A region whose hot part (90th percentile) exceeds the clicked peak this many times holds the click in a
# cold pocket.
_COLD_POCKET_RATIO = 1.5
# A region whose hot part exceeds the clicked level this many times, without enclosing the click, ran into
# a touching hotter structure.
_HOTTER_RATIO = 1.25
# A plateau's edge lies halfway between its level and the background.
_PLATEAU_FRACTION = 0.5
# A region that the barrier cuts by more than this factor leaked into a touching structure.
_LEAK_RATIO = 1.3
# Voxels hotter than this many times the clicked peak belong to a touching hotter structure.
_CEILING_RATIO = 1.3
# A smoothed peak this many times above the plateau's median is an object of its own on the plateau.
_DISTINCT_PEAK = 1.25


class ClassicalPETEngine:
    """Threshold-based interactive PET segmentation (EANM 41 % isocontour); no weights, CPU only."""

    name = "threshold"
    capabilities = Capabilities(uses_kind=False, accepts_box=True, prefers_gpu=False, caches_per_session=False)

    def __init__(
        self,
        fraction: float = 0.41,
        peak_search_radius: int = 2,
        min_contrast: float = 1.2,
        min_threshold: float = 0.0,
        initial_half_size_mm: float = 40.0,
        max_half_size_mm: float = 200.0,
        box_core_fraction: float = 0.8,
        shell_mm: tuple[float, float] = (6.0, 12.0),
        barrier_ratio: float = 1.5,
        barrier_margin_mm: float = 6.0,
        plateau_ml: float = 30.0,
    ) -> None:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        if peak_search_radius < 0:
            raise ValueError("peak_search_radius must be >= 0")
        if not 0 < initial_half_size_mm <= max_half_size_mm:
            raise ValueError("need 0 < initial_half_size_mm <= max_half_size_mm")
        if not 0 <= shell_mm[0] < shell_mm[1]:
            raise ValueError("need 0 <= shell_mm[0] < shell_mm[1]")
        self.fraction = fraction
        self.peak_search_radius = peak_search_radius
        self.min_contrast = min_contrast
        self.min_threshold = min_threshold
        self.initial_half_size_mm = initial_half_size_mm
        self.max_half_size_mm = max_half_size_mm
        self.box_core_fraction = box_core_fraction
        self.shell_mm = shell_mm
        self.barrier_ratio = barrier_ratio
        self.barrier_margin_mm = barrier_margin_mm
        self.plateau_ml = plateau_ml

    # ------------------------------------------------------------------ public API

    def segment(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        prompts: Prompts,
        previous_mask: np.ndarray | None = None,
        session_key: str | None = None,
        *,
        kind: str | None = None,
    ) -> SegmentationResult:
        started = time.perf_counter()
        check_kind(kind)  # accepted and ignored: a threshold region is the same for a lesion or an organ
        _check_inputs(volume, spacing, prompts, previous_mask)
        spacing = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
        after_floor = time.perf_counter()

        points = _resolve_conflicts(prompts.points)
        limit = _Bounds(prompts.box.lower, prompts.box.upper) if prompts.box is not None else None
        seed_by_click = {p.index: self._seed_for(volume, p.index, limit) for p in points if p.positive}
        seeds = [seed for seed in seed_by_click.values() if seed is not None]
        previous_bounds = _bounding_bounds(previous_mask) if previous_mask is not None else None
        parts: list[_Bounds] = []
        if previous_mask is not None and previous_bounds is not None:
            mask = previous_mask.astype(bool, copy=True)
            parts.append(previous_bounds)
        else:
            mask = np.zeros(volume.shape, dtype=bool)
        # With a (non-empty) previous mask the earlier prompts are already in it: only the newest point is
        # applied (or the box, when there is no point). Without one, every prompt is applied, positives first.
        incremental = previous_bounds is not None
        to_apply = points[-1:] if incremental else sorted(points, key=lambda p: not p.positive)
        truncated = False
        if prompts.box is not None and not (incremental and points):
            truncated |= self._paste(mask, parts, self._box_region(volume, spacing, prompts.box))
        earlier_negatives = [p.index for p in points if not p.positive] if incremental else []
        for point in (p for p in to_apply if p.positive):
            seed = seed_by_click[point.index]
            if seed is not None:
                region = self._region_for(volume, spacing, seed, limit)
                if region is not None:
                    # Earlier negative clicks still hold: what they removed must not come back with this region.
                    if incremental and _near_mask(mask, point.index, spacing):
                        # A click on the edge of the current mask adds to it there, not a new object.
                        region = _Region(
                            region.bounds,
                            region.mask & _ball(region.bounds, point.index, spacing, _EDGE_ADD_MM),
                            region.truncated,
                        )
                    region = self._carved_region(volume, spacing, region, earlier_negatives, seeds)
                    truncated |= self._paste(mask, parts, region)
        after_positives = time.perf_counter()

        for point in (p for p in to_apply if not p.positive):
            if parts:
                self._carve(volume, spacing, mask, _union_all(parts), point.index, seeds)
        for point in (p for p in to_apply if p.positive):
            if not mask[point.index]:  # a positively clicked voxel is always in the result
                mask[point.index] = True
                parts.append(_Bounds(point.index, _triple(i + 1 for i in point.index)))
        after_negatives = time.perf_counter()

        score = self._score(volume, mask, _union_all(parts) if parts else None, truncated)
        finished = time.perf_counter()
        timings = {
            "checks": 1000 * (after_floor - started),
            "positive": 1000 * (after_positives - after_floor),
            "negative": 1000 * (after_negatives - after_positives),
            "score": 1000 * (finished - after_negatives),
            "total": 1000 * (finished - started),
        }
        return SegmentationResult(mask=mask, score=score, timings_ms=timings)

    # ------------------------------------------------------------------ thresholds

    def _threshold(self, level: float, background: float, fraction: float | None = None) -> float | None:
        """The background-corrected isocontour: ``background + fraction * (level - background)``;
        ``None`` when ``level`` is not clearly above the background (``min_contrast``)."""
        if not math.isfinite(level) or level <= 0 or level < self.min_threshold:
            return None
        if background > 0 and level < self.min_contrast * background:
            return None
        fraction = self.fraction if fraction is None else fraction
        return max(background + fraction * (level - background), self.min_threshold)

    def _peak_near(
        self,
        volume: np.ndarray,
        index: Index,
        allowed: np.ndarray | None = None,
        allowed_bounds: _Bounds | None = None,
    ) -> tuple[Index, float]:
        """The hottest voxel within ``peak_search_radius`` of ``index`` (first in C order on ties).

        With ``allowed`` (a mask in ``allowed_bounds``), only its voxels are candidates; the clicked voxel
        is returned when none is.
        """
        r = self.peak_search_radius
        window = _Bounds(
            _triple(max(0, i - r) for i in index),
            _triple(min(s, i + r + 1) for i, s in zip(index, volume.shape, strict=True)),
        )
        values = np.array(volume[window.slices], dtype=np.float64)
        values[~np.isfinite(values)] = -np.inf
        if allowed is not None and allowed_bounds is not None:
            inside = _paste_into(allowed, allowed_bounds, window)
            values[~inside] = -np.inf
        flat = int(np.argmax(values))
        if not np.isfinite(values.flat[flat]):
            return index, float(volume[index])
        local = np.unravel_index(flat, values.shape)
        peak = _triple(lo + i for lo, i in zip(window.lower, local, strict=True))
        return peak, float(values.flat[flat])

    # ------------------------------------------------------------------ positive prompts

    def _seed_for(self, volume: np.ndarray, index: Index, limit: _Bounds | None) -> _Seed | None:
        """Where a positive click's region grows from; ``None`` when its peak is not above zero."""
        allowed = np.ones(limit.shape, dtype=bool) if limit is not None else None
        peak, peak_value = self._peak_near(volume, index, allowed, limit)
        if not math.isfinite(peak_value) or peak_value <= 0 or peak_value < self.min_threshold:
            return None
        # The level is read on the lightly smoothed image: one noisy voxel must not set an organ's level.
        window = _Bounds(
            _triple(max(0, i - 3) for i in peak), _triple(min(n, i + 4) for i, n in zip(peak, volume.shape, strict=True))
        )
        smoothed = _smoothed(np.nan_to_num(np.asarray(volume[window.slices], dtype=np.float32)))
        level = float(smoothed[window.local(peak)])
        return _Seed(index, peak, peak_value, level if level > 0 else peak_value)

    def _region_for(
        self, volume: np.ndarray, spacing: tuple[float, float, float], seed: _Seed, limit: _Bounds | None
    ) -> _Region | None:
        """The region of a positive click (module doc): levels refined against the local background."""
        peak_value = seed.peak_value
        level = peak_value
        voxel_ml = float(np.prod(spacing)) / 1000.0
        threshold = _START_FRACTION * seed.smoothed_value
        region = self._grow_barred(volume, spacing, seed, threshold, limit, enclose=False)
        enclose = False
        ceiling: float | None = None
        for _ in range(_REFINEMENTS):
            background = _shell_median(volume, region, spacing, *self.shell_mm)
            if background is None:
                break
            values = np.asarray(volume[region.bounds.slices], dtype=np.float32)[region.mask]
            hot = float(np.percentile(values, 90)) if values.size else level
            if not enclose and ceiling is None and hot > _HOTTER_RATIO * seed.smoothed_value:
                hot_threshold = self._threshold(hot, background)
                enclosed = hot_threshold is not None and _encloses(volume, region.bounds, hot_threshold, seed.click)
                if enclosed and hot > _COLD_POCKET_RATIO * seed.smoothed_value:
                    # The click sat in a cold pocket of a hotter object (the cardiac blood pool): the
                    # object's level is that of its hot part, and the region is what that part encloses.
                    level, enclose = hot, True
                elif not enclosed:
                    # A hotter structure touches the clicked object and is not part of it: a ceiling.
                    ceiling = _CEILING_RATIO * peak_value
                    region = self._grow_barred(volume, spacing, seed, threshold, limit, False, ceiling)
                    continue
            if enclose:
                new_threshold = self._threshold(level, background)
            elif values.size * voxel_ml >= self.plateau_ml:
                # A large object is a plateau, not a peak: its edge is halfway between its level (median)
                # and the background, whatever its noisiest voxel.
                plateau = float(np.median(values))
                if seed.smoothed_value <= _DISTINCT_PEAK * plateau:
                    # Cold pockets of a plateau (renal medulla, blood pool, necrosis) belong to it.
                    enclose = True
                    new_threshold = self._threshold(plateau, background, fraction=_PLATEAU_FRACTION)
                else:  # a distinct peak on a plateau (a lesion in an organ): the organ is its background
                    new_threshold = self._threshold(level, plateau)
            else:
                new_threshold = self._threshold(level, background)
            if new_threshold is None:
                return None
            if abs(new_threshold - threshold) < 0.01 * level:
                break
            threshold = new_threshold
            start = region.bounds.padded(2, volume.shape) if enclose else None
            region = self._grow_barred(volume, spacing, seed, threshold, limit, enclose, ceiling, start)
        return region

    def _grow_barred(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        seed: _Seed,
        threshold: float,
        limit: _Bounds | None,
        enclose: bool,
        ceiling: float | None = None,
        start: _Bounds | None = None,
    ) -> _Region:
        # The barrier's rays start at the click, not at the peak: on a plateau the hottest voxel is anywhere.
        star = _star_barrier(
            volume, spacing, seed.click, threshold, self.max_half_size_mm, self.barrier_ratio, self.barrier_margin_mm
        )
        free = self._grow(volume, spacing, seed.peak, threshold, limit, None, enclose, ceiling, start)
        if not (free.mask & ~star.allowed(free.bounds, spacing)).any():
            return free  # the barrier cuts nothing
        barred = self._grow(volume, spacing, seed.peak, threshold, limit, star, enclose, ceiling, start)
        # The barrier is for leaks: a free region not much larger than the barred one (a necrotic rim whose
        # rays cross the cold core, an off-centre click) is taken whole.
        if free.mask.sum() <= _LEAK_RATIO * barred.mask.sum():
            return free
        return barred

    def _grow(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        seed: Index,
        threshold: float,
        limit: _Bounds | None,
        star: _Star | None = None,
        enclose: bool = False,
        ceiling: float | None = None,
        start: _Bounds | None = None,
    ) -> _Region:
        """The 6-connected region ``>= threshold`` around ``seed`` inside the barrier ``star``, in a crop
        extended where it is touched; with ``enclose`` the region is what encloses ``seed`` (holes filled
        before choosing the component)."""
        shape = volume.shape
        outer = limit if limit is not None else _Bounds((0, 0, 0), _triple(shape))
        initial = [max(1, math.ceil(self.initial_half_size_mm / s)) for s in spacing]
        maximum = [max(1, math.ceil(self.max_half_size_mm / s)) for s in spacing]
        hard_lower = [max(o, i - m) for o, i, m in zip(outer.lower, seed, maximum, strict=True)]
        hard_upper = [min(o, i + m + 1) for o, i, m in zip(outer.upper, seed, maximum, strict=True)]
        lower = [max(h, i - r) for h, i, r in zip(hard_lower, seed, initial, strict=True)]
        upper = [min(h, i + r + 1) for h, i, r in zip(hard_upper, seed, initial, strict=True)]
        if start is not None:  # an enclosing region must fit its crop whole for its holes to be filled
            lower = [max(h, min(lo, s)) for h, lo, s in zip(hard_lower, lower, start.lower, strict=True)]
            upper = [min(h, max(hi, s)) for h, hi, s in zip(hard_upper, upper, start.upper, strict=True)]
        while True:
            bounds = _Bounds(_triple(lower), _triple(upper))
            binary = np.asarray(volume[bounds.slices]) >= threshold
            if star is not None:
                binary &= star.allowed(bounds, spacing)
            if ceiling is not None:  # a hotter touching structure and its blurred edge are left out
                hotter = np.asarray(volume[bounds.slices]) > ceiling
                binary &= ~ndimage.binary_dilation(hotter, structure=_FACE_CONNECTIVITY)
            if enclose:
                binary = ndimage.binary_fill_holes(binary)
            binary[bounds.local(seed)] = True
            region = _component_containing(binary, [bounds.local(seed)])
            grew = False
            truncated = False
            for axis in range(3):
                for side, touches in (
                    (0, _touches_face(region, axis, 0)),
                    (1, _touches_face(region, axis, -1)),
                ):
                    if not touches:
                        continue
                    if side == 0 and lower[axis] > hard_lower[axis]:
                        reach = seed[axis] - lower[axis]
                        lower[axis] = max(hard_lower[axis], seed[axis] - 2 * max(reach, 1))
                        grew = True
                    elif side == 1 and upper[axis] < hard_upper[axis]:
                        reach = upper[axis] - 1 - seed[axis]
                        upper[axis] = min(hard_upper[axis], seed[axis] + 2 * max(reach, 1) + 1)
                        grew = True
                    elif (side == 0 and hard_lower[axis] > outer.lower[axis]) or (
                        side == 1 and hard_upper[axis] < outer.upper[axis]
                    ):
                        truncated = True
            if not grew:
                return _Region(bounds, ndimage.binary_fill_holes(region), truncated)

    def _box_region(self, volume: np.ndarray, spacing: tuple[float, float, float], box: Box) -> _Region | None:
        bounds = _Bounds(box.lower, box.upper)
        values = np.asarray(volume[bounds.slices], dtype=np.float64)
        finite = np.where(np.isfinite(values), values, -np.inf)
        box_max = float(finite.max())
        # The box's local background: the median of its faces (a box is drawn around the object).
        faces = np.concatenate(
            [np.take(finite, side, axis=axis).ravel() for axis in range(3) for side in (0, -1)]
        )
        faces = faces[np.isfinite(faces) & (faces > 0)]
        background = float(np.median(faces)) if faces.size else 0.0
        threshold = self._threshold(box_max, background)
        if threshold is None:
            return None
        labels, _ = ndimage.label(finite >= threshold, structure=_FACE_CONNECTIVITY)
        core_level = background + self.box_core_fraction * (box_max - background)
        core_labels = np.unique(labels[finite >= core_level])
        core_labels = core_labels[core_labels > 0]
        return _Region(bounds, ndimage.binary_fill_holes(np.isin(labels, core_labels)))

    @staticmethod
    def _paste(mask: np.ndarray, parts: list[_Bounds], region: _Region | None) -> bool:
        """Adds ``region`` to the full ``mask``; returns whether it was truncated."""
        if region is None or not region.mask.any():
            return False
        mask[region.bounds.slices] |= region.mask
        parts.append(region.bounds)
        return region.truncated

    # ------------------------------------------------------------------ negative prompts

    def _carved_region(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        region: _Region,
        negatives: list[Index],
        seeds: list[_Seed],
    ) -> _Region:
        return carved_region(volume, spacing, region, negatives, seeds, self.plateau_ml)

    def _carve(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        mask: np.ndarray,
        mask_bounds: _Bounds,
        index: Index,
        seeds: list[_Seed],
    ) -> None:
        """Removes the part of ``mask`` that the negative point ``index`` designates (module doc rules)."""
        carve(volume, spacing, mask, mask_bounds, index, seeds, self.plateau_ml)

    # ------------------------------------------------------------------ score

    def _score(self, volume: np.ndarray, mask: np.ndarray, bounds: _Bounds | None, truncated: bool) -> float:
        if bounds is None:
            return 0.0
        padded = bounds.padded(3, volume.shape)
        inside = mask[padded.slices]
        count = int(inside.sum())
        if count == 0:
            return 0.0
        values = np.asarray(volume[padded.slices], dtype=np.float64)
        if inside.size > _SCORE_FULL_RESOLUTION_VOXELS:  # a large object: every other voxel is plenty
            inside, values = inside[::2, ::2, ::2], values[::2, ::2, ::2]
        near = ndimage.binary_dilation(inside, structure=_FACE_CONNECTIVITY, iterations=1)
        far = ndimage.binary_dilation(near, structure=_FACE_CONNECTIVITY, iterations=2)
        shell = far & ~near
        inside_mean = float(values[inside].mean())
        if inside_mean <= 0 or not math.isfinite(inside_mean):
            return 0.0
        shell_mean = float(values[shell].mean()) if shell.any() else 0.0
        contrast = min(1.0, max(0.0, 1.0 - shell_mean / inside_mean))
        score = contrast * count / (count + 2)
        if truncated:
            score *= 0.5
        return float(min(1.0, max(0.0, score)))
