"""Deterministic synthetic whole-body PET/CT phantom (make_phantom) and what it holds (Phantom).

Pure Python (numpy, scipy); no Django. Used by tests, benchmarks, demo data and the demo model's
training. A phantom's arrays are exactly what backend.imaging.dicom_series.load_series returns for the
files that worker.phantoms.dicom writes, whatever the orientation, patient position or instance
numbering. Geometry is in anatomy, uptake, blur, noise and HU in physics.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
from pydicom.uid import generate_uid
from scipy import ndimage

from worker.phantoms.anatomy import (
    LABEL_NAMES,
    LPS_TO_RAS,
    Grid,
    LesionPlan,
    Orientation,
    body_frame,
    image_orientation,
    make_grid,
    plan_lesions,
)
from worker.phantoms.physics import (
    TRACERS,
    Tracer,
    blur_and_noise,
    organ_uptakes,
    paint_ct,
    paint_pet,
    slice_acquisition_times,
)

TEST_SIZE: dict[str, tuple] = {"shape": (80, 64, 64), "spacing": (4.0, 4.0, 4.0)}
REALISTIC_SIZE: dict[str, tuple] = {"shape": (300, 200, 200), "spacing": (3.27, 3.5, 3.5)}


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


def _lesion_records(
    plans: Sequence[LesionPlan], grid: Grid, lesion_labels: np.ndarray, suv: np.ndarray
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
    if tracer not in TRACERS:
        raise ValueError(f"tracer must be one of {sorted(TRACERS)}, got {tracer!r}")
    if orientation not in ("axial", "oblique"):
        raise ValueError(f"orientation must be 'axial' or 'oblique', got {orientation!r}")
    streams = np.random.SeedSequence(seed).spawn(5)
    patient_rng, anatomy_rng, lesion_rng, pet_noise_rng, ct_noise_rng = (
        np.random.default_rng(s) for s in streams
    )
    spec = TRACERS[tracer]

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
    frame = body_frame(shape, spacing, centre, arms)

    uptakes = organ_uptakes(tracer, anatomy_rng)
    plans = plan_lesions(n_lesions, lesion_rng, frame, pet_grid, uptakes)
    true_suv, labels, lesion_labels = paint_pet(pet_grid, frame, arms, tracer, uptakes, plans)
    suv = blur_and_noise(true_suv, spacing, psf_fwhm_mm, noise_level, pet_noise_rng)
    ct_hu = paint_ct(ct_grid, frame, arms, plans, ct_noise_rng, ct_noise_hu)

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
        slice_acquisition_datetimes=slice_acquisition_times(
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


def lesion_table(phantom: Phantom) -> str:
    """JSON description of the lesions (for benchmarks and fixtures)."""
    return json.dumps([lesion.__dict__ for lesion in phantom.lesions], indent=2, default=float)
