"""Phantom physics: tracer uptake (SUV) per organ and lesion, the PET point-spread function and noise,
CT attenuation (HU), and the acquisition timing of a whole-body PET.

The PET is the true uptake blurred by a Gaussian PSF with correlated multiplicative noise; the SUV volume
*after* blur and noise is the reference that a DICOM round trip must reproduce. The label map is the
unblurred geometry (see anatomy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from scipy import ndimage

from worker.phantoms.anatomy import (
    ARM_SHAPES,
    BODY_SHAPES,
    FEMURS,
    HEART_BLOOD_POOL,
    LESION_LABEL,
    ORGANS,
    SKULL,
    SKULL_INNER,
    BodyFrame,
    Ellipsoid,
    Grid,
    LesionPlan,
    paint,
)

Tracer = Literal["FDG", "PSMA"]


@dataclass(frozen=True)
class Nuclide:
    name: str
    half_life_s: float
    positron_fraction: float
    code_value: str
    code_meaning: str


_F18 = Nuclide("F-18", 6586.2, 0.9673, "C-111A1", "^18^Fluorine")
_GA68 = Nuclide("Ga-68", 4062.6, 0.8891, "C-131A3", "^68^Gallium")


@dataclass(frozen=True)
class TracerSpec:
    radiopharmaceutical: str
    nuclide: Nuclide
    dose_mbq_per_kg: float
    code: tuple[str, str, str] | None  # (value, scheme, meaning) of RadiopharmaceuticalCodeSequence


TRACERS: dict[str, TracerSpec] = {
    "FDG": TracerSpec("Fluorodeoxyglucose", _F18, 3.7, ("C-B1031", "SRT", "Fluorodeoxyglucose F^18^")),
    "PSMA": TracerSpec("Ga-68 PSMA-11", _GA68, 2.0, None),
}


_BLOOD_POOL_SUV = {"FDG": 1.8, "PSMA": 1.6}
_BACKGROUND_SUV = {"FDG": 0.8, "PSMA": 0.6}


def organ_uptakes(tracer: str, rng: np.random.Generator) -> dict[str, float]:
    """Per-patient organ SUVs: the typical value × a ±15 % individual factor."""
    return {
        organ.name: (organ.fdg_suv if tracer == "FDG" else organ.psma_suv) * float(rng.uniform(0.85, 1.15))
        for organ in ORGANS
    }


def _background_and_body(grid: Grid, frame: BodyFrame, arms: bool, value: float) -> np.ndarray:
    body = np.zeros(grid.shape, dtype=np.float32)
    for shape in BODY_SHAPES + (ARM_SHAPES if arms else ()):
        paint(body, grid, frame.shape(shape), value)
    return body


def paint_pet(
    grid: Grid,
    frame: BodyFrame,
    arms: bool,
    tracer: str,
    uptakes: dict[str, float],
    lesions: Sequence[LesionPlan],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True uptake (SUV), organ/lesion labels and lesion instance labels on the PET grid."""
    uptake = _background_and_body(grid, frame, arms, _BACKGROUND_SUV[tracer])
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for organ in ORGANS:
        for shape in organ.shapes:
            world = frame.shape(shape)
            paint(uptake, grid, world, uptakes[organ.name])
            paint(labels, grid, world, organ.label)
    paint(uptake, grid, frame.shape(HEART_BLOOD_POOL), _BLOOD_POOL_SUV[tracer])
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
            paint(uptake, grid, core, uptakes.get(plan.host, 0.8) * 0.6)
    return uptake, labels, lesion_labels


def blur_and_noise(
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


def paint_ct(
    grid: Grid,
    frame: BodyFrame,
    arms: bool,
    lesions: Sequence[LesionPlan],
    rng: np.random.Generator,
    noise_hu: float,
) -> np.ndarray:
    hu = np.full(grid.shape, -1000, dtype=np.int16)
    body_shapes = BODY_SHAPES + (ARM_SHAPES if arms else ())
    for shape in body_shapes:  # subcutaneous fat …
        paint(hu, grid, frame.shape(shape), -90)
    for shape in body_shapes:  # … around muscle
        paint(hu, grid, frame.shape(shape, shrink_mm=15.0), 40)
    paint(hu, grid, frame.shape(SKULL), 800)
    paint(hu, grid, frame.shape(SKULL_INNER), 30)
    for shape in FEMURS:
        paint(hu, grid, frame.shape(shape), 700)
    for organ in ORGANS:
        for shape in organ.shapes:
            paint(hu, grid, frame.shape(shape), organ.hu)
    for plan in lesions:
        lesion_hu = {"liver": 20, "spine": 300, "spleen": 25}.get(plan.host, 35)
        paint(hu, grid, Ellipsoid(tuple(plan.centre), (plan.diameter_mm / 2.0,) * 3), lesion_hu)  # type: ignore[arg-type]
    if noise_hu > 0:
        # float32 noise, rounded in place: this is the costliest step for a 400×400×300 CT.
        noise = rng.standard_normal(hu.shape, dtype=np.float32)
        noise *= noise_hu
        np.rint(noise, out=noise)
        noise[hu == -1000] = 0.0  # air outside the body stays clean
        hu += noise.astype(np.int16)
    np.clip(hu, -1024, 3071, out=hu)
    return hu


def slice_acquisition_times(
    count: int, spacing_mm: float, scan_start: datetime, bed_length_mm: float, frame_duration_s: float
) -> list[datetime]:
    """Whole-body step-and-shoot: bed positions from the last array slice (head for HFS, feet for FFS)."""
    slices_per_bed = max(1, int(round(bed_length_mm / spacing_mm)))
    times = []
    for index in range(count):
        bed = (count - 1 - index) // slices_per_bed
        times.append(scan_start + timedelta(seconds=bed * frame_duration_s))
    return times
