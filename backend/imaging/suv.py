"""Standardised uptake values (SUV) from PET DICOM headers.

Pure Python (numpy + optional pydicom datasets); no Django. Implements /work/shared/PET_NOTES.md:

* SUV exists only for attenuation-corrected images whose CorrectedImage (0028,0051) lists ATTN and DECY.
  One deliberate exception: DecayCorrection (0054,1102) NONE means the pixels were *not* decay corrected,
  so DECY cannot be listed; the dose is then decayed to each slice's own acquisition time instead.
* Voxel value = stored × RescaleSlope + RescaleIntercept (per slice). The factors returned here multiply
  that *rescaled* value: ``SUV = rescaled × factor``.
* Units BQML: factor = weight[kg] × 1000 / decayed dose[Bq].
  CNTS (Philips): factor = (7053,1000) SUV scale factor, else (7053,1009) activity concentration scale
  (counts → Bq/ml) × the BQML factor. GML: already SUV, factor 1. Anything else: no SUV.
* Nothing is guessed silently. Missing or implausible weight, dose, half-life or times give the status
  ``needs_parameters`` with the DICOM attributes named; a manager can then supply them (SuvOverrides).

Times are handled as naive local date-times; DICOM timezone offsets (&ZZXX) are dropped because
SeriesTime/AcquisitionTime carry none, and mixing aware and naive times would be wrong either way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np

SuvStatus = Literal["ok", "needs_parameters", "not_applicable"]
Sex = Literal["M", "F"]

SUV_UNITS = "g/ml"

# Plausibility limits: values outside are reported, never rescaled behind the user's back.
MIN_PLAUSIBLE_WEIGHT_KG = 1.0
MAX_PLAUSIBLE_WEIGHT_KG = 500.0
MIN_PLAUSIBLE_HEIGHT_M = 0.3
MAX_PLAUSIBLE_HEIGHT_M = 2.6
# Below 1 MBq no clinical or small-animal PET is plausible; a dose stored in MBq (e.g. "370") lands here.
MIN_PLAUSIBLE_DOSE_BQ = 1.0e6
MAX_PLAUSIBLE_DOSE_BQ = 1.0e11
# Uptake times above this are reported as warnings (still computed: Zr-89 imaging is days after injection).
LONG_UPTAKE_WARNING_S = 24 * 3600.0

# Physical half-lives in seconds, used only when RadionuclideHalfLife is absent and the nuclide is named
# in the header; the result then carries a warning saying so.
KNOWN_HALF_LIVES_S: dict[str, float] = {
    "F-18": 6586.2,
    "Ga-68": 4062.6,
    "C-11": 1221.84,
    "N-13": 597.9,
    "O-15": 122.24,
    "Rb-82": 75.45,
    "Cu-64": 45723.6,
    "Zr-89": 282276.0,
}
_ELEMENT_SYMBOLS = {
    "fluorine": "F",
    "gallium": "Ga",
    "carbon": "C",
    "nitrogen": "N",
    "oxygen": "O",
    "rubidium": "Rb",
    "copper": "Cu",
    "zirconium": "Zr",
}

TAG_NAMES = {
    "weight": "PatientWeight (0010,1030)",
    "height": "PatientSize (0010,1020)",
    "sex": "PatientSex (0010,0040)",
    "dose": "RadionuclideTotalDose (0018,1074)",
    "half_life": "RadionuclideHalfLife (0018,1075)",
    "injection": "RadiopharmaceuticalStartDateTime (0018,1078) or RadiopharmaceuticalStartTime (0018,1072)",
    "series_time": "SeriesDate/SeriesTime (0008,0021)/(0008,0031)",
    "acquisition_time": "AcquisitionDate/AcquisitionTime (0008,0022)/(0008,0032) on every slice",
    "corrected_image": "CorrectedImage (0028,0051)",
    "decay_correction": "DecayCorrection (0054,1102)",
    "units": "Units (0054,1001)",
}

PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"
GE_PET_PRIVATE_CREATOR = "GEMS_PETD_01"


# --------------------------------------------------------------------------------------------------
# DICOM date/time parsing
# --------------------------------------------------------------------------------------------------


def parse_dicom_date(value: str | None) -> date | None:
    """DA 'YYYYMMDD' (also the old 'YYYY.MM.DD'); None when absent or malformed."""
    if not value:
        return None
    text = str(value).strip().replace(".", "").replace("-", "")
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def parse_dicom_time(value: str | None) -> time | None:
    """TM 'HH[MM[SS[.FFFFFF]]]' (also ACR-NEMA 'HH:MM:SS.frac'); None when absent or malformed."""
    if not value:
        return None
    text = str(value).strip().replace(":", "")
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text)
    if not match:
        return None
    hours, minutes, seconds, fraction = match.groups()
    try:
        return time(
            int(hours),
            int(minutes or 0),
            # DICOM allows second 60 (leap second); clamp rather than reject the whole series.
            min(int(seconds or 0), 59),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


def parse_dicom_datetime(value: str | None) -> datetime | None:
    """DT 'YYYYMMDDHHMMSS.FFFFFF&ZZXX' with optional trailing parts; the UTC offset is dropped."""
    if not value:
        return None
    text = re.split(r"[+\-]", str(value).strip(), maxsplit=1)[0]
    day = parse_dicom_date(text[:8])
    if day is None:
        return None
    clock = parse_dicom_time(text[8:]) if len(text) > 8 else time(0, 0)
    if clock is None:
        return None
    return datetime.combine(day, clock)


def combine_date_time(day: str | None, clock: str | None) -> datetime | None:
    parsed_day = parse_dicom_date(day)
    parsed_clock = parse_dicom_time(clock)
    if parsed_day is None or parsed_clock is None:
        return None
    return datetime.combine(parsed_day, parsed_clock)


# --------------------------------------------------------------------------------------------------
# Per-slice header extract
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuvHeader:
    """The attributes of one PET slice that SUV needs; JSON-able via to_dict()/from_dict().

    Dates/times stay DICOM strings so that the record can be stored and re-evaluated later.
    ``corrected_image`` is None when the attribute is absent (distinct from present but empty).
    """

    units: str | None = None
    decay_correction: str | None = None
    corrected_image: tuple[str, ...] | None = None
    suv_type: str | None = None
    patient_weight_kg: float | None = None
    patient_size_m: float | None = None
    patient_sex: str | None = None
    series_date: str | None = None
    series_time: str | None = None
    acquisition_date: str | None = None
    acquisition_time: str | None = None
    acquisition_datetime: str | None = None
    radiopharmaceutical: str | None = None
    radionuclide: str | None = None
    radionuclide_total_dose: float | None = None
    radionuclide_half_life: float | None = None
    radiopharmaceutical_start_datetime: str | None = None
    radiopharmaceutical_start_time: str | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    frame_reference_time_ms: float | None = None
    actual_frame_duration_ms: float | None = None
    decay_factor: float | None = None
    manufacturer: str | None = None
    philips_suv_scale_factor: float | None = None
    philips_activity_concentration_scale_factor: float | None = None
    ge_scan_datetime: str | None = None
    sop_instance_uid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.corrected_image is not None:
            data["corrected_image"] = list(self.corrected_image)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuvHeader:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if values.get("corrected_image") is not None:
            values["corrected_image"] = tuple(values["corrected_image"])
        return cls(**values)

    def acquisition(self) -> datetime | None:
        """AcquisitionDateTime (0008,002A) if present, else AcquisitionDate + AcquisitionTime."""
        return parse_dicom_datetime(self.acquisition_datetime) or combine_date_time(
            self.acquisition_date or self.series_date, self.acquisition_time
        )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="ignore")
    text = str(value).strip().strip("\x00").strip()
    return text or None


def _number(value: Any) -> float | None:
    """Float from DS/IS/FD or raw private bytes (UN VR in implicit files); None when absent/unparsable."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        text = value.decode("ascii", errors="ignore").strip("\x00 ")
        try:
            return float(text)
        except ValueError:
            if len(value) == 8:
                return float(np.frombuffer(bytes(value), dtype="<f8")[0])
            if len(value) == 4:
                return float(np.frombuffer(bytes(value), dtype="<f4")[0])
            return None
    if isinstance(value, list | tuple):
        return _number(value[0]) if value else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _private_value(dataset: Any, group: int, offset: int, creator: str) -> Any:
    """Private element by creator; falls back to the conventional block 0x10 when the creator is absent."""
    try:
        return dataset.get_private_item(group, offset, creator).value
    except (KeyError, ValueError):
        pass
    creator_tag = (group << 16) | 0x0010
    if creator_tag in dataset:
        # The block is reserved by some other creator: its elements mean something else.
        return None
    fixed_tag = (group << 16) | 0x1000 | offset
    return dataset[fixed_tag].value if fixed_tag in dataset else None


def _coded_meaning(item: Any, sequence_keyword: str) -> str | None:
    sequence = item.get(sequence_keyword) if item is not None else None
    if sequence:
        return _text(sequence[0].get("CodeMeaning"))
    return None


def suv_header_from_dataset(dataset: Any) -> SuvHeader:
    """Extract the SUV-relevant attributes from one pydicom Dataset (pixels not needed)."""
    info_sequence = dataset.get("RadiopharmaceuticalInformationSequence")
    info = info_sequence[0] if info_sequence else None

    def from_info(keyword: str) -> Any:
        return info.get(keyword) if info is not None else None

    corrected = dataset.get("CorrectedImage")
    if corrected is None:
        corrected_image = None
    elif isinstance(corrected, str):
        corrected_image = tuple(part.strip().upper() for part in corrected.split("\\") if part.strip())
    else:
        corrected_image = tuple(str(part).strip().upper() for part in corrected)

    return SuvHeader(
        units=_text(dataset.get("Units")),
        decay_correction=_text(dataset.get("DecayCorrection")),
        corrected_image=corrected_image,
        suv_type=_text(dataset.get("SUVType")),
        patient_weight_kg=_number(dataset.get("PatientWeight")),
        patient_size_m=_number(dataset.get("PatientSize")),
        patient_sex=_text(dataset.get("PatientSex")),
        series_date=_text(dataset.get("SeriesDate")),
        series_time=_text(dataset.get("SeriesTime")),
        acquisition_date=_text(dataset.get("AcquisitionDate")),
        acquisition_time=_text(dataset.get("AcquisitionTime")),
        acquisition_datetime=_text(dataset.get("AcquisitionDateTime")),
        radiopharmaceutical=_text(from_info("Radiopharmaceutical"))
        or _coded_meaning(info, "RadiopharmaceuticalCodeSequence"),
        radionuclide=_coded_meaning(info, "RadionuclideCodeSequence"),
        radionuclide_total_dose=_number(from_info("RadionuclideTotalDose")),
        radionuclide_half_life=_number(from_info("RadionuclideHalfLife")),
        radiopharmaceutical_start_datetime=_text(from_info("RadiopharmaceuticalStartDateTime")),
        radiopharmaceutical_start_time=_text(from_info("RadiopharmaceuticalStartTime")),
        rescale_slope=_number(dataset.get("RescaleSlope")) or 1.0,
        rescale_intercept=_number(dataset.get("RescaleIntercept")) or 0.0,
        frame_reference_time_ms=_number(dataset.get("FrameReferenceTime")),
        actual_frame_duration_ms=_number(dataset.get("ActualFrameDuration")),
        decay_factor=_number(dataset.get("DecayFactor")),
        manufacturer=_text(dataset.get("Manufacturer")),
        philips_suv_scale_factor=_number(_private_value(dataset, 0x7053, 0x00, PHILIPS_PRIVATE_CREATOR)),
        philips_activity_concentration_scale_factor=_number(
            _private_value(dataset, 0x7053, 0x09, PHILIPS_PRIVATE_CREATOR)
        ),
        ge_scan_datetime=_text(_private_value(dataset, 0x0009, 0x0D, GE_PET_PRIVATE_CREATOR)),
        sop_instance_uid=_text(dataset.get("SOPInstanceUID")),
    )


# --------------------------------------------------------------------------------------------------
# Body-size normalisations
# --------------------------------------------------------------------------------------------------


def normalise_sex(sex: str | None) -> Sex | None:
    text = (sex or "").strip().upper()
    if text in ("M", "MALE"):
        return "M"
    if text in ("F", "FEMALE"):
        return "F"
    return None


def _require_sex(sex: str) -> Sex:
    known = normalise_sex(sex)
    if known is None:
        raise ValueError(f"sex must be 'M' or 'F', got {sex!r}")
    return known


def lbm_james(weight_kg: float, height_m: float, sex: str, male_coefficient: float = 128.0) -> float:
    """James lean body mass (kg); DICOM's LBMJAMES128. Some software uses 120 for males."""
    height_cm = 100.0 * height_m
    if _require_sex(sex) == "M":
        return 1.10 * weight_kg - male_coefficient * (weight_kg / height_cm) ** 2
    return 1.07 * weight_kg - 148.0 * (weight_kg / height_cm) ** 2


def lbm_janmahasatian(weight_kg: float, height_m: float, sex: str) -> float:
    """Janmahasatian lean body mass (kg), preferred by PERCIST for SUL."""
    bmi = weight_kg / height_m**2
    if _require_sex(sex) == "M":
        return 9270.0 * weight_kg / (6680.0 + 216.0 * bmi)
    return 9270.0 * weight_kg / (8780.0 + 244.0 * bmi)


def bsa_dubois(weight_kg: float, height_m: float) -> float:
    """Body surface area (m²), DuBois & DuBois."""
    return 0.007184 * weight_kg**0.425 * (100.0 * height_m) ** 0.725


def ibw_devine(height_m: float, sex: str) -> float:
    """Ideal body weight (kg), Devine."""
    height_cm = 100.0 * height_m
    if _require_sex(sex) == "M":
        return 48.0 + 1.06 * (height_cm - 152.0)
    return 45.5 + 0.91 * (height_cm - 152.0)


def decayed_dose(dose_bq: float, elapsed_s: float, half_life_s: float) -> float:
    """Activity left after elapsed_s: dose × 2^(−Δt / half-life)."""
    return dose_bq * 2.0 ** (-elapsed_s / half_life_s)


def suv_bw_factor(weight_kg: float, dose_bq: float, elapsed_s: float, half_life_s: float) -> float:
    """Factor turning Bq/ml into body-weight SUV (g/ml) for activity referenced elapsed_s after injection."""
    return weight_kg * 1000.0 / decayed_dose(dose_bq, elapsed_s, half_life_s)


def identify_radionuclide(*texts: str | None) -> str | None:
    """'F-18' etc. from texts like '^18^Fluorine', 'Fluorine-18', '18F', 'F18', or FDG names."""
    for text in texts:
        if not text:
            continue
        lowered = text.lower()
        for name, symbol in _ELEMENT_SYMBOLS.items():
            patterns = (name, rf"(?<![a-z]){symbol.lower()}(?![a-z])")
            if any(re.search(pattern, lowered) for pattern in patterns):
                mass = re.search(r"\d+", lowered)
                if mass:
                    candidate = f"{symbol}-{int(mass.group())}"
                    if candidate in KNOWN_HALF_LIVES_S:
                        return candidate
        if "fdg" in lowered or "fluorodeoxyglucose" in lowered:
            return "F-18"
    return None


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuvOverrides:
    """Values a manager supplies for missing or implausible tags; each, when given, wins over the header.

    ``scan_datetime`` replaces the START reference time (it is ignored for ADMIN and NONE).
    """

    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    patient_sex: str | None = None
    injected_dose_bq: float | None = None
    injection_datetime: datetime | None = None
    half_life_s: float | None = None
    scan_datetime: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuvOverrides:
        values = dict(data)
        for key in ("injection_datetime", "scan_datetime"):
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass(frozen=True)
class SuvParameters:
    """What the computation actually used; ``sources`` says where each value came from."""

    units: str | None = None
    decay_correction: str | None = None
    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    patient_sex: str | None = None
    injected_dose_bq: float | None = None
    half_life_s: float | None = None
    injection_datetime: datetime | None = None
    scan_datetime: datetime | None = None
    uptake_time_s: float | None = None
    decayed_dose_bq: float | None = None
    lean_body_mass_kg: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class SuvResult:
    """Outcome of SUV factor computation for one series.

    ``slice_factors`` follows the order of the headers passed in (array slice order when they come from
    LoadedSeries.slice_headers). ``factor`` is set only when every slice shares one factor.
    SUV = (stored × slope + intercept) × factor. ``units`` is 'g/ml' when status is 'ok', otherwise the raw
    units (the pixels stay in Bq/ml or counts).
    """

    status: SuvStatus
    reason: str
    units: str
    raw_units: str | None
    rule: str
    factor: float | None = None
    slice_factors: tuple[float, ...] | None = None
    sul_factor: float | None = None
    sul_slice_factors: tuple[float, ...] | None = None
    suv_type: str = "BW"
    parameters: SuvParameters = field(default_factory=SuvParameters)
    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def varies_per_slice(self) -> bool:
        return self.ok and self.factor is None

    def factors_array(self, lean: bool = False) -> np.ndarray:
        factors = self.sul_slice_factors if lean else self.slice_factors
        if not self.ok or factors is None:
            raise ValueError(f"no {'SUL' if lean else 'SUV'} factors: {self.reason}")
        return np.asarray(factors, dtype=np.float64)

    def apply(self, values: np.ndarray, lean: bool = False) -> np.ndarray:
        """Scale rescaled pixel values (array indexed [slice, row, col]) to SUV (or SUL) as float32."""
        factors = self.factors_array(lean)
        if values.shape[0] != factors.shape[0]:
            raise ValueError(f"array has {values.shape[0]} slices but {factors.shape[0]} factors are known")
        return (values * factors.reshape((-1,) + (1,) * (values.ndim - 1))).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parameters"] = self.parameters.to_dict()
        return _jsonable(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _not_applicable(reason: str, raw_units: str | None, warnings: Sequence[str] = ()) -> SuvResult:
    return SuvResult(
        status="not_applicable",
        reason=reason,
        units=raw_units or "unknown",
        raw_units=raw_units,
        rule="no SUV",
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------------------------------
# Computation
# --------------------------------------------------------------------------------------------------


class _Collector:
    """Gathers the parameters, their sources, the missing/implausible items and warnings."""

    def __init__(self) -> None:
        self.missing: list[str] = []
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.sources: dict[str, str] = {}
        self.rule_parts: list[str] = []

    def lack(self, key: str, detail: str | None = None) -> None:
        tag = TAG_NAMES[key]
        self.missing.append(tag)
        self.problems.append(f"{tag} {detail}" if detail else f"{tag} is missing")


def _first_value(headers: Sequence[SuvHeader], attribute: str) -> Any:
    for header in headers:
        value = getattr(header, attribute)
        if value not in (None, ""):
            return value
    return None


def _choose(override: Any, header_value: Any, name: str, collect: _Collector) -> Any:
    if override is not None:
        collect.sources[name] = "supplied"
        return override
    if header_value is not None:
        collect.sources[name] = "header"
    return header_value


def _resolve_weight(
    headers: Sequence[SuvHeader], overrides: SuvOverrides, collect: _Collector
) -> float | None:
    weight = _choose(
        overrides.patient_weight_kg, _first_value(headers, "patient_weight_kg"), "weight", collect
    )
    if weight is None:
        collect.lack("weight")
        return None
    if not MIN_PLAUSIBLE_WEIGHT_KG <= weight <= MAX_PLAUSIBLE_WEIGHT_KG:
        collect.lack(
            "weight",
            f"= {weight:g} is not a plausible weight in kg "
            f"(expected {MIN_PLAUSIBLE_WEIGHT_KG:g}–{MAX_PLAUSIBLE_WEIGHT_KG:g})",
        )
        return None
    return float(weight)


def _resolve_dose(headers: Sequence[SuvHeader], overrides: SuvOverrides, collect: _Collector) -> float | None:
    dose = _choose(
        overrides.injected_dose_bq, _first_value(headers, "radionuclide_total_dose"), "dose", collect
    )
    if dose is None:
        collect.lack("dose")
        return None
    if not MIN_PLAUSIBLE_DOSE_BQ <= dose <= MAX_PLAUSIBLE_DOSE_BQ:
        hint = " (was it stored in MBq?)" if 0 < dose < MIN_PLAUSIBLE_DOSE_BQ else ""
        collect.lack(
            "dose",
            f"= {dose:g} is not a plausible injected activity in Bq "
            f"(expected {MIN_PLAUSIBLE_DOSE_BQ:.0e}–{MAX_PLAUSIBLE_DOSE_BQ:.0e} Bq){hint}",
        )
        return None
    return float(dose)


def _resolve_half_life(
    headers: Sequence[SuvHeader], overrides: SuvOverrides, collect: _Collector
) -> float | None:
    half_life = _choose(
        overrides.half_life_s, _first_value(headers, "radionuclide_half_life"), "half_life", collect
    )
    if half_life is not None and half_life > 0:
        return float(half_life)
    nuclide = identify_radionuclide(
        _first_value(headers, "radionuclide"), _first_value(headers, "radiopharmaceutical")
    )
    if nuclide is not None:
        collect.sources["half_life"] = f"table ({nuclide})"
        collect.warnings.append(
            f"{TAG_NAMES['half_life']} is missing; used the physical half-life of {nuclide} "
            f"({KNOWN_HALF_LIVES_S[nuclide]:g} s) named in the radiopharmaceutical information"
        )
        return KNOWN_HALF_LIVES_S[nuclide]
    collect.lack("half_life", None if half_life is None else f"= {half_life:g} is not a positive time in s")
    return None


def _resolve_height(
    headers: Sequence[SuvHeader], overrides: SuvOverrides, collect: _Collector
) -> float | None:
    height = _choose(overrides.patient_height_m, _first_value(headers, "patient_size_m"), "height", collect)
    if height is None:
        return None
    if not MIN_PLAUSIBLE_HEIGHT_M <= height <= MAX_PLAUSIBLE_HEIGHT_M:
        unit_hint = " (stored in cm?)" if height > 50 else ""
        collect.warnings.append(
            f"{TAG_NAMES['height']} = {height:g} is not a plausible height in m{unit_hint}; SUL not computed"
        )
        return None
    return float(height)


def _earliest_acquisition(headers: Sequence[SuvHeader]) -> datetime | None:
    times = [moment for moment in (header.acquisition() for header in headers) if moment is not None]
    return min(times) if times else None


def _series_datetime(headers: Sequence[SuvHeader]) -> datetime | None:
    first = headers[0]
    return combine_date_time(first.series_date, first.series_time)


def _resolve_scan_reference(
    headers: Sequence[SuvHeader], overrides: SuvOverrides, collect: _Collector
) -> datetime | None:
    """START reference: series time unless it is after the earliest acquisition (post-processed series)."""
    if overrides.scan_datetime is not None:
        collect.sources["scan_datetime"] = "supplied"
        collect.rule_parts.append("decay reference = supplied scan time")
        return overrides.scan_datetime
    series = _series_datetime(headers)
    earliest = _earliest_acquisition(headers)
    if series is not None and (earliest is None or series <= earliest):
        collect.sources["scan_datetime"] = "header"
        collect.rule_parts.append("decay reference = SeriesDate/SeriesTime")
        return series
    if series is not None and earliest is not None:
        ge_scan = parse_dicom_datetime(_first_value(headers, "ge_scan_datetime"))
        if ge_scan is not None:
            collect.sources["scan_datetime"] = "header"
            collect.rule_parts.append(
                "decay reference = GE private scan date/time (0009,100D) because SeriesTime is after "
                "the earliest AcquisitionTime (post-processed series)"
            )
            return ge_scan
        collect.sources["scan_datetime"] = "header"
        collect.rule_parts.append(
            "decay reference = earliest AcquisitionDate/Time because SeriesTime is after it "
            "(post-processed series)"
        )
        return earliest
    if earliest is not None:
        collect.sources["scan_datetime"] = "header"
        collect.warnings.append(f"{TAG_NAMES['series_time']} missing; used the earliest acquisition time")
        collect.rule_parts.append("decay reference = earliest AcquisitionDate/Time (no SeriesTime)")
        return earliest
    collect.lack("series_time")
    return None


def _resolve_injection(
    headers: Sequence[SuvHeader],
    overrides: SuvOverrides,
    reference: datetime | None,
    collect: _Collector,
) -> datetime | None:
    """Injection date-time: supplied, else StartDateTime, else scan date + StartTime across midnight."""
    if overrides.injection_datetime is not None:
        collect.sources["injection_datetime"] = "supplied"
        collect.rule_parts.append("injection time supplied")
        return overrides.injection_datetime
    full = parse_dicom_datetime(_first_value(headers, "radiopharmaceutical_start_datetime"))
    if full is not None:
        collect.sources["injection_datetime"] = "header"
        collect.rule_parts.append("injection = RadiopharmaceuticalStartDateTime")
        return full
    clock = parse_dicom_time(_first_value(headers, "radiopharmaceutical_start_time"))
    if clock is None:
        collect.lack("injection")
        return None
    if reference is None:
        # Without a scan date the start time cannot be placed on a day; the scan time is reported as missing.
        return None
    injection = datetime.combine(reference.date(), clock)
    collect.sources["injection_datetime"] = "header"
    if injection > reference:
        injection -= timedelta(days=1)
        collect.warnings.append(
            "RadiopharmaceuticalStartTime is later in the day than the scan; injection taken as the previous "
            "day (scan crossed midnight)"
        )
        collect.rule_parts.append("injection = RadiopharmaceuticalStartTime on the day before the scan")
    else:
        collect.rule_parts.append("injection = RadiopharmaceuticalStartTime on the scan date")
    return injection


def _check_uptake(uptake_s: float, what: str, collect: _Collector) -> bool:
    if uptake_s < 0:
        collect.missing.append(TAG_NAMES["injection"])
        collect.problems.append(
            f"injection time is {-uptake_s:.0f} s after the {what}; check "
            f"{TAG_NAMES['injection']} and the scan times"
        )
        return False
    if uptake_s > LONG_UPTAKE_WARNING_S:
        collect.warnings.append(f"uptake time {uptake_s / 3600:.1f} h is unusually long")
    return True


@dataclass(frozen=True)
class _DecayOutcome:
    decayed_doses: tuple[float, ...]
    reference: datetime | None
    uptake_s: float | None


def _decayed_doses(
    headers: Sequence[SuvHeader],
    overrides: SuvOverrides,
    decay_correction: str,
    dose: float | None,
    collect: _Collector,
) -> _DecayOutcome | None:
    """Dose decayed to the time each slice's values refer to (one value per slice)."""
    count = len(headers)
    if decay_correction == "ADMIN":
        collect.rule_parts.append("DecayCorrection ADMIN: images decay-corrected to injection, no decay term")
        if dose is None:
            return None
        return _DecayOutcome((dose,) * count, None, None)

    half_life = _resolve_half_life(headers, overrides, collect)
    if decay_correction == "START":
        reference = _resolve_scan_reference(headers, overrides, collect)
        injection = _resolve_injection(headers, overrides, reference, collect)
        if dose is None or half_life is None or reference is None or injection is None:
            return None
        uptake = (reference - injection).total_seconds()
        if not _check_uptake(uptake, "scan reference time", collect):
            return None
        return _DecayOutcome((decayed_dose(dose, uptake, half_life),) * count, reference, uptake)

    # NONE: pixels hold activity at acquisition, so each slice decays the dose to its own acquisition time.
    collect.rule_parts.append("DecayCorrection NONE: dose decayed to each slice's acquisition time")
    acquisitions = [header.acquisition() for header in headers]
    if any(moment is None for moment in acquisitions):
        collect.lack("acquisition_time")
        return None
    earliest = min(moment for moment in acquisitions if moment is not None)
    injection = _resolve_injection(headers, overrides, earliest, collect)
    if dose is None or half_life is None or injection is None:
        return None
    uptakes = [(moment - injection).total_seconds() for moment in acquisitions if moment is not None]
    if not _check_uptake(min(uptakes), "first acquisition", collect):
        return None
    doses = tuple(decayed_dose(dose, uptake, half_life) for uptake in uptakes)
    return _DecayOutcome(doses, earliest, min(uptakes))


def _sul_factors(
    headers: Sequence[SuvHeader],
    overrides: SuvOverrides,
    weight: float | None,
    bw_factors: Sequence[float],
    collect: _Collector,
) -> tuple[tuple[float, ...] | None, float | None, float | None, Sex | None]:
    """SUL (Janmahasatian LBM) factors derived from the body-weight ones: SUL = SUV × LBM / weight."""
    height = _resolve_height(headers, overrides, collect)
    sex = normalise_sex(_choose(overrides.patient_sex, _first_value(headers, "patient_sex"), "sex", collect))
    if weight is None:
        return None, height, None, sex
    if height is None or sex is None:
        absent = [TAG_NAMES[key] for key, value in (("height", height), ("sex", sex)) if value is None]
        collect.warnings.append("SUL not computed: " + ", ".join(absent) + " missing or not usable")
        return None, height, None, sex
    lbm = lbm_janmahasatian(weight, height, sex)
    return tuple(factor * lbm / weight for factor in bw_factors), height, lbm, sex


def _headers_from(items: Sequence[SuvHeader | Any]) -> list[SuvHeader]:
    return [item if isinstance(item, SuvHeader) else suv_header_from_dataset(item) for item in items]


def _uniform(values: Sequence[float]) -> float | None:
    first = values[0]
    return first if all(math.isclose(value, first, rel_tol=1e-12) for value in values) else None


def _correction_check(headers: Sequence[SuvHeader], raw_units: str | None) -> SuvResult | None:
    first = headers[0]
    decay_correction = (first.decay_correction or "").upper()
    if first.corrected_image is None:
        return _not_applicable(
            f"{TAG_NAMES['corrected_image']} is absent, so attenuation and decay correction cannot be "
            "confirmed; values stay in their raw units",
            raw_units,
        )
    corrections = set(first.corrected_image)
    if "ATTN" not in corrections:
        return _not_applicable(
            f"image is not attenuation corrected (CorrectedImage = {'/'.join(first.corrected_image) or 'empty'}); "
            "values stay in their raw units",
            raw_units,
        )
    if "DECY" not in corrections and decay_correction != "NONE":
        return _not_applicable(
            f"image is not decay corrected (CorrectedImage = {'/'.join(first.corrected_image)}, "
            f"DecayCorrection = {decay_correction or 'absent'}); values stay in their raw units",
            raw_units,
        )
    return None


def compute_suv_factors(
    headers: Sequence[SuvHeader | Any],
    overrides: SuvOverrides | None = None,
) -> SuvResult:
    """Body-weight SUV (and Janmahasatian SUL) factors for one PET series.

    ``headers``: SuvHeader records or pydicom Datasets, one per slice, in the slice order wanted for
    ``slice_factors``. ``overrides``: manager-supplied values that replace header values.
    """
    overrides = overrides or SuvOverrides()
    slices = _headers_from(headers)
    if not slices:
        return _not_applicable("no PET slices given", None)
    raw_units = (slices[0].units or "").upper() or None
    if len({(header.units or "").upper() for header in slices}) > 1:
        return _not_applicable(f"slices disagree on {TAG_NAMES['units']}", raw_units)
    failed = _correction_check(slices, raw_units)
    if failed is not None:
        return failed

    if raw_units == "GML":
        return _gml_result(slices)
    if raw_units == "CNTS":
        return _cnts_result(slices, overrides)
    if raw_units == "BQML":
        return _bqml_result(slices, overrides, activity_scales=None)
    return _not_applicable(
        f"{TAG_NAMES['units']} = {raw_units or 'absent'}: only BQML, CNTS (Philips) and GML can become SUV",
        raw_units,
    )


def _gml_result(slices: Sequence[SuvHeader]) -> SuvResult:
    suv_type = (slices[0].suv_type or "BW").upper()
    warnings: list[str] = []
    units = SUV_UNITS
    if suv_type != "BW":
        warnings.append(f"values are SUV of type {suv_type}, not body-weight SUV")
        if suv_type == "BSA":
            units = "cm2/ml"
    return SuvResult(
        status="ok",
        reason="values are already SUV (Units GML)",
        units=units,
        raw_units="GML",
        rule=f"GML passthrough (SUV type {suv_type}{'' if slices[0].suv_type else ', SUVType absent: BW assumed'})",
        factor=1.0,
        slice_factors=(1.0,) * len(slices),
        suv_type=suv_type,
        parameters=SuvParameters(units="GML", decay_correction=slices[0].decay_correction),
        warnings=tuple(warnings),
    )


def _cnts_result(slices: Sequence[SuvHeader], overrides: SuvOverrides) -> SuvResult:
    suv_scales = [header.philips_suv_scale_factor for header in slices]
    if all(scale is not None and scale > 0 for scale in suv_scales):
        factors = tuple(float(scale) for scale in suv_scales if scale is not None)
        collect = _Collector()
        weight = _choose(
            overrides.patient_weight_kg, _first_value(slices, "patient_weight_kg"), "weight", collect
        )
        plausible_weight = (
            weight if weight and MIN_PLAUSIBLE_WEIGHT_KG <= weight <= MAX_PLAUSIBLE_WEIGHT_KG else None
        )
        sul, height, lbm, sex = _sul_factors(slices, overrides, plausible_weight, factors, collect)
        return SuvResult(
            status="ok",
            reason="Philips counts scaled by the private SUV scale factor",
            units=SUV_UNITS,
            raw_units="CNTS",
            rule="CNTS × Philips private SUV scale factor (7053,1000)",
            factor=_uniform(factors),
            slice_factors=factors,
            sul_factor=_uniform(sul) if sul else None,
            sul_slice_factors=sul,
            parameters=SuvParameters(
                units="CNTS",
                decay_correction=slices[0].decay_correction,
                patient_weight_kg=plausible_weight,
                patient_height_m=height,
                patient_sex=sex,
                lean_body_mass_kg=lbm,
                sources=collect.sources,
            ),
            warnings=tuple(collect.warnings),
        )
    activity_scales = [header.philips_activity_concentration_scale_factor for header in slices]
    if all(scale is not None and scale > 0 for scale in activity_scales):
        return _bqml_result(slices, overrides, activity_scales=[float(s) for s in activity_scales if s])
    return _not_applicable(
        "Units CNTS without the Philips private SUV scale factor (7053,1000) or activity concentration "
        "scale factor (7053,1009) on every slice: counts cannot be converted to Bq/ml",
        "CNTS",
    )


def _bqml_result(
    slices: Sequence[SuvHeader],
    overrides: SuvOverrides,
    activity_scales: Sequence[float] | None,
) -> SuvResult:
    """BQML (or Philips counts converted to Bq/ml by activity_scales) → body-weight SUV."""
    raw_units = "CNTS" if activity_scales is not None else "BQML"
    decay_correction = (slices[0].decay_correction or "").upper()
    if decay_correction not in ("START", "ADMIN", "NONE"):
        return _not_applicable(
            f"{TAG_NAMES['decay_correction']} = {decay_correction or 'absent'}; "
            "only START, ADMIN and NONE are understood",
            raw_units,
        )
    collect = _Collector()
    if activity_scales is not None:
        collect.rule_parts.append("CNTS × Philips activity concentration scale factor (7053,1009) → Bq/ml")
    collect.rule_parts.insert(0, "SUVbw = value × weight[kg] × 1000 / decayed dose[Bq]")
    if decay_correction == "START":
        collect.rule_parts.append("DecayCorrection START")
    manufacturer = _first_value(slices, "manufacturer") or ""
    if "philips" in manufacturer.lower() and activity_scales is None and decay_correction == "START":
        collect.warnings.append(
            "Philips BQML: vendors disagree on the START reference time; SeriesTime rule used as documented"
        )

    weight = _resolve_weight(slices, overrides, collect)
    dose = _resolve_dose(slices, overrides, collect)
    decay = _decayed_doses(slices, overrides, decay_correction, dose, collect)
    if collect.problems or decay is None or weight is None or dose is None:
        return SuvResult(
            status="needs_parameters",
            reason="SUV needs: " + "; ".join(collect.problems or ["scan and injection times"]),
            units=raw_units,
            raw_units=raw_units,
            rule=" ; ".join(collect.rule_parts),
            missing=tuple(dict.fromkeys(collect.missing)),
            warnings=tuple(collect.warnings),
            parameters=SuvParameters(
                units=raw_units, decay_correction=decay_correction, sources=collect.sources
            ),
        )

    bw_factors = [weight * 1000.0 / remaining for remaining in decay.decayed_doses]
    if activity_scales is not None:
        bw_factors = [factor * scale for factor, scale in zip(bw_factors, activity_scales, strict=True)]
    factors = tuple(bw_factors)
    sul, height, lbm, sex = _sul_factors(slices, overrides, weight, factors, collect)
    injection = (
        decay.reference - timedelta(seconds=decay.uptake_s)
        if decay.reference is not None and decay.uptake_s is not None
        else overrides.injection_datetime
    )
    parameters = SuvParameters(
        units=raw_units,
        decay_correction=decay_correction,
        patient_weight_kg=weight,
        patient_height_m=height,
        patient_sex=sex,
        injected_dose_bq=dose,
        half_life_s=_resolve_half_life_quiet(slices, overrides),
        injection_datetime=injection,
        scan_datetime=decay.reference,
        uptake_time_s=decay.uptake_s,
        decayed_dose_bq=decay.decayed_doses[0],
        lean_body_mass_kg=lbm,
        sources=collect.sources,
    )
    return SuvResult(
        status="ok",
        reason="body-weight SUV computed from the DICOM header"
        + (" and supplied parameters" if "supplied" in collect.sources.values() else ""),
        units=SUV_UNITS,
        raw_units=raw_units,
        rule=" ; ".join(collect.rule_parts),
        factor=_uniform(factors),
        slice_factors=factors,
        sul_factor=_uniform(sul) if sul else None,
        sul_slice_factors=sul,
        parameters=parameters,
        warnings=tuple(dict.fromkeys(collect.warnings)),
    )


def _resolve_half_life_quiet(slices: Sequence[SuvHeader], overrides: SuvOverrides) -> float | None:
    """Half-life for the parameters record, without adding warnings a second time."""
    return _resolve_half_life(slices, overrides, _Collector())


def compute_suv_from_parameters(
    *,
    patient_weight_kg: float,
    injected_dose_bq: float,
    injection_datetime: datetime,
    half_life_s: float,
    scan_datetime: datetime,
    patient_height_m: float | None = None,
    patient_sex: str | None = None,
    slice_count: int = 1,
) -> SuvResult:
    """SUV factor from parameters typed in by a manager for a BQML, START-decay-corrected series.

    Goes through the same checks as header values (plausibility, injection before scan).
    """
    header = SuvHeader(units="BQML", decay_correction="START", corrected_image=("ATTN", "DECY"))
    overrides = SuvOverrides(
        patient_weight_kg=patient_weight_kg,
        patient_height_m=patient_height_m,
        patient_sex=patient_sex,
        injected_dose_bq=injected_dose_bq,
        injection_datetime=injection_datetime,
        half_life_s=half_life_s,
        scan_datetime=scan_datetime,
    )
    return compute_suv_factors([header] * max(1, slice_count), overrides)
