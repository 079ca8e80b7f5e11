"""Synthetic PET DICOM series with a known SUV, one per branch of the SUV computation (tests and bench/bench_suv.py).

Each series is 4 slices of 12 × 12 voxels in 2 bed positions (frames), holding three uniform regions of
chosen body-weight SUV (1.0 background, 2.5 and 8.0 blocks). The raw pixel values are derived from that SUV
with closed forms written here on their own (they do not call backend.imaging.suv), so a test compares the
code against an independent statement of the same physics:

* decayed dose at time t: D · 2^(−(t − injection) / T½); in-frame average of a frame of length T:
  (1 − e^(−λT)) / (λT); count-rate average time within a frame: ln(λT / (1 − e^(−λT))) / λ.
* normalisers: weight (g), James 128 / Janmahasatian lean body mass (g), DuBois body surface area (cm²),
  Devine ideal body weight (g); an SUV of type X is SUVbw × normaliser_X / weight_g.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
SHAPE = (4, 12, 12)
SLICES_PER_BED = 2
REGION_SUV = (1.0, 2.5, 8.0)
TOLERANCE = 1e-3  # 0.1 %


def region_map() -> np.ndarray:
    """0 = background, 1 = warm block, 2 = hot block (every slice)."""
    regions = np.zeros(SHAPE, dtype=np.int8)
    regions[:, 2:6, 2:6] = 1
    regions[:, 7:11, 6:10] = 2
    return regions


def true_suv_bw() -> np.ndarray:
    return np.asarray(REGION_SUV, dtype=np.float64)[region_map()]


@dataclass(frozen=True)
class Patient:
    weight_kg: float = 75.0
    height_m: float | None = 1.80
    sex: str = "M"


def normaliser(suv_type: str, patient: Patient) -> float | None:
    """Independent closed forms; grams, or cm² for SUVbsa."""
    w, h, sex = patient.weight_kg, patient.height_m, patient.sex
    if suv_type == "SUVbw":
        return w * 1000.0
    if h is None:
        return None
    h_cm = h * 100.0
    if suv_type == "SUVbsa":
        return 0.007184 * w**0.425 * h_cm**0.725 * 1e4
    if sex not in ("M", "F"):
        return None
    if suv_type == "SUL":
        bmi = w / h**2
        return 1000.0 * 9270.0 * w / ((6680.0 + 216.0 * bmi) if sex == "M" else (8780.0 + 244.0 * bmi))
    if suv_type == "SULjames":
        return 1000.0 * ((1.10 * w - 128.0 * (w / h_cm) ** 2) if sex == "M" else (1.07 * w - 148.0 * (w / h_cm) ** 2))
    if suv_type == "SUVibw":
        return 1000.0 * ((48.0 + 1.06 * (h_cm - 152.0)) if sex == "M" else (45.5 + 0.91 * (h_cm - 152.0)))
    raise ValueError(suv_type)


@dataclass(frozen=True)
class Case:
    """One branch: how the header is written, what the pixels hold, and what must come out."""

    name: str
    branch: str
    formula: str
    source: str
    units: str = "BQML"
    decay: str = "START"
    timing: str = "series"  # series | post_processed | ge_private | midnight
    gml_type: str | None = None  # SUVType written with GML
    values_are: str = "SUVbw"  # the SUV type the GML/CM2ML pixels hold
    expect_type: str = "SUVbw"  # type of the stored values the code must label
    also_check: tuple[str, ...] = ()  # other types whose values are checked analytically
    patient: Patient = field(default_factory=Patient)
    vendor: str = "SIEMENS"
    dose_in_mbq: bool = False
    counts_scale: float | None = None  # CNTS: Bq/ml per count
    philips_tag: str | None = None  # "suv" (7053,1000) or "activity" (7053,1009)
    frame_s: float = 180.0
    dose_bq: float = 370e6
    half_life_s: float = 6586.2
    injection: datetime = datetime(2024, 3, 5, 9, 58, 41, 250000)
    scan_start: datetime = datetime(2024, 3, 5, 11, 2, 17, 500000)
    warning: str | None = None  # a text one warning must contain
    write_height: bool = True  # False: PatientSize is left out of the header (the model still knows it)
    first_frame_offset_s: float = 0.0  # the series' first frame starts this long after the scan start


def decay_constant(case: Case) -> float:
    return math.log(2.0) / case.half_life_s


def frame_starts(case: Case) -> list[datetime]:
    return [case.scan_start + timedelta(seconds=case.first_frame_offset_s + (k // SLICES_PER_BED) * case.frame_s)
            for k in range(SHAPE[0])]


def average_time(case: Case) -> float:
    x = decay_constant(case) * case.frame_s
    return math.log(x / (1.0 - math.exp(-x))) / decay_constant(case)


def bqml_per_suv_bw(case: Case) -> list[float]:
    """Bq/ml per unit SUVbw for each slice, as the scanner would write it under the case's decay rule."""
    w_g = case.patient.weight_kg * 1000.0
    if case.decay == "ADMIN":
        return [case.dose_bq / w_g] * SHAPE[0]
    if case.decay == "START":
        uptake = (case.scan_start - case.injection).total_seconds()
        return [case.dose_bq * 2.0 ** (-uptake / case.half_life_s) / w_g] * SHAPE[0]
    x = decay_constant(case) * case.frame_s
    in_frame = (1.0 - math.exp(-x)) / x
    return [case.dose_bq * 2.0 ** (-(start - case.injection).total_seconds() / case.half_life_s) * in_frame / w_g
            for start in frame_starts(case)]


def raw_values(case: Case) -> np.ndarray:
    """Pixel values in the written units (float64, before quantisation)."""
    suv = true_suv_bw()
    if case.units in ("GML", "CM2ML"):
        scale = normaliser(case.values_are, case.patient) / (case.patient.weight_kg * 1000.0)  # type: ignore[operator]
        return suv * scale
    bqml = suv * np.asarray(bqml_per_suv_bw(case))[:, None, None]
    return bqml / case.counts_scale if case.units == "CNTS" else bqml


def expected(case: Case, suv_type: str) -> np.ndarray:
    """What the code must give in `suv_type`: SUVbw × normaliser ratio (the pixels themselves if unconvertible)."""
    ratio = normaliser(suv_type, case.patient) / normaliser("SUVbw", case.patient)  # type: ignore[operator]
    return true_suv_bw() * ratio


def _da(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def _tm(moment: datetime) -> str:
    return moment.strftime("%H%M%S.%f")


def _uid(case: Case, what: str) -> str:
    return generate_uid(entropy_srcs=["suv-reference", case.name, what])


def _quantise(values: np.ndarray) -> tuple[np.ndarray, float]:
    """int16 with a per-slice RescaleSlope (as GE writes): the largest value maps to 32000."""
    slope = float(np.abs(values).max()) / 32000.0 or 1.0
    return np.rint(values / slope).astype(np.int16), slope


def write_series(case: Case, directory: Path, **changes: object) -> list[Path]:
    """Write the case as DICOM files; `changes` override dataset attributes on every slice (e.g. PatientID)."""
    directory.mkdir(parents=True, exist_ok=True)
    values = raw_values(case)
    series_time = case.scan_start + (timedelta(hours=2) if case.timing in ("post_processed", "ge_private")
                                     else timedelta(0))
    paths = []
    for k, start in enumerate(frame_starts(case)):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = PET_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = _uid(case, f"sop{k}")
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = PET_STORAGE, _uid(case, f"sop{k}")
        ds.Modality, ds.Manufacturer = "PT", case.vendor
        ds.PatientID, ds.PatientName = "REF-001", "Reference^SUV"
        ds.PatientWeight = f"{case.patient.weight_kg:g}"
        if case.patient.height_m is not None and case.write_height:
            ds.PatientSize = f"{case.patient.height_m:g}"
        ds.PatientSex = case.patient.sex
        ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(case, "study"), _uid(case, "series")
        ds.FrameOfReferenceUID = _uid(case, "frame")
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.SeriesDate, ds.SeriesTime = _da(series_time), _tm(series_time)
        ds.AcquisitionDate, ds.AcquisitionTime = _da(start), _tm(start)
        # FrameReferenceTime: from the scan start to the frame's average count-rate time (ms).
        ds.FrameReferenceTime = f"{((start - case.scan_start).total_seconds() + average_time(case)) * 1000.0:.4f}"
        ds.ActualFrameDuration = int(round(case.frame_s * 1000.0))
        ds.Units, ds.DecayCorrection = case.units, case.decay
        ds.CorrectedImage = ["NORM", "ATTN", "SCAT"] + ([] if case.decay == "NONE" else ["DECY"])
        if case.gml_type:
            ds.SUVType = case.gml_type
        info = Dataset()
        info.Radiopharmaceutical = "Fluorodeoxyglucose"
        info.RadionuclideTotalDose = f"{case.dose_bq / 1e6:g}" if case.dose_in_mbq else f"{case.dose_bq:.1f}"
        info.RadionuclideHalfLife = f"{case.half_life_s:g}"
        if case.timing == "midnight":
            info.RadiopharmaceuticalStartTime = _tm(case.injection)
        else:
            info.RadiopharmaceuticalStartDateTime = case.injection.strftime("%Y%m%d%H%M%S.%f")
        ds.RadiopharmaceuticalInformationSequence = [info]
        if case.timing == "ge_private":
            ds.private_block(0x0009, "GEMS_PETD_01", create=True).add_new(
                0x0D, "DT", case.scan_start.strftime("%Y%m%d%H%M%S.%f"))
        if case.philips_tag is not None:
            block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
            if case.philips_tag == "suv":
                block.add_new(0x00, "DS", f"{case.counts_scale / bqml_per_suv_bw(case)[0]:.10g}")
            else:
                block.add_new(0x09, "DS", f"{case.counts_scale:.10g}")
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-12.0, -12.0, 3.0 * k]
        ds.PixelSpacing, ds.SliceThickness = [2.0, 2.0], 3.0
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        stored, slope = _quantise(values[k])
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", "0"
        ds.PixelData = stored.tobytes()
        for keyword, value in changes.items():
            setattr(ds, keyword, value(k) if callable(value) else value)
        path = directory / f"slice{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


QIBA = "QIBA vendor-neutral SUV pseudo-code"
BW = "SUVbw = v × W[g] / (D × 2^(−Δt/T½))"
CASES: list[Case] = [
    Case("bqml-start-series-time", "BQML, START, SeriesTime is the scan start", BW + ", Δt = SeriesTime − injection",
         QIBA, also_check=("SUL", "SULjames", "SUVbsa", "SUVibw")),
    Case("bqml-start-post-processed", "BQML, START, SeriesTime after acquisition, no GE private tag",
         BW + ", scan start = AcquisitionDateTime − FrameReferenceTime + ln(λT/(1−e^(−λT)))/λ", QIBA + " (back-computation)",
         timing="post_processed", first_frame_offset_s=300.0),
    Case("bqml-start-ge-private", "BQML, START, SeriesTime after acquisition, GE (0009,100D)",
         BW + ", scan start = GE private scan date/time", QIBA, timing="ge_private", vendor="GE MEDICAL SYSTEMS"),
    Case("bqml-start-midnight", "BQML, START, injection before midnight, StartTime only",
         BW + ", injection on the day before the scan", "PET_NOTES (DICOM PS3.3 C.8.9)", timing="midnight",
         injection=datetime(2024, 3, 5, 23, 31, 7), scan_start=datetime(2024, 3, 6, 0, 36, 42, 250000),
         warning="midnight"),
    Case("bqml-admin", "BQML, ADMIN", "SUVbw = v × W[g] / D", "DICOM PS3.3 C.8.9.1 (DecayCorrection ADMIN)",
         decay="ADMIN"),
    Case("bqml-none", "BQML, NONE (per frame)",
         "SUVbw = v × W[g] / (D × 2^(−(frame start − injection)/T½) × (1 − e^(−λT))/(λT))",
         "PET_NOTES; in-frame average of the decay", decay="NONE"),
    Case("bqml-philips", "BQML, START, Philips", BW + " (SeriesTime rule; Philips convention warning)", QIBA,
         vendor="Philips Medical Systems", warning="Philips BQML"),
    Case("bqml-dose-in-mbq", "BQML, START, RadionuclideTotalDose written in MBq",
         BW + ", D = header × 10^6 (header < 10^4)", "PET_NOTES (dose plausibility)", dose_in_mbq=True,
         warning="read as MBq"),
    Case("cnts-philips-suv", "CNTS, Philips SUV scale factor (7053,1000)", "SUVbw = counts × (7053,1000)",
         QIBA, units="CNTS", vendor="Philips Medical Systems", counts_scale=37.5, philips_tag="suv"),
    Case("cnts-philips-activity", "CNTS, Philips activity scale (7053,1009)",
         "Bq/ml = counts × (7053,1009), then " + BW, "PET_NOTES (Philips private)", units="CNTS",
         vendor="Philips Medical Systems", counts_scale=37.5, philips_tag="activity"),
    Case("gml-bw", "GML, SUVType BW", "SUVbw = v", QIBA, units="GML", gml_type="BW"),
    Case("gml-bw-absent-type", "GML, SUVType absent (BW by DICOM)", "SUVbw = v", QIBA, units="GML"),
    Case("gml-lbm-male", "GML, SUVType LBM (James 128), male", "SUVbw = v × W / LBM_James",
         "DICOM PS3.3 (SUV Type); James 1976", units="GML", gml_type="LBM", values_are="SULjames",
         also_check=("SULjames", "SUL"), warning="James (128)"),
    Case("gml-lbm-no-height", "GML, SUVType LBM without PatientSize", "kept as SULjames = v (no conversion)",
         "PET_NOTES (never mislabel)", units="GML", gml_type="LBM", values_are="SULjames", expect_type="SULjames",
         write_height=False, warning="not SUVbw"),
    Case("gml-ibw-female", "GML, SUVType IBW, female", "SUVbw = v × W / IBW_Devine", "Devine 1974",
         units="GML", gml_type="IBW", values_are="SUVibw", patient=Patient(62.0, 1.65, "F"), also_check=("SUVibw",)),
    Case("gml-bsa", "GML, SUVType BSA", "SUVbw = v × W[g] / BSA_DuBois[cm²]", "DICOM PS3.3 (SUV Type); DuBois 1916",
         units="GML", gml_type="BSA", values_are="SUVbsa", also_check=("SUVbsa",)),
    Case("cm2ml-bsa", "CM2ML (SUVbsa)", "SUVbw = v × W[g] / BSA_DuBois[cm²]", "PET_NOTES; DuBois 1916",
         units="CM2ML", values_are="SUVbsa", also_check=("SUVbsa",)),
    Case("bqml-female-types", "BQML, START, female: every SUV type", BW + "; type X = SUVbw × N_X / W",
         "PERCIST 1.0 (SUL, Janmahasatian); DuBois; Devine", patient=Patient(62.0, 1.65, "F"),
         also_check=("SUL", "SULjames", "SUVbsa", "SUVibw")),
    Case("bqml-sex-other", "BQML, START, PatientSex O", BW + "; SUVbsa only (no sex-specific type)",
         "PET_NOTES (sex rule)", patient=Patient(75.0, 1.80, "O"), also_check=("SUVbsa",)),
]


def case_named(name: str) -> Case:
    return next(case for case in CASES if case.name == name)


@dataclass
class Measurement:
    status: str
    suv_type: str | None
    errors: dict[str, float]  # SUV type -> largest relative error over all voxels
    warnings: tuple[str, ...]
    rule: str
    result: object = None

    @property
    def worst(self) -> float:
        return max(self.errors.values()) if self.errors else math.inf


def measure(case: Case, directory: Path, **changes: object) -> Measurement:
    """Write the case, load it as the ingest does, compute SUV, compare every checked type with the truth."""
    from backend.imaging.dicom_series import load_series_from_sources
    from backend.imaging.suv import compute_suv_factors

    loaded = load_series_from_sources(write_series(case, directory, **changes))
    result = compute_suv_factors(loaded.slice_headers)
    errors: dict[str, float] = {}
    if result.ok:
        for suv_type in dict.fromkeys((case.expect_type, *case.also_check)):
            if suv_type in result.conversions:
                got = result.apply(loaded.array, suv_type).astype(np.float64)
                truth = expected(case, suv_type)
                errors[suv_type] = float(np.max(np.abs(got - truth) / truth))
            else:
                errors[suv_type] = math.inf
    return Measurement(result.status, result.suv_type, errors, result.warnings, result.rule, result)
