"""Dose, half-life, times and decay: the QIBA vendor-neutral branches for the dose the pixels refer to.

* START: Δt = scan reference time − injection. The reference is SeriesDate/Time unless it is after the
  earliest AcquisitionDate/Time (a post-processed series); then GE's private scan date/time (0009,100D),
  else the QIBA back-computation from one slice: scan start = AcquisitionDateTime − FrameReferenceTime
  + t_avg, where t_avg = ln(λT / (1 − e^(−λT))) / λ is the time within a frame of length T at which the
  count rate equals its frame average (FrameReferenceTime points at that time, measured from scan start).
* ADMIN: pixels are already decay corrected to the injection: decayed dose = dose.
* NONE: pixels hold the frame-average activity, not decay corrected: decayed dose for a slice =
  dose × 2^(−(frame start − injection) / T½) × (1 − e^(−λT)) / (λT), frame start = its AcquisitionDateTime.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .header import TAG_NAMES, SuvHeader, combine_date_time, parse_dicom_datetime, parse_dicom_time
from .result import SuvOverrides

# Below 1 MBq no clinical or small-animal PET is plausible.
MIN_PLAUSIBLE_DOSE_BQ = 1.0e6
MAX_PLAUSIBLE_DOSE_BQ = 1.0e11
# A header dose below this cannot be Bq (1e4 Bq is 0.01 MBq) but is a typical dose written in MBq (37-1000):
# it is converted, with a warning naming MBq. Values between this and MIN_PLAUSIBLE_DOSE_BQ are refused.
MBQ_DOSE_BELOW = 1.0e4
# Every PET nuclide lies well inside this (Rb-82 75 s ... Zr-89 3.3 days); outside, decay maths under/overflows.
MIN_PLAUSIBLE_HALF_LIFE_S = 10.0
MAX_PLAUSIBLE_HALF_LIFE_S = 1.0e8
# Uptake times above this are reported as warnings (still computed: Zr-89 imaging is days after injection).
LONG_UPTAKE_WARNING_S = 24 * 3600.0

# Physical half-lives in seconds, used only when RadionuclideHalfLife is absent and the nuclide is named
# in the header; the result then carries a warning saying so.
KNOWN_HALF_LIVES_S: dict[str, float] = {
    "F-18": 6586.2, "Ga-68": 4062.6, "C-11": 1221.84, "N-13": 597.9, "O-15": 122.24, "Rb-82": 75.45,
    "Cu-64": 45723.6, "Zr-89": 282276.0,
}
_ELEMENT_SYMBOLS = {"fluorine": "F", "gallium": "Ga", "carbon": "C", "nitrogen": "N", "oxygen": "O",
                    "rubidium": "Rb", "copper": "Cu", "zirconium": "Zr"}


def decayed_dose(dose_bq: float, elapsed_s: float, half_life_s: float) -> float:
    """Activity left after elapsed_s: dose × 2^(−Δt / half-life)."""
    return dose_bq * 2.0 ** (-elapsed_s / half_life_s)


def frame_average_factor(duration_s: float, half_life_s: float) -> float:
    """Mean of the decay over a frame relative to its start, (1 − e^(−λT)) / (λT); 1 for T = 0."""
    x = math.log(2.0) / half_life_s * duration_s
    return 1.0 if x == 0 else -math.expm1(-x) / x


def average_count_rate_time(duration_s: float, half_life_s: float) -> float:
    """Seconds after a frame's start at which the decaying count rate equals its frame average."""
    decay_constant = math.log(2.0) / half_life_s
    return -math.log(frame_average_factor(duration_s, half_life_s)) / decay_constant


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


class Collector:
    """Gathers the parameters' sources, the missing/implausible items, warnings and the rule followed."""

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


def first_value(headers: Sequence[SuvHeader], attribute: str) -> Any:
    for header in headers:
        value = getattr(header, attribute)
        if value not in (None, ""):
            return value
    return None


def choose(override: Any, header_value: Any, name: str, collect: Collector) -> Any:
    if override is not None:
        collect.sources[name] = "supplied"
        return override
    if header_value is not None:
        collect.sources[name] = "header"
    return header_value


def resolve_dose(headers: Sequence[SuvHeader], overrides: SuvOverrides, collect: Collector) -> float | None:
    dose = choose(overrides.injected_dose_bq, first_value(headers, "radionuclide_total_dose"), "dose", collect)
    if dose is None:
        collect.lack("dose")
        return None
    tag = TAG_NAMES["dose"]
    if collect.sources.get("dose") == "header" and 0 < dose < MBQ_DOSE_BELOW:
        converted = dose * 1e6
        if MIN_PLAUSIBLE_DOSE_BQ <= converted <= MAX_PLAUSIBLE_DOSE_BQ:
            collect.warnings.append(
                f"{tag} = {dose:g} is below {MBQ_DOSE_BELOW:g} Bq, which no PET injection is, so it was read as MBq "
                f"and converted to {converted:.6g} Bq; check the dose if this is wrong")
            collect.sources["dose"] = "header (MBq converted to Bq)"
            collect.rule_parts.append("dose stored in MBq, converted to Bq")
            return float(converted)
    if not MIN_PLAUSIBLE_DOSE_BQ <= dose <= MAX_PLAUSIBLE_DOSE_BQ:
        hint = " (was it stored in MBq or kBq?)" if 0 < dose < MIN_PLAUSIBLE_DOSE_BQ else ""
        collect.lack("dose", f"= {dose:g} is not a plausible injected activity in Bq "
                             f"(expected {MIN_PLAUSIBLE_DOSE_BQ:.0e}–{MAX_PLAUSIBLE_DOSE_BQ:.0e} Bq){hint}")
        return None
    return float(dose)


def resolve_half_life(headers: Sequence[SuvHeader], overrides: SuvOverrides, collect: Collector) -> float | None:
    half_life = choose(overrides.half_life_s, first_value(headers, "radionuclide_half_life"), "half_life", collect)
    if half_life is not None and MIN_PLAUSIBLE_HALF_LIFE_S <= half_life <= MAX_PLAUSIBLE_HALF_LIFE_S:
        return float(half_life)
    nuclide = identify_radionuclide(first_value(headers, "radionuclide"), first_value(headers, "radiopharmaceutical"))
    if nuclide is not None:
        collect.sources["half_life"] = f"table ({nuclide})"
        collect.warnings.append(
            f"{TAG_NAMES['half_life']} is missing; used the physical half-life of {nuclide} "
            f"({KNOWN_HALF_LIVES_S[nuclide]:g} s) named in the radiopharmaceutical information")
        return KNOWN_HALF_LIVES_S[nuclide]
    collect.lack("half_life", None if half_life is None else
                 f"= {half_life:g} is not a plausible half-life in s (expected {MIN_PLAUSIBLE_HALF_LIFE_S:g}–"
                 f"{MAX_PLAUSIBLE_HALF_LIFE_S:g} s)")
    return None


def _earliest_acquisition(headers: Sequence[SuvHeader]) -> datetime | None:
    times = [moment for moment in (header.acquisition() for header in headers) if moment is not None]
    return min(times) if times else None


def back_computed_scan_start(headers: Sequence[SuvHeader], half_life_s: float) -> datetime | None:
    """QIBA: AcquisitionDateTime − FrameReferenceTime + t_avg(ActualFrameDuration), earliest over the slices."""
    starts = []
    for header in headers:
        acquired = header.acquisition()
        reference_ms, duration_ms = header.frame_reference_time_ms, header.actual_frame_duration_ms
        if acquired is None or reference_ms is None or not duration_ms or duration_ms <= 0 or reference_ms < 0:
            continue
        offset = -reference_ms / 1000.0 + average_count_rate_time(duration_ms / 1000.0, half_life_s)
        starts.append(acquired + timedelta(seconds=offset))
    return min(starts) if starts else None


def resolve_scan_reference(headers: Sequence[SuvHeader], overrides: SuvOverrides, half_life_s: float | None,
                           collect: Collector) -> datetime | None:
    """START reference: series time unless it is after the earliest acquisition (post-processed series)."""
    if overrides.scan_datetime is not None:
        collect.sources["scan_datetime"] = "supplied"
        collect.rule_parts.append("decay reference = supplied scan time")
        return overrides.scan_datetime
    series = combine_date_time(headers[0].series_date, headers[0].series_time)
    earliest = _earliest_acquisition(headers)
    collect.sources["scan_datetime"] = "header"
    if series is not None and (earliest is None or series <= earliest):
        collect.rule_parts.append("decay reference = SeriesDate/SeriesTime")
        return series
    if series is not None and earliest is not None:
        why = "because SeriesTime is after the earliest AcquisitionTime (post-processed series)"
        ge_scan = parse_dicom_datetime(first_value(headers, "ge_scan_datetime"))
        if ge_scan is not None:
            collect.rule_parts.append(f"decay reference = GE private scan date/time (0009,100D) {why}")
            return ge_scan
        back = back_computed_scan_start(headers, half_life_s) if half_life_s else None
        if back is not None:
            collect.rule_parts.append(
                f"decay reference = AcquisitionDateTime − FrameReferenceTime + average count-rate time within "
                f"ActualFrameDuration (QIBA back-computation) {why}")
            return back
        collect.warnings.append(
            f"SeriesTime is after the earliest AcquisitionTime (post-processed series) and neither GE's private "
            f"scan time nor {TAG_NAMES['frame_reference']} with {TAG_NAMES['frame_duration']} is present: the "
            "earliest acquisition time was used as the scan start, which can be late by up to half a frame")
        collect.rule_parts.append(f"decay reference = earliest AcquisitionDate/Time {why}")
        return earliest
    if earliest is not None:
        collect.warnings.append(f"{TAG_NAMES['series_time']} missing; used the earliest acquisition time")
        collect.rule_parts.append("decay reference = earliest AcquisitionDate/Time (no SeriesTime)")
        return earliest
    collect.lack("series_time")
    return None


def resolve_injection(headers: Sequence[SuvHeader], overrides: SuvOverrides, reference: datetime | None,
                      collect: Collector) -> datetime | None:
    """Injection date-time: supplied, else StartDateTime, else scan date + StartTime across midnight."""
    if overrides.injection_datetime is not None:
        collect.sources["injection_datetime"] = "supplied"
        collect.rule_parts.append("injection time supplied")
        return overrides.injection_datetime
    full = parse_dicom_datetime(first_value(headers, "radiopharmaceutical_start_datetime"))
    if full is not None:
        collect.sources["injection_datetime"] = "header"
        collect.rule_parts.append("injection = RadiopharmaceuticalStartDateTime")
        return full
    clock = parse_dicom_time(first_value(headers, "radiopharmaceutical_start_time"))
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
        collect.warnings.append("RadiopharmaceuticalStartTime is later in the day than the scan; injection taken "
                                "as the previous day (scan crossed midnight)")
        collect.rule_parts.append("injection = RadiopharmaceuticalStartTime on the day before the scan")
    else:
        collect.rule_parts.append("injection = RadiopharmaceuticalStartTime on the scan date")
    return injection


def _check_uptake(uptake_s: float, what: str, collect: Collector) -> bool:
    if uptake_s < 0:
        collect.missing.append(TAG_NAMES["injection"])
        collect.problems.append(f"injection time is {-uptake_s:.0f} s after the {what}; check "
                                f"{TAG_NAMES['injection']} and the scan times")
        return False
    if uptake_s > LONG_UPTAKE_WARNING_S:
        collect.warnings.append(f"uptake time {uptake_s / 3600:.1f} h is unusually long")
    return True


@dataclass(frozen=True)
class DecayOutcome:
    decayed_doses: tuple[float, ...]
    reference: datetime | None
    uptake_s: float | None
    half_life_s: float | None
    frame_duration_s: float | None = None


def decayed_doses(headers: Sequence[SuvHeader], overrides: SuvOverrides, decay_correction: str,
                  dose: float | None, collect: Collector) -> DecayOutcome | None:
    """Dose decayed to the time each slice's values refer to (one value per slice)."""
    count = len(headers)
    if decay_correction == "ADMIN":
        collect.rule_parts.append("DecayCorrection ADMIN: images decay-corrected to injection, no decay term")
        return None if dose is None else DecayOutcome((dose,) * count, None, None, None)

    half_life = resolve_half_life(headers, overrides, collect)
    if decay_correction == "START":
        collect.rule_parts.append("DecayCorrection START: dose × 2^(−(scan start − injection) / T½)")
        reference = resolve_scan_reference(headers, overrides, half_life, collect)
        injection = resolve_injection(headers, overrides, reference, collect)
        if dose is None or half_life is None or reference is None or injection is None:
            return None
        uptake = (reference - injection).total_seconds()
        if not _check_uptake(uptake, "scan reference time", collect):
            return None
        return DecayOutcome((decayed_dose(dose, uptake, half_life),) * count, reference, uptake, half_life)

    collect.rule_parts.append("DecayCorrection NONE: dose × 2^(−(frame start − injection) / T½) × "
                              "(1 − e^(−λT)) / (λT) per slice, frame start = AcquisitionDateTime, "
                              "T = ActualFrameDuration")
    acquisitions = [header.acquisition() for header in headers]
    durations = [header.actual_frame_duration_ms for header in headers]
    if any(moment is None for moment in acquisitions):
        collect.lack("acquisition_time")
    if any(duration is None or duration <= 0 for duration in durations):
        collect.lack("frame_duration", "is missing or not positive on some slice: the decay during a frame "
                                       "cannot be averaged without it")
    known = [moment for moment in acquisitions if moment is not None]
    earliest = min(known) if known else None
    injection = resolve_injection(headers, overrides, earliest, collect)
    if collect.problems or dose is None or half_life is None or injection is None or earliest is None:
        return None
    uptakes = [(moment - injection).total_seconds() for moment in known]
    if not _check_uptake(min(uptakes), "first acquisition", collect):
        return None
    doses = tuple(decayed_dose(dose, uptake, half_life) * frame_average_factor(duration / 1000.0, half_life)
                  for uptake, duration in zip(uptakes, durations, strict=True) if duration is not None)
    return DecayOutcome(doses, earliest, min(uptakes), half_life, float(durations[0] or 0) / 1000.0)
