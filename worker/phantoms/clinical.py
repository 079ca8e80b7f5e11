"""Whole-body PET phantoms that look like patients at reading scale (``make_clinical_phantom``).

Independent of :func:`worker.phantoms.make_phantom` (whose outputs stay bit-identical): this one fixes
the *field* (1000 × 500 × 500 mm, vertex to mid-thigh) and lets the voxel grid vary over the matrices
PET scanners reconstruct (``CLINICAL_GRIDS``: 4 mm, 3.27 × 3.65 × 3.65 mm, 2 mm), so an object keeps its
real size in mm whatever the grid.

* **Adult organ volumes.** Each organ's target volume is drawn from an adult range (``ORGAN_VOLUME_ML``,
  kept 8 % inside the range's low end and 5 % inside its high end so that a hosted lesion and
  voxelisation cannot push it out); its shape is then scaled until its voxel count on *this* grid
  meets the target. Organs are painted in priority order (kidneys, spleen, heart, bladder, … liver,
  lungs), each only where no earlier organ is and at least one PSF-width gap away from it (the fat planes
  that separate organs on PET).
* **Uptake that varies within organs.** A smooth random texture (about 25 mm correlation, ±10 %) on
  every tissue; kidney cortex hotter than medulla, with a hot renal pelvis at the hilum (FDG); myocardium hot around
  a colder blood pool (FDG, variable between patients from 2.5 to 10); grey matter hotter than white
  (FDG brain at 8–12, which is what pushes a global percentile above muscle); bladder filling
  50–500 ml; bowel loops with patchy uptake. FDG and PSMA differ (PSMA: hot kidneys, salivary glands,
  spleen and liver, a nearly cold brain).
* **Lesions of 5–40 mm** (``clinical_lesions``) in the liver, spleen, kidneys, lungs, brain, bone (spine, pelvis, femur) and
  in nodes placed beside hot organs (heart, kidneys, bladder, liver, aorta); about half of them are
  under 10 mm. A lesion inside an organ takes at most 8 % of it. Spheres, labelled where their
  voxel centres lie (a lesion with no voxel centre keeps its nearest voxel).
* **Scanner-like image**: Gaussian PSF of 5–7 mm FWHM, then noise whose variance follows the signal
  (Poisson-like), correlated over about a voxel, larger on finer grids.
* **Feet-first scans**: arrays ``[slice, row, col]`` as ``backend.imaging.dicom_series`` returns them:
  head-first (HFS) slices ascend towards the head and columns towards the patient's left; a feet-first
  (FFS) scan reverses the slice and column axes (as the small phantom's FFS series do), and the LPS
  affine says so.

Everything derives from the seed: equal arguments give identical arrays. Costs at 2 mm
(250 × 250 × 500 voxels): about 15–25 s and under 1.5 GB on one core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from worker.phantoms.anatomy import LABEL_NAMES, LESION_LABEL, Cylinder, Ellipsoid, Grid
from worker.phantoms.clinical_lesions import ball, plan_lesions
from worker.phantoms.physics import Tracer

FIELD_MM: tuple[float, float, float] = (1000.0, 500.0, 500.0)  # slice (z), row (y), col (x)
CLINICAL_GRIDS: dict[str, tuple[float, float, float]] = {
    "4mm": (4.0, 4.0, 4.0),
    "3.65mm": (3.27, 3.65, 3.65),
    "2mm": (2.0, 2.0, 2.0),
}
ORGAN_VOLUME_ML: dict[str, tuple[float, float]] = {
    "liver": (1200.0, 2500.0),
    "spleen": (100.0, 300.0),
    "kidney_left": (120.0, 200.0),
    "kidney_right": (120.0, 200.0),
}
CLINICAL_LABEL_NAMES: dict[int, str] = {**LABEL_NAMES, 14: "bone", 15: "bowel"}
_LABEL = {name: value for value, name in CLINICAL_LABEL_NAMES.items()}
_MAX_LESION_SHARE = 0.08
_ORGAN_GAP_MM = 4.0

# Organ shapes in the body frame (LPS mm, z up from the bottom of the field), relative to an anchor so
# that they scale about it: (anchor, [(offset, semi-axes), ...]).
_Parts = tuple[
    tuple[float, float, float], tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...]
]
_SHAPES: dict[str, _Parts] = {
    "kidney_left": ((78.0, 62.0, 385.0), (((0, 0, 0), (30.0, 26.0, 55.0)),)),
    "kidney_right": ((-78.0, 62.0, 368.0), (((0, 0, 0), (30.0, 26.0, 55.0)),)),
    "spleen": (
        (105.0, 45.0, 470.0),
        (((0, 0, 0), (38.0, 32.0, 52.0)), ((-12, -18, -18), (25.0, 20.0, 30.0))),
    ),
    "heart": ((25.0, -40.0, 560.0), (((0, 0, 0), (55.0, 48.0, 58.0)),)),
    "liver": (
        (-60.0, 0.0, 455.0),
        (
            ((0, 0, 0), (95.0, 80.0, 72.0)),
            ((70, -35, 25), (65.0, 45.0, 38.0)),
            ((-15, 10, -40), (70.0, 60.0, 50.0)),
        ),
    ),
    "brain": ((0.0, 5.0, 895.0), (((0, 0, 0), (65.0, 82.0, 68.0)),)),
    "lung_left": ((88.0, 10.0, 620.0), (((0, 0, 0), (68.0, 85.0, 125.0)),)),
    "lung_right": ((-88.0, 10.0, 615.0), (((0, 0, 0), (72.0, 85.0, 130.0)),)),
}


@dataclass(frozen=True)
class ClinicalLesion:
    index: int  # value in lesion_labels
    host: str  # organ, "bone", "node_<organ>" or "soft_tissue"
    diameter_mm: float
    centre_index: tuple[float, float, float]  # fractional [slice, row, col] in the returned arrays
    uptake_suv: float  # true (unblurred) uptake
    voxel_count: int


@dataclass
class ClinicalPhantom:
    seed: int
    tracer: str
    suv: np.ndarray  # float32 [slice, row, col]: the scanner-like image (PSF + noise)
    true_suv: np.ndarray  # float32: uptake before PSF and noise
    labels: np.ndarray  # uint8, CLINICAL_LABEL_NAMES values (lesions over organs)
    lesion_labels: np.ndarray  # uint16, 0 or ClinicalLesion.index
    lesions: list[ClinicalLesion]
    affine: np.ndarray  # index → LPS mm
    feet_first: bool
    psf_fwhm_mm: float
    label_names: dict[int, str] = field(default_factory=lambda: dict(CLINICAL_LABEL_NAMES))
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.suv.shape)  # type: ignore[return-value]

    @property
    def pet_affine(self) -> np.ndarray:
        """The PET affine under the name the evaluation reads (the phantom has one grid)."""
        return self.affine

    @property
    def pet_spacing(self) -> tuple[float, float, float]:
        lengths = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(lengths[0]), float(lengths[1]), float(lengths[2])

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.pet_spacing)) / 1000.0

    def organ_volume_ml(self, name: str) -> float:
        return float(np.count_nonzero(self.labels == _LABEL[name])) * self.voxel_ml


# ---------------------------------------------------------------------- geometry helpers


def _grid(spacing: tuple[float, float, float]) -> Grid:
    shape = tuple(int(round(f / s)) for f, s in zip(FIELD_MM, spacing, strict=True))
    affine = np.eye(4)
    # axis 0 → z (superior), axis 1 → y (posterior), axis 2 → x (patient left); voxel centres.
    affine[:3, :3] = [[0, 0, spacing[2]], [0, spacing[1], 0], [spacing[0], 0, 0]]
    affine[:3, 3] = [-FIELD_MM[2] / 2 + spacing[2] / 2, -FIELD_MM[1] / 2 + spacing[1] / 2, spacing[0] / 2]
    return Grid(shape, affine)  # type: ignore[arg-type]


def _box_union(
    grid: Grid, shapes: list[Ellipsoid | Cylinder], pad: int = 0
) -> tuple[slice, slice, slice] | None:
    boxes = [found[0] for found in (grid.mask(s) for s in shapes) if found is not None]
    if not boxes:
        return None
    return tuple(  # type: ignore[return-value]
        slice(
            max(0, min(b[a].start for b in boxes) - pad),
            min(grid.shape[a], max(b[a].stop for b in boxes) + pad),
        )
        for a in range(3)
    )


def _local_mask(
    grid: Grid, shapes: list[Ellipsoid | Cylinder], box: tuple[slice, slice, slice]
) -> np.ndarray:
    local = np.zeros(tuple(s.stop - s.start for s in box), dtype=bool)
    for shape in shapes:
        found = grid.mask(shape)
        if found is None:
            continue
        inner, inside = found
        lo = [max(i.start, b.start) for i, b in zip(inner, box, strict=True)]
        hi = [min(i.stop, b.stop) for i, b in zip(inner, box, strict=True)]
        if any(a >= b for a, b in zip(lo, hi, strict=True)):
            continue
        target = tuple(slice(a - b.start, c - b.start) for a, c, b in zip(lo, hi, box, strict=True))
        source = tuple(slice(a - i.start, c - i.start) for a, c, i in zip(lo, hi, inner, strict=True))
        local[target] |= inside[source]
    return local


def _scaled(name: str, scale: float, shift: np.ndarray) -> list[Ellipsoid | Cylinder]:
    anchor, parts = _SHAPES[name]
    base = np.asarray(anchor) + shift
    return [
        Ellipsoid(tuple(base + scale * np.asarray(offset)), tuple(scale * np.asarray(semi)))  # type: ignore[arg-type]
        for offset, semi in parts
    ]


def _free(labels: np.ndarray, body: np.ndarray, box: tuple[slice, slice, slice], gap: int) -> np.ndarray:
    taken = labels[box] > 0
    if gap > 0 and taken.any():
        taken = ndimage.binary_dilation(taken, iterations=gap)
    return body[box] & ~taken


def _place_organ(
    grid: Grid,
    labels: np.ndarray,
    body: np.ndarray,
    name: str,
    target_ml: float | None,
    shift: np.ndarray,
    gap: int,
    scale: float = 1.0,
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Paints organ ``name`` into free voxels, scaled (when ``target_ml``) to that volume on this grid."""
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    local = None
    box = None
    for _ in range(6):
        shapes = _scaled(name, scale, shift)
        box = _box_union(grid, shapes, pad=1)
        if box is None:
            return None
        local = _local_mask(grid, shapes, box) & _free(labels, body, box, gap)
        volume = float(local.sum()) * voxel_ml
        if target_ml is None or volume <= 0 or abs(volume / target_ml - 1.0) < 0.012:
            break
        scale *= (target_ml / volume) ** (1.0 / 3.0) * (1.0 if volume < target_ml else 0.999)
    assert box is not None and local is not None
    labels[box][local] = _LABEL[name]
    return box, local


def _texture(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """A smooth field with mean 0 and standard deviation 1, correlated over about 25 mm."""
    coarse_mm = 10.0
    coarse_shape = tuple(
        max(2, int(np.ceil(n * s / coarse_mm)) + 1) for n, s in zip(shape, spacing, strict=True)
    )
    field_ = ndimage.gaussian_filter(
        rng.standard_normal(coarse_shape).astype(np.float32), sigma=2.0, mode="wrap"
    )
    field_ /= max(float(field_.std()), 1e-6)
    coordinates = [
        np.arange(n, dtype=np.float32) * s / coarse_mm for n, s in zip(shape, spacing, strict=True)
    ]
    # Separable linear interpolation, one axis at a time (a full map_coordinates would cost 10× more).
    for axis, points in enumerate(coordinates):
        low = np.floor(points).astype(int)
        weight = (points - low).astype(np.float32)
        view = [1, 1, 1]
        view[axis] = -1
        field_ = np.take(field_, low, axis=axis) * (1 - weight.reshape(view)) + np.take(
            field_, low + 1, axis=axis
        ) * weight.reshape(view)
    return field_.astype(np.float32)


# ---------------------------------------------------------------------- uptake


def _uptakes(tracer: str, rng: np.random.Generator) -> dict[str, float]:
    ranges = {
        "FDG": {
            "muscle": (0.6, 0.9),
            "liver": (2.0, 2.8),
            "spleen": (1.6, 2.3),
            "kidney": (2.5, 3.8),
            "renal_pelvis": (6.0, 20.0),
            "myocardium": (2.5, 10.0),
            "blood": (1.5, 2.1),
            "grey": (8.0, 12.0),
            "white": (3.0, 4.2),
            "bladder": (8.0, 40.0),
            "lung": (0.4, 0.6),
            "bone": (1.0, 1.6),
            "bowel": (1.2, 3.0),
            "salivary": (1.5, 2.5),
        },
        "PSMA": {
            "muscle": (0.4, 0.6),
            "liver": (4.0, 7.0),
            "spleen": (5.0, 9.0),
            "kidney": (25.0, 45.0),
            "renal_pelvis": (10.0, 40.0),
            "myocardium": (1.0, 1.6),
            "blood": (1.2, 1.8),
            "grey": (0.15, 0.3),
            "white": (0.1, 0.2),
            "bladder": (10.0, 50.0),
            "lung": (0.25, 0.4),
            "bone": (0.6, 1.0),
            "bowel": (2.0, 6.0),
            "salivary": (10.0, 18.0),
        },
    }[tracer]
    return {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in ranges.items()}


# ---------------------------------------------------------------------- the phantom


def make_clinical_phantom(
    seed: int = 0,
    spacing_mm: tuple[float, float, float] | float = CLINICAL_GRIDS["4mm"],
    tracer: Tracer = "FDG",
    n_lesions: int = 10,
    feet_first: bool | None = None,
    psf_fwhm_mm: float | None = None,
    noise_level: float = 1.0,
) -> ClinicalPhantom:
    """A whole-body phantom on a ``spacing_mm`` grid ([slice, row, col] mm, or one number for all three).

    ``feet_first`` and ``psf_fwhm_mm`` are drawn from the seed when ``None`` (30 % of scans feet-first,
    FWHM 5–7 mm); ``noise_level`` scales the noise (0: none).
    """
    if tracer not in ("FDG", "PSMA"):
        raise ValueError(f"tracer must be 'FDG' or 'PSMA', got {tracer!r}")
    spacing = (float(spacing_mm),) * 3 if np.isscalar(spacing_mm) else tuple(float(s) for s in spacing_mm)  # type: ignore[arg-type]
    if len(spacing) != 3 or not all(1.0 <= s <= 8.0 for s in spacing):
        raise ValueError(f"spacing_mm must be 1-8 mm per axis, got {spacing_mm}")
    streams = np.random.SeedSequence([seed, 14]).spawn(5)
    patient_rng, texture_rng, lesion_rng, noise_rng, misc_rng = (np.random.default_rng(s) for s in streams)
    grid = _grid(spacing)  # type: ignore[arg-type]
    shape = grid.shape
    gap = max(1, int(round(_ORGAN_GAP_MM / min(spacing))))
    if feet_first is None:
        feet_first = bool(misc_rng.random() < 0.3)
    fwhm = float(misc_rng.uniform(5.0, 7.0)) if psf_fwhm_mm is None else float(psf_fwhm_mm)
    uptake = _uptakes(tracer, patient_rng)
    body_scale = float(patient_rng.uniform(0.92, 1.05))
    shift = np.array([0.0, 0.0, float(patient_rng.uniform(-15.0, 15.0))])

    # Body: head, neck, shoulders, trunk, pelvis, thighs; fat outside the muscle.
    def s(v: float) -> float:
        return v * body_scale

    body_shapes: list[Ellipsoid | Cylinder] = [
        Ellipsoid((0.0, 0.0, 890.0), (76.0, 96.0, 100.0)),
        Cylinder((0.0, 10.0), (56.0, 56.0), 760.0, 820.0),
        Ellipsoid((0.0, 5.0, 715.0), (s(190.0), s(110.0), 70.0)),
        Cylinder((0.0, 5.0), (s(165.0), s(112.0)), 300.0, 720.0),
        Ellipsoid((0.0, 5.0, 290.0), (s(172.0), s(115.0), 110.0)),
        Cylinder((s(95.0), 10.0), (s(80.0), s(85.0)), 0.0, 290.0),
        Cylinder((-s(95.0), 10.0), (s(80.0), s(85.0)), 0.0, 290.0),
    ]
    body = np.zeros(shape, dtype=bool)
    for part in body_shapes:
        box = _box_union(grid, [part])
        if box is not None:
            body[box] |= _local_mask(grid, [part], box)
    muscle = ndimage.binary_erosion(body, iterations=max(1, int(round(14.0 / min(spacing)))))

    labels = np.zeros(shape, dtype=np.uint8)
    boxes: dict[str, tuple[slice, slice, slice]] = {}
    masks: dict[str, np.ndarray] = {}
    targets = {
        name: float(patient_rng.uniform(lo * 1.08, hi * 0.95)) for name, (lo, hi) in ORGAN_VOLUME_ML.items()
    }
    for name in (
        "kidney_left",
        "kidney_right",
        "spleen",
        "heart",
        "brain",
        "liver",
        "lung_left",
        "lung_right",
    ):
        scale = body_scale if name in ("heart", "lung_left", "lung_right") else 1.0
        placed = _place_organ(grid, labels, body, name, targets.get(name), shift, gap, scale)
        assert placed is not None
        boxes[name], masks[name] = placed

    # Bladder (filling 50-500 ml), aorta, bone, bowel, salivary glands: fixed shapes, painted where free.
    bladder_ml = float(np.exp(patient_rng.uniform(np.log(50.0), np.log(500.0))))
    bladder_r = (3.0 * bladder_ml * 1000.0 / (4.0 * np.pi) / (1.15 * 1.0 * 0.85)) ** (1.0 / 3.0)
    extra_shapes: list[tuple[str, list[Ellipsoid | Cylinder]]] = [
        (
            "bladder",
            [
                Ellipsoid(
                    (0.0, -35.0, 215.0 + 0.85 * bladder_r), (1.15 * bladder_r, bladder_r, 0.85 * bladder_r)
                )
            ],
        ),
        ("aorta", [Cylinder((22.0, 55.0), (12.0, 12.0), 330.0, 520.0)]),
        ("spine", [Cylinder((0.0, 88.0), (18.0, 17.0), 240.0, 800.0)]),
        (
            "bone",
            [
                Ellipsoid((s(105.0), 35.0, 300.0), (45.0, 22.0, 65.0)),
                Ellipsoid((-s(105.0), 35.0, 300.0), (45.0, 22.0, 65.0)),
                Cylinder((s(95.0), 10.0), (14.0, 14.0), 0.0, 250.0),
                Cylinder((-s(95.0), 10.0), (14.0, 14.0), 0.0, 250.0),
            ],
        ),
        (
            "salivary_glands",
            [Ellipsoid((x, 15.0, 800.0), (15.0, 20.0, 25.0)) for x in (52.0, -52.0)]
            + [Ellipsoid((x, -25.0, 770.0), (11.0, 11.0, 11.0)) for x in (36.0, -36.0)],
        ),
    ]
    bowel_shapes: list[Ellipsoid | Cylinder] = []
    for _ in range(8):
        centre = (
            float(misc_rng.uniform(-110, 110)),
            float(misc_rng.uniform(-70, 10)),
            float(misc_rng.uniform(260, 360)),
        )
        bowel_shapes.append(Ellipsoid(centre, tuple(float(misc_rng.uniform(12, 28)) for _ in range(3))))  # type: ignore[arg-type]
    extra_shapes.append(("bowel", bowel_shapes))
    for name, shapes in extra_shapes:
        box = _box_union(grid, shapes, pad=1)
        assert box is not None
        local = _local_mask(grid, shapes, box) & _free(labels, body, box, gap if name == "bowel" else 0)
        labels[box][local] = _LABEL[name]
        boxes[name], masks[name] = box, local

    # True uptake: tissue levels × a smooth texture.
    texture = _texture(shape, spacing, texture_rng)  # type: ignore[arg-type]
    true_suv = np.where(muscle, uptake["muscle"], 0.4 * uptake["muscle"]).astype(np.float32)
    true_suv[~body] = 0.0
    level = {
        "liver": uptake["liver"],
        "spleen": uptake["spleen"],
        "kidney_left": uptake["kidney"],
        "kidney_right": uptake["kidney"],
        "heart": uptake["myocardium"],
        "brain": uptake["grey"],
        "lung_left": uptake["lung"],
        "lung_right": uptake["lung"],
        "bladder": uptake["bladder"],
        "aorta": uptake["blood"],
        "spine": uptake["bone"],
        "bone": uptake["bone"],
        "bowel": uptake["bowel"],
        "salivary_glands": uptake["salivary"],
    }
    bowel_patch = 1.0 + 0.35 * np.tanh(texture)
    for name, value in level.items():
        box, local = boxes[name], masks[name]
        values = np.full(local.shape, value, dtype=np.float32)
        thickness = max(1, int(round(7.0 / min(spacing))))
        if name in ("kidney_left", "kidney_right", "heart", "brain"):
            inner = ndimage.binary_erosion(local, iterations=thickness)
            inner_value = {"heart": uptake["blood"], "brain": uptake["white"]}.get(name, 0.7 * value)
            values[inner] = inner_value
        if name in ("kidney_left", "kidney_right") and tracer == "FDG":
            pelvis = ball(
                grid,
                # At the hilum: medial (towards the midline) and a little anterior.
                grid.index_to_world(np.array([(b.start + b.stop) / 2 for b in box]))
                + [22.0 if name == "kidney_right" else -22.0, -4.0, 0.0],
                14.0,
            )
            if pelvis is not None:
                inner_box, inside = pelvis
                hot = np.zeros(shape, dtype=bool)
                hot[inner_box] = inside
                values[hot[box] & local] = uptake["renal_pelvis"]
        spread = 0.35 if name == "bowel" else (0.15 if name == "heart" else 0.1)
        values *= 1.0 + spread * np.clip(texture[box], -2.5, 2.5) if name != "bowel" else bowel_patch[box]
        true_suv[box][local] = values[local]
    del bowel_patch

    # Lesions.
    plans = plan_lesions(
        grid, labels, body, boxes, lesion_rng, n_lesions, _LABEL, ORGAN_VOLUME_ML, _MAX_LESION_SHARE
    )
    lesion_labels = np.zeros(shape, dtype=np.uint16)
    lesion_uptakes: list[float] = []
    for number, (_host, centre, diameter) in enumerate(plans, start=1):
        index = np.clip(np.rint(grid.world_to_index(centre)).astype(int), 0, np.array(shape) - 1)
        host_level = float(true_suv[tuple(index)])
        low, high = (3.0, 15.0) if tracer == "FDG" else (5.0, 40.0)
        value = max(float(np.exp(lesion_rng.uniform(np.log(low), np.log(high)))), 2.0 * host_level)
        lesion_uptakes.append(value)
        found = ball(grid, centre, diameter)
        if found is None:
            box = tuple(slice(int(i), int(i) + 1) for i in index)
            inside = np.ones((1, 1, 1), dtype=bool)
        else:
            box, inside = found
        values = value * (1.0 + 0.1 * np.clip(texture[box], -2.0, 2.0))
        if diameter > 28.0 and lesion_rng.random() < 0.5:  # necrotic core
            core = ball(grid, centre, diameter * 0.45)
            if core is not None:
                marker = np.zeros(shape, dtype=bool)
                marker[core[0]] = core[1]
                values = np.where(marker[box], host_level * 0.6, values)
        np.copyto(true_suv[box], values.astype(np.float32), where=inside)
        np.copyto(labels[box], np.uint8(LESION_LABEL), where=inside)
        np.copyto(lesion_labels[box], np.uint16(number), where=inside)
    del texture

    # Scanner: PSF, then signal-dependent noise correlated over about a voxel.
    image = ndimage.gaussian_filter(true_suv, sigma=[fwhm / 2.3548 / sp for sp in spacing], truncate=3.0)
    if noise_level > 0:
        noise = noise_rng.standard_normal(shape, dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, sigma=0.8, truncate=2.5)
        noise /= max(float(noise.std()), 1e-6)
        # ~10 % at liver level on a 4 mm grid; smaller voxels hold fewer counts.
        relative = 0.1 * noise_level * (64.0 / float(np.prod(spacing))) ** 0.25
        noise *= relative * np.sqrt(np.maximum(image, 0.0) * uptake["liver"])
        image += noise
        del noise
    np.clip(image, 0.0, None, out=image)

    affine = grid.affine.copy()
    centres = [(float(i), float(j), float(k)) for i, j, k in (grid.world_to_index(c) for _, c, _ in plans)]
    if feet_first:
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, shape[0] - 1
        flip[2, 2], flip[2, 3] = -1.0, shape[2] - 1
        affine = affine @ flip
        image, true_suv, labels, lesion_labels = (
            a[::-1, :, ::-1].copy() for a in (image, true_suv, labels, lesion_labels)
        )
        centres = [(shape[0] - 1 - i, j, shape[2] - 1 - k) for i, j, k in centres]
    counts = np.bincount(lesion_labels.ravel(), minlength=len(plans) + 1)
    lesions = [
        ClinicalLesion(
            number, host, diameter, centres[number - 1], lesion_uptakes[number - 1], int(counts[number])
        )
        for number, (host, _, diameter) in enumerate(plans, start=1)
    ]
    return ClinicalPhantom(
        seed=seed,
        tracer=tracer,
        suv=image.astype(np.float32, copy=False),
        true_suv=true_suv,
        labels=labels,
        lesion_labels=lesion_labels,
        lesions=lesions,
        affine=affine,
        feet_first=feet_first,
        psf_fwhm_mm=fwhm,
        extra={"uptake": uptake, "organ_targets_ml": targets, "bladder_ml": bladder_ml},
    )
