"""Agreement between two readers' label maps, and merging several into a consensus.

Pure NumPy/SciPy on label maps (label values of the project's label set on the PET grid).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

MergeMethod = str  # "union" | "intersection" | "majority" | "pick"


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(a.sum()) + int(b.sum())
    return None if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff95_mm(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> float | None:
    """Symmetric 95th-percentile Hausdorff distance between the surfaces of two masks (mm)."""
    if not a.any() or not b.any():
        return None
    surface_a, surface_b = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)[surface_a]
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)[surface_b]
    return float(max(np.percentile(to_b, 95), np.percentile(to_a, 95)))


def lesion_detection(a: np.ndarray, b: np.ndarray) -> dict:
    """Lesions as 26-connected components; one is found by the other reader when they overlap."""
    structure = np.ones((3, 3, 3), dtype=bool)
    components_a, count_a = ndimage.label(a, structure)
    components_b, count_b = ndimage.label(b, structure)
    found_by_b = len(np.unique(components_a[(components_a > 0) & b]))
    found_by_a = len(np.unique(components_b[(components_b > 0) & a]))
    f1 = None if count_a + count_b == 0 else (found_by_b + found_by_a) / (count_a + count_b)
    return {"lesions_a": int(count_a), "lesions_b": int(count_b), "a_found_by_b": int(found_by_b),
            "b_found_by_a": int(found_by_a), "detection_f1": f1}


def compare(map_a: np.ndarray, map_b: np.ndarray, labels: dict[int, dict], spacing: Sequence[float]) -> dict:
    """Per-label Dice and HD95 and, for lesion labels, lesion-wise detection agreement.

    `labels`: label value -> {"name": ..., "kind": ...}.
    """
    per_label = []
    for value, info in sorted(labels.items()):
        a, b = map_a == value, map_b == value
        if not a.any() and not b.any():
            continue
        row = {"value": value, "name": info["name"], "kind": info["kind"], "dice": dice(a, b),
               "hd95_mm": hausdorff95_mm(a, b, spacing), "voxels_a": int(a.sum()), "voxels_b": int(b.sum())}
        if info["kind"] == "lesion":
            row.update(lesion_detection(a, b))
        per_label.append(row)
    return {"labels": per_label}


def merge(maps: Sequence[np.ndarray], method: MergeMethod, label_values: Sequence[int],
          picks: dict[int, int] | None = None) -> np.ndarray:
    """A consensus label map. Per label: union, intersection or majority (more than half of the
    readers) of the readers' masks, or `pick` (label value -> index of the reader to take it from).
    Where labels overlap after merging, the higher label value wins, deterministically."""
    if len(maps) < 2:
        raise ValueError("A consensus needs at least two annotations.")
    if len({m.shape for m in maps}) != 1:
        raise ValueError("The annotations are not on the same grid.")
    merged = np.zeros(maps[0].shape, dtype=np.uint8)
    for value in sorted(label_values):
        masks = [m == value for m in maps]
        if method == "union":
            chosen = np.logical_or.reduce(masks)
        elif method == "intersection":
            chosen = np.logical_and.reduce(masks)
        elif method == "majority":
            chosen = np.sum(masks, axis=0) * 2 > len(masks)
        elif method == "pick":
            source = (picks or {}).get(value)
            if source is None:
                continue
            if not 0 <= source < len(maps):
                raise ValueError(f"Pick {source} for label {value} is not one of the annotations.")
            chosen = masks[source]
        else:
            raise ValueError(f"Unknown merge method {method!r}: use union, intersection, majority or pick.")
        merged[chosen] = value
    return merged


def objects_from_label_map(label_map: np.ndarray, lesion_values: set[int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Object-id map and (object id, label value) pairs: each lesion component is its own object,
    every other label one object."""
    objects = np.zeros(label_map.shape, dtype=np.uint16)
    pairs: list[tuple[int, int]] = []
    for value in sorted(int(v) for v in np.unique(label_map) if v):
        if value in lesion_values:
            components, count = ndimage.label(label_map == value, np.ones((3, 3, 3), dtype=bool))
            for index in range(1, count + 1):
                pairs.append((len(pairs) + 1, value))
                objects[components == index] = len(pairs)
        else:
            pairs.append((len(pairs) + 1, value))
            objects[label_map == value] = len(pairs)
    return objects, pairs
