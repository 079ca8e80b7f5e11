"""SUV factors of one PET series, one branch per Units (0054,1001) value (QIBA vendor-neutral pseudo-code).

* SUV exists only for attenuation-corrected images whose CorrectedImage (0028,0051) lists ATTN and DECY;
  DecayCorrection NONE is the one exception (its pixels are by definition not decay corrected).
* BQML: SUVbw factor = weight[g] / decayed dose[Bq] (timing.py says which dose for START, ADMIN, NONE).
* CNTS (Philips): (7053,1000) SUV scale factor (taken as SUVbw, as QIBA does); else (7053,1009) activity
  concentration scale (counts → Bq/ml), then as BQML.
* GML: values already SUV of the type SUVType (0054,1006) names (absent: BW). CM2ML: values are SUVbsa.
  They are converted to SUVbw when the header's body metrics allow (SUVbw = SUVx × weight / normaliser x),
  else kept and labelled as what they are. SUVType LBM is taken as James (128) lean body mass: the
  formula scanners have written; the warning says so.
* Every other SUV type is a scalar multiple of the stored one (body.py); the factors are all stored.

Nothing is guessed silently: missing or implausible values give ``needs_parameters`` with the DICOM
attributes named; a manager can supply them (SuvOverrides).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from .body import MAX_PLAUSIBLE_WEIGHT_KG, MIN_PLAUSIBLE_WEIGHT_KG, SUV_TYPES, Normalisers, body_normalisers
from .header import TAG_NAMES, SuvHeader, suv_header_from_dataset
from .result import SuvOverrides, SuvParameters, SuvResult, not_applicable
from .timing import Collector, DecayOutcome, choose, decayed_doses, first_value, resolve_dose

# SUVType (0054,1006) → the type its values are. DICOM's LBM names no formula; James 128 is assumed.
SUV_TYPE_OF_HEADER = {"BW": "SUVbw", "LBM": "SULjames", "BSA": "SUVbsa", "IBW": "SUVibw"}
PHILIPS_BQML_NOTE = ("Philips BQML: vendors disagree on the START reference time (differences of tens of percent "
                     "have been reported); the QIBA rule is used: SeriesDate/Time, or the back-computation when "
                     "SeriesTime is after the first acquisition")


def _headers_from(items: Sequence[SuvHeader | Any]) -> list[SuvHeader]:
    return [item if isinstance(item, SuvHeader) else suv_header_from_dataset(item) for item in items]


def _uniform(values: Sequence[float]) -> float | None:
    first = values[0]
    return first if all(math.isclose(value, first, rel_tol=1e-12) for value in values) else None


def _correction_check(headers: Sequence[SuvHeader], raw_units: str | None) -> SuvResult | None:
    first = headers[0]
    decay_correction = (first.decay_correction or "").upper()
    if first.corrected_image is None:
        return not_applicable(f"{TAG_NAMES['corrected_image']} is absent, so attenuation and decay correction "
                              "cannot be confirmed; values stay in their raw units", raw_units)
    corrections = set(first.corrected_image)
    if "ATTN" not in corrections:
        return not_applicable(f"image is not attenuation corrected (CorrectedImage = "
                              f"{'/'.join(first.corrected_image) or 'empty'}); values stay in their raw units",
                              raw_units)
    if "DECY" not in corrections and decay_correction != "NONE":
        return not_applicable(f"image is not decay corrected (CorrectedImage = {'/'.join(first.corrected_image)}, "
                              f"DecayCorrection = {decay_correction or 'absent'}); values stay in their raw units",
                              raw_units)
    return None


def _body(slices: Sequence[SuvHeader], overrides: SuvOverrides, collect: Collector) -> Normalisers:
    weight = choose(overrides.patient_weight_kg, first_value(slices, "patient_weight_kg"), "weight", collect)
    height = choose(overrides.patient_height_m, first_value(slices, "patient_size_m"), "height", collect)
    sex = choose(overrides.patient_sex, first_value(slices, "patient_sex"), "sex", collect)
    normalisers = body_normalisers(weight, height, sex)
    if height is not None and "SUVbsa" not in normalisers.values and "stored in cm" in normalisers.unavailable.get(
            "SUVbsa", ""):
        collect.warnings.append(f"{TAG_NAMES['height']} = {height:g} is not a plausible height in m (stored in cm?)")
    return normalisers


def _typed(source: str, normalisers: Normalisers) -> tuple[str, float, dict[str, float], dict[str, str]]:
    """(stored type, source → stored multiplier, conversions from stored, reasons for the unavailable)."""
    stored = "SUVbw" if normalisers.ratio("SUVbw", source) is not None else source
    to_stored = normalisers.ratio(stored, source) or 1.0
    conversions = {stored: 1.0}
    unavailable: dict[str, str] = {}
    for name in SUV_TYPES:
        if name == stored:
            continue
        ratio = normalisers.ratio(name, stored)
        if ratio is not None:
            conversions[name] = ratio
        elif name in normalisers.unavailable:
            unavailable[name] = normalisers.unavailable[name]
        else:
            unavailable[name] = (f"values are {stored} and {normalisers.unavailable.get(stored, 'its normaliser')} "
                                 "is needed to convert them")
    return stored, to_stored, conversions, unavailable


def _parameters(normalisers: Normalisers, collect: Collector, **values: Any) -> SuvParameters:
    return SuvParameters(lean_body_mass_kg=normalisers.lean_body_mass_kg,
                         lean_body_mass_james_kg=normalisers.lean_body_mass_james_kg,
                         body_surface_area_m2=normalisers.body_surface_area_m2,
                         ideal_body_weight_kg=normalisers.ideal_body_weight_kg, sources=collect.sources, **values)


def compute_suv_factors(headers: Sequence[SuvHeader | Any], overrides: SuvOverrides | None = None) -> SuvResult:
    """SUV factors (every type the header allows) for one PET series.

    ``headers``: SuvHeader records or pydicom Datasets, one per slice, in the slice order wanted for
    ``slice_factors``. ``overrides``: manager-supplied values that replace header values.
    """
    overrides = overrides or SuvOverrides()
    slices = _headers_from(headers)
    if not slices:
        return not_applicable("no PET slices given", None)
    raw_units = (slices[0].units or "").upper() or None
    if len({(header.units or "").upper() for header in slices}) > 1:
        return not_applicable(f"slices disagree on {TAG_NAMES['units']}", raw_units)
    failed = _correction_check(slices, raw_units)
    if failed is not None:
        return failed
    if raw_units in ("GML", "CM2ML"):
        return _already_suv(slices, overrides, raw_units)
    if raw_units == "CNTS":
        return _cnts_result(slices, overrides)
    if raw_units == "BQML":
        return _bqml_result(slices, overrides, activity_scales=None)
    return not_applicable(f"{TAG_NAMES['units']} = {raw_units or 'absent'}: only BQML, CNTS (Philips), GML and "
                          "CM2ML can become SUV", raw_units)


def _already_suv(slices: Sequence[SuvHeader], overrides: SuvOverrides, raw_units: str) -> SuvResult:
    collect = Collector()
    header_type = (slices[0].suv_type or "").upper()
    if raw_units == "CM2ML":
        source = "SUVbsa"
        if header_type and header_type != "BSA":
            collect.warnings.append(f"Units CM2ML with {TAG_NAMES['suv_type']} {header_type}: CM2ML is only "
                                    "SUVbsa, so the values are taken as SUVbsa")
        collect.rule_parts.append("Units CM2ML: values are SUVbsa (cm²/ml)")
    else:
        if header_type and header_type not in SUV_TYPE_OF_HEADER:
            return not_applicable(f"Units GML with {TAG_NAMES['suv_type']} = {header_type}: not a known SUV type "
                                  f"({', '.join(SUV_TYPE_OF_HEADER)}), so the values cannot be labelled", raw_units)
        source = SUV_TYPE_OF_HEADER[header_type or "BW"]
        collect.rule_parts.append(f"Units GML: values are {source}" + (
            "" if header_type else f" ({TAG_NAMES['suv_type']} absent: BW, as DICOM defines)"))
        if header_type == "LBM":
            collect.warnings.append("SUVType LBM names no formula; James (128) lean body mass is assumed for "
                                    "converting to other SUV types")
    normalisers = _body(slices, overrides, collect)
    stored, to_stored, conversions, unavailable = _typed(source, normalisers)
    if stored != source:
        collect.rule_parts.append(f"converted to {stored} = {source} × {to_stored:.6g} (ratio of normalisers)")
    elif source != "SUVbw":
        collect.warnings.append(f"values are {source}, kept and labelled as such (not SUVbw): "
                                f"{unavailable.get('SUVbw', '')}")
    factors = (to_stored,) * len(slices)
    return SuvResult(status="ok", reason=f"values are already SUV (Units {raw_units}, {source})",
                     units=SUV_TYPES[stored]["units"], raw_units=raw_units, rule=" ; ".join(collect.rule_parts),
                     factor=to_stored, slice_factors=factors, suv_type=stored, conversions=conversions,
                     unavailable=unavailable, warnings=tuple(dict.fromkeys(collect.warnings)),
                     parameters=_parameters(normalisers, collect, units=raw_units,
                                            decay_correction=slices[0].decay_correction,
                                            patient_weight_kg=first_value(slices, "patient_weight_kg"),
                                            patient_height_m=first_value(slices, "patient_size_m"),
                                            patient_sex=first_value(slices, "patient_sex")))


def _cnts_result(slices: Sequence[SuvHeader], overrides: SuvOverrides) -> SuvResult:
    suv_scales = [header.philips_suv_scale_factor for header in slices]
    if all(scale is not None and scale > 0 for scale in suv_scales):
        factors = tuple(float(scale) for scale in suv_scales if scale is not None)
        collect = Collector()
        normalisers = _body(slices, overrides, collect)
        stored, _, conversions, unavailable = _typed("SUVbw", normalisers)
        return SuvResult(
            status="ok", reason="Philips counts scaled by the private SUV scale factor", units="g/ml",
            raw_units="CNTS", rule="CNTS × Philips private SUV scale factor (7053,1000), taken as SUVbw",
            factor=_uniform(factors), slice_factors=factors, suv_type=stored, conversions=conversions,
            unavailable=unavailable, warnings=tuple(collect.warnings),
            parameters=_parameters(normalisers, collect, units="CNTS", decay_correction=slices[0].decay_correction,
                                   patient_weight_kg=first_value(slices, "patient_weight_kg"),
                                   patient_height_m=first_value(slices, "patient_size_m"),
                                   patient_sex=first_value(slices, "patient_sex")))
    activity_scales = [header.philips_activity_concentration_scale_factor for header in slices]
    if all(scale is not None and scale > 0 for scale in activity_scales):
        return _bqml_result(slices, overrides, activity_scales=[float(s) for s in activity_scales if s])
    return not_applicable("Units CNTS without the Philips private SUV scale factor (7053,1000) or activity "
                          "concentration scale factor (7053,1009) on every slice: counts cannot be converted to "
                          "Bq/ml", "CNTS")


def _resolve_weight(slices: Sequence[SuvHeader], overrides: SuvOverrides, collect: Collector) -> float | None:
    weight = choose(overrides.patient_weight_kg, first_value(slices, "patient_weight_kg"), "weight", collect)
    if weight is None:
        collect.lack("weight")
        return None
    if not MIN_PLAUSIBLE_WEIGHT_KG <= weight <= MAX_PLAUSIBLE_WEIGHT_KG:
        collect.lack("weight", f"= {weight:g} is not a plausible weight in kg "
                               f"(expected {MIN_PLAUSIBLE_WEIGHT_KG:g}–{MAX_PLAUSIBLE_WEIGHT_KG:g})")
        return None
    return float(weight)


def _bqml_result(slices: Sequence[SuvHeader], overrides: SuvOverrides,
                 activity_scales: Sequence[float] | None) -> SuvResult:
    """BQML (or Philips counts converted to Bq/ml by activity_scales) → body-weight SUV and the other types."""
    raw_units = "CNTS" if activity_scales is not None else "BQML"
    decay_correction = (slices[0].decay_correction or "").upper()
    if decay_correction not in ("START", "ADMIN", "NONE"):
        return not_applicable(f"{TAG_NAMES['decay_correction']} = {decay_correction or 'absent'}; only START, "
                              "ADMIN and NONE are understood", raw_units)
    collect = Collector()
    collect.rule_parts.append("SUVbw = value × weight[kg] × 1000 / decayed dose[Bq]")
    if activity_scales is not None:
        collect.rule_parts.append("CNTS × Philips activity concentration scale factor (7053,1009) → Bq/ml")
    manufacturer = first_value(slices, "manufacturer") or ""
    if "philips" in manufacturer.lower() and activity_scales is None and decay_correction == "START":
        collect.warnings.append(PHILIPS_BQML_NOTE)

    weight = _resolve_weight(slices, overrides, collect)
    dose = resolve_dose(slices, overrides, collect)
    decay = decayed_doses(slices, overrides, decay_correction, dose, collect)
    if collect.problems or decay is None or weight is None or dose is None:
        return SuvResult(status="needs_parameters",
                         reason="SUV needs: " + "; ".join(collect.problems or ["scan and injection times"]),
                         units=raw_units, raw_units=raw_units, rule=" ; ".join(collect.rule_parts),
                         missing=tuple(dict.fromkeys(collect.missing)), warnings=tuple(collect.warnings),
                         parameters=SuvParameters(units=raw_units, decay_correction=decay_correction,
                                                  sources=collect.sources))
    if not all(math.isfinite(remaining) and remaining > 0 for remaining in decay.decayed_doses):
        return SuvResult(status="needs_parameters", units=raw_units, raw_units=raw_units,
                         reason=f"SUV needs: a decayed dose that is a positive number of Bq, not "
                                f"{min(decay.decayed_doses):g} (uptake {decay.uptake_s or 0:g} s, half-life "
                                f"{decay.half_life_s or 0:g} s); check {TAG_NAMES['half_life']} and the times",
                         rule=" ; ".join(collect.rule_parts), missing=(TAG_NAMES["half_life"], TAG_NAMES["injection"]),
                         warnings=tuple(collect.warnings))
    bw_factors = [weight * 1000.0 / remaining for remaining in decay.decayed_doses]
    if activity_scales is not None:
        bw_factors = [factor * scale for factor, scale in zip(bw_factors, activity_scales, strict=True)]
    factors = tuple(bw_factors)
    normalisers = _body(slices, overrides, collect)
    stored, _, conversions, unavailable = _typed("SUVbw", normalisers)
    return SuvResult(
        status="ok",
        reason="body-weight SUV computed from the DICOM header"
        + (" and supplied parameters" if "supplied" in collect.sources.values() else ""),
        units="g/ml", raw_units=raw_units, rule=" ; ".join(collect.rule_parts), factor=_uniform(factors),
        slice_factors=factors, suv_type=stored, conversions=conversions, unavailable=unavailable,
        parameters=_parameters(normalisers, collect, units=raw_units, decay_correction=decay_correction,
                               patient_weight_kg=weight,
                               patient_height_m=choose(overrides.patient_height_m,
                                                       first_value(slices, "patient_size_m"), "height", collect),
                               patient_sex=choose(overrides.patient_sex, first_value(slices, "patient_sex"), "sex",
                                                  collect),
                               injected_dose_bq=dose, half_life_s=decay.half_life_s,
                               injection_datetime=_injection(decay, overrides), scan_datetime=decay.reference,
                               uptake_time_s=decay.uptake_s, decayed_dose_bq=decay.decayed_doses[0],
                               frame_duration_s=decay.frame_duration_s),
        warnings=tuple(dict.fromkeys(collect.warnings)),
    )


def _injection(decay: DecayOutcome, overrides: SuvOverrides) -> datetime | None:
    if decay.reference is not None and decay.uptake_s is not None:
        return decay.reference - timedelta(seconds=decay.uptake_s)
    return overrides.injection_datetime


def compute_suv_from_parameters(*, patient_weight_kg: float, injected_dose_bq: float, injection_datetime: datetime,
                                half_life_s: float, scan_datetime: datetime, patient_height_m: float | None = None,
                                patient_sex: str | None = None, slice_count: int = 1) -> SuvResult:
    """SUV factor from parameters typed in by a manager for a BQML, START-decay-corrected series.

    Goes through the same checks as header values (plausibility, injection before scan).
    """
    header = SuvHeader(units="BQML", decay_correction="START", corrected_image=("ATTN", "DECY"))
    overrides = SuvOverrides(patient_weight_kg=patient_weight_kg, patient_height_m=patient_height_m,
                             patient_sex=patient_sex, injected_dose_bq=injected_dose_bq,
                             injection_datetime=injection_datetime, half_life_s=half_life_s,
                             scan_datetime=scan_datetime)
    return compute_suv_factors([header] * max(1, slice_count), overrides)
