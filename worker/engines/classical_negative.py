"""Negative clicks of the threshold engine (rules in :mod:`worker.engines.classical`'s docstring).

Kept apart from the engine so that its positive-click rules and these each read in one sitting."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from worker.engines.classical_regions import (
    _COLDER,
    _EDGE_ADD_MM,
    _FACE_CONNECTIVITY,
    _PLATEAU_RATIO,
    _PLATEAU_SLOPE,
    _RIM_VOXELS,
    Index,
    _ball,
    _Bounds,
    _component_containing,
    _nearer_to_second,
    _nearest_split,
    _neck_split,
    _plateau_split,
    _Region,
    _rim_shave,
    _Seed,
    _separating_level,
    _slope_at,
    _smoothed,
    _triple,
    _voxels,
)


def carved_region(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    region: _Region,
    negatives: list[Index],
    seeds: list[_Seed],
    plateau_ml: float,
) -> _Region:
    """``region`` with the negative points inside it carved out (as they would carve the mask)."""
    inside = [n for n in negatives if region.bounds.contains(n) and region.mask[region.bounds.local(n)]]
    if not inside:
        return region
    scratch = np.zeros(volume.shape, dtype=bool)
    scratch[region.bounds.slices] = region.mask
    newest = seeds[-1].click if seeds else None
    for negative in inside:
        before = scratch[region.bounds.slices].copy()
        carve(volume, spacing, scratch, region.bounds, negative, seeds, plateau_ml)
        if newest is not None and not scratch[newest]:
            # This cut would take the newest positive click with it: the newer click wins.
            scratch[region.bounds.slices] = before
    return _Region(region.bounds, scratch[region.bounds.slices].copy(), region.truncated)

def carve(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    mask: np.ndarray,
    mask_bounds: _Bounds,
    index: Index,
    seeds: list[_Seed],
    plateau_ml: float,
) -> None:
    """Removes the part of ``mask`` that the negative point ``index`` designates (module doc rules)."""
    if not mask[index]:
        return
    labels, _ = ndimage.label(mask[mask_bounds.slices], structure=_FACE_CONNECTIVITY)
    label = labels[mask_bounds.local(index)]
    component_slices = ndimage.find_objects(labels)[label - 1]
    bounds = _Bounds(
        _triple(lo + s.start for lo, s in zip(mask_bounds.lower, component_slices, strict=True)),
        _triple(lo + s.stop for lo, s in zip(mask_bounds.lower, component_slices, strict=True)),
    )
    component = labels[component_slices] == label
    values = np.asarray(volume[bounds.slices], dtype=np.float64)
    local_negative = bounds.local(index)
    local_seeds: list[Index] = []
    for seed in seeds:
        # A seed belongs to this component by its peak or, failing that, by the clicked voxel.
        for candidate in (seed.peak, seed.click):
            local = bounds.local(candidate)
            if bounds.contains(candidate) and component[local] and local != local_negative:
                local_seeds.append(local)
                break

    if not local_seeds:
        removal = component
    else:
        removal = None
        if component.sum() * float(np.prod(spacing)) / 1000.0 >= plateau_ml:
            removal = _rim_shave(component, _smoothed(values), spacing, local_negative)
        if removal is None:
            removal = _neck_split(component, spacing, local_negative, local_seeds)
        if removal is None:
            removal = _removal_for_seeds(values, component, spacing, local_negative, local_seeds)
    if component.sum() * float(np.prod(spacing)) / 1000.0 >= plateau_ml and local_seeds:
        # On an organ-sized object a negative point removes near itself: at most halfway to the
        # nearest seed (and at least _EDGE_ADD_MM around it).
        nearest = min(
            math.dist(
                [a * s for a, s in zip(local_negative, spacing, strict=True)],
                [a * s for a, s in zip(q, spacing, strict=True)],
            )
            for q in local_seeds
        )
        reach = max(_EDGE_ADD_MM, 0.5 * nearest)
        removal &= _ball(_Bounds((0, 0, 0), _triple(component.shape)), local_negative, spacing, reach)
    removal[local_negative] = True
    mask[bounds.slices] &= ~removal

def _removal_for_seeds(
    values: np.ndarray,
    component: np.ndarray,
    spacing: tuple[float, float, float],
    negative: Index,
    seeds: list[Index],
) -> np.ndarray:
    """What a negative point removes from a component that also holds positive seeds.

    Each seed keeps what it claims against the negative point (:func:`_kept_by_seed`); the rest goes.
    Levels are compared on lightly smoothed values so that noise does not decide where to cut.
    """
    smoothed = _smoothed(values)
    kept = np.zeros_like(component)
    for seed in seeds:
        kept |= _kept_by_seed(smoothed, component, spacing, negative, seed)
    return component & ~kept

def _kept_by_seed(
    smoothed: np.ndarray,
    component: np.ndarray,
    spacing: tuple[float, float, float],
    negative: Index,
    seed: Index,
) -> np.ndarray:
    """The part of ``component`` that ``seed`` keeps when ``negative`` is clicked in it."""
    seed_only = _voxels(component, [seed])
    split_level = _separating_level(smoothed, component, negative, seed)
    if split_level is None:  # a flat plateau: only geometry can separate them
        return component & ~_nearer_to_second(component, seed, negative, spacing)
    above = component & (smoothed >= split_level)
    negative_level, seed_level = float(smoothed[negative]), float(smoothed[seed])
    if negative_level < _PLATEAU_RATIO * seed_level and _slope_at(
        smoothed, negative, spacing
    ) < _PLATEAU_SLOPE * (seed_level - negative_level):
        # The negative point is on a colder plateau (an organ around a lesion, a colder neighbour): the
        # border lies halfway between the two levels.
        plateau = _plateau_split(smoothed, component, spacing, negative, seed, seed_level, negative_level)
        if plateau is not None:
            return plateau
    if above[seed] and (not above[negative] or negative_level < _COLDER * seed_level):
        # The negative point is on the seed's colder edge: raise the threshold just enough to drop it.
        return _component_containing(above, [seed])
    if above[seed]:
        # Two hot objects joined by a saddle: cut along the valley.
        keep_core = _component_containing(above, [seed])
        remove_core = _component_containing(above, [negative])
    else:
        # The clicked object is hotter and the level rises into it without a valley: cut halfway
        # between the two levels; the clicked object's rim goes with it.
        halfway = 0.5 * (seed_level + negative_level)
        remove_core = _component_containing(component & (smoothed >= halfway), [negative])
        if remove_core[seed]:
            return component & ~_nearer_to_second(component, seed, negative, spacing)
        margin = ndimage.binary_dilation(
            remove_core, structure=_FACE_CONNECTIVITY, iterations=_RIM_VOXELS
        )
        keep_core = _component_containing(component & ~margin, [seed]) | seed_only
    removal = _nearest_split(component, keep_core, remove_core, spacing)
    if 2 * int(removal.sum()) > int(component.sum()):
        # A cut that takes most of the object usually means the seed sits in a cold pocket (blood pool):
        # limit it to the voxels nearer to the negative point than to the seed.
        removal &= _nearer_to_second(component, seed, negative, spacing)
    return component & ~removal
