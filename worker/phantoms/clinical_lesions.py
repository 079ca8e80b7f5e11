"""Lesions of the clinical phantoms: where they go (every host first, then random hosts) and how large.

Hosts: liver, spleen, kidneys, lungs, brain, bone (spine, pelvis, femur), nodes 1–4 mm outside a hot organ
(heart, kidneys, bladder, liver, aorta) and trunk soft tissue. Every other lesion is 5–10 mm, the others
10–40 mm (log-uniform); inside an organ of ``organ_volume_ml`` all its lesions together take at most
``max_share`` of it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from worker.phantoms.anatomy import Ellipsoid, Grid


def _lesion_diameter(rng: np.random.Generator, small: bool) -> float:
    return float(rng.uniform(5.0, 10.0)) if small else float(np.exp(rng.uniform(np.log(10.0), np.log(40.0))))


def ball(
    grid: Grid, centre: np.ndarray, diameter: float
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    found = grid.mask(Ellipsoid(tuple(centre), (diameter / 2.0,) * 3))  # type: ignore[arg-type]
    if found is None or not found[1].any():
        return None
    return found[0], np.array(found[1])


def _candidate(
    grid: Grid,
    region: np.ndarray,
    box: tuple[slice, slice, slice],
    rng: np.random.Generator,
) -> np.ndarray | None:
    points = np.argwhere(region)
    if points.size == 0:
        return None
    index = points[int(rng.integers(len(points)))] + [b.start for b in box]
    return grid.index_to_world(index.astype(np.float64))


def plan_lesions(
    grid: Grid,
    labels: np.ndarray,
    body: np.ndarray,
    organ_boxes: dict[str, tuple[slice, slice, slice]],
    rng: np.random.Generator,
    n_lesions: int,
    label_of: dict[str, int],
    organ_volume_ml: dict[str, tuple[float, float]],
    max_share: float,
) -> list[tuple[str, np.ndarray, float]]:
    """(host, LPS centre, diameter) for each lesion: every host first, then random hosts."""
    spacing = np.asarray(grid.spacing)
    hosts = ["liver", "spleen", "kidney", "lung", "bone", "node", "liver", "node", "lung", "brain"]
    while len(hosts) < n_lesions:
        hosts.append(str(rng.choice(["liver", "lung", "bone", "node", "soft_tissue", "spleen", "kidney"])))
    hosts = hosts[:n_lesions]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    used: dict[str, float] = {}
    plans: list[tuple[str, np.ndarray, float]] = []
    for number, kind in enumerate(hosts):
        small = number % 2 == 1
        for _attempt in range(30):
            diameter = _lesion_diameter(rng, small)
            radius = diameter / 2.0
            if kind in ("kidney", "lung"):
                organ = f"{kind}_{'left' if rng.random() < 0.5 else 'right'}"
            elif kind == "node":
                organ = str(rng.choice(["heart", "kidney_left", "kidney_right", "bladder", "liver", "aorta"]))
            elif kind == "bone":
                organ = "spine" if rng.random() < 0.5 else "bone"
            elif kind == "soft_tissue":
                organ = "soft_tissue"
            else:
                organ = kind
            if organ in organ_volume_ml:
                organ_ml = float(np.count_nonzero(labels[organ_boxes[organ]] == label_of[organ])) * voxel_ml
                room = max_share * organ_ml - used.get(organ, 0.0)
                max_d = (6.0 * max(room, 0.0) * 1000.0 / np.pi) ** (1.0 / 3.0)
                if max_d < 5.0:
                    break
                diameter = min(diameter, max_d)
                radius = diameter / 2.0
            if kind == "node":
                box = organ_boxes[organ]
                pad = int(np.ceil((radius + 6.0) / spacing.min())) + 1
                box = tuple(
                    slice(max(0, b.start - pad), min(n, b.stop + pad))
                    for b, n in zip(box, grid.shape, strict=True)
                )
                distance = ndimage.distance_transform_edt(labels[box] != label_of[organ], sampling=spacing)
                region = (
                    (distance > radius + 1.0) & (distance < radius + 4.0) & (labels[box] == 0) & body[box]
                )
            elif kind == "soft_tissue":
                box = tuple(
                    slice(int(lo / s), int(hi / s))
                    for (lo, hi), s in zip(((300, 700), (150, 350), (120, 380)), spacing, strict=True)
                )
                distance = ndimage.distance_transform_edt(labels[box] == 0, sampling=spacing)
                region = (distance > radius + 3.0) & body[box]
            else:
                box = organ_boxes[organ]
                host = labels[box] == label_of[organ]
                distance = ndimage.distance_transform_edt(np.pad(host, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
                need = {"bone": 0.3, "spine": 0.3, "lung_left": 0.6, "lung_right": 0.6}.get(
                    organ, 1.0
                ) * radius
                region = host & (distance >= min(need + 1.0, float(distance.max()) * 0.9))
            centre = _candidate(grid, region, box, rng)
            if centre is None:
                continue
            if any(np.linalg.norm(centre - c) < (diameter + d) / 2.0 + 5.0 for _, c, d in plans):
                continue
            if organ in organ_volume_ml:
                used[organ] = used.get(organ, 0.0) + np.pi / 6.0 * diameter**3 / 1000.0
            host_name = f"node_{organ}" if kind == "node" else organ
            plans.append((host_name, centre, round(float(diameter), 2)))
            break
    return plans
