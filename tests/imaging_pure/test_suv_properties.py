"""Properties of the SUV computation over generated headers (Hypothesis)."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.imaging.suv import (
    SUV_TYPES,
    SuvHeader,
    bsa_dubois,
    compute_suv_factors,
    ibw_devine,
    lbm_james,
    lbm_janmahasatian,
)

F18 = 6586.2


def _da(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def _tm(moment: datetime) -> str:
    return moment.strftime("%H%M%S.%f")


def header(injection: datetime, scan: datetime, *, decay: str = "START", series_shift_s: float = 0.0,
           start_time_only: bool = False, frame_s: float = 120.0, **changes) -> list[SuvHeader]:
    """Two frames (beds) of one series; series_shift_s > 0 makes it a post-processed series."""
    series = scan + timedelta(seconds=series_shift_s)
    slices = []
    for bed in range(2):
        start = scan + timedelta(seconds=bed * frame_s)
        x = math.log(2) / F18 * frame_s
        average = math.log(x / -math.expm1(-x)) / (math.log(2) / F18)
        slices.append(SuvHeader(
            units="BQML", decay_correction=decay,
            corrected_image=("ATTN", "SCAT") if decay == "NONE" else ("ATTN", "DECY"),
            patient_weight_kg=75.0, patient_size_m=1.78, patient_sex="F",
            series_date=_da(series), series_time=_tm(series), acquisition_date=_da(start), acquisition_time=_tm(start),
            radionuclide_total_dose=350e6, radionuclide_half_life=F18,
            radiopharmaceutical_start_datetime=None if start_time_only else injection.strftime("%Y%m%d%H%M%S.%f"),
            radiopharmaceutical_start_time=_tm(injection),
            frame_reference_time_ms=(bed * frame_s + average) * 1000.0, actual_frame_duration_ms=frame_s * 1000.0,
        ))
    return [replace(item, **changes) for item in slices]


maybe_float = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=64))
moments = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1))


@settings(max_examples=300, deadline=None)
@given(weight=maybe_float, height=maybe_float, sex=st.sampled_from(["M", "F", "O", "", "X", None]),
       dose=maybe_float, half_life=maybe_float, uptake_s=st.floats(-7200, 5 * 86400),
       decay=st.sampled_from(["START", "ADMIN", "NONE", "OTHER"]),
       units=st.sampled_from(["BQML", "GML", "CM2ML", "CNTS", "PROPCNTS"]),
       suv_type=st.sampled_from([None, "BW", "LBM", "BSA", "IBW", "ZZZ"]), scan=moments)
def test_factors_are_positive_and_finite_or_refused_with_a_reason(weight, height, sex, dose, half_life, uptake_s,
                                                                    decay, units, suv_type, scan) -> None:
    slices = header(scan - timedelta(seconds=uptake_s), scan, decay=decay, units=units, suv_type=suv_type,
                    patient_weight_kg=weight, patient_size_m=height, patient_sex=sex,
                    radionuclide_total_dose=dose, radionuclide_half_life=half_life)
    result = compute_suv_factors(slices)
    if result.ok:
        assert result.slice_factors and all(math.isfinite(f) and f > 0 for f in result.slice_factors)
        assert result.suv_type in SUV_TYPES and result.conversions[result.suv_type] == 1.0
        assert all(math.isfinite(m) and m > 0 for m in result.conversions.values())
        assert set(result.conversions) | set(result.unavailable) == set(SUV_TYPES)
        assert all(result.unavailable.values())
    else:
        assert result.status in ("needs_parameters", "not_applicable") and result.reason
        assert result.slice_factors is None
        if result.status == "needs_parameters":
            assert result.missing


@settings(max_examples=300, deadline=None)
@given(weight=st.floats(20, 250), height=st.floats(1.0, 2.3), sex=st.sampled_from(["M", "F"]),
       uptake_s=st.floats(600, 20000))
def test_suv_types_are_mutually_consistent(weight, height, sex, uptake_s) -> None:
    scan = datetime(2024, 6, 1, 12, 0)
    result = compute_suv_factors(header(scan - timedelta(seconds=uptake_s), scan, patient_weight_kg=weight,
                                        patient_size_m=height, patient_sex=sex))
    assert result.ok and result.suv_type == "SUVbw"
    expected = {"SUL": lbm_janmahasatian(weight, height, sex) / weight,
                "SULjames": lbm_james(weight, height, sex) / weight,
                "SUVbsa": bsa_dubois(weight, height) * 1e4 / (weight * 1000.0),
                "SUVibw": ibw_devine(height, sex) / weight}
    for name, ratio in expected.items():
        if ratio > 0:
            assert math.isclose(result.conversions[name], ratio, rel_tol=1e-12), name
            assert math.isclose(result.factors_array(name)[0] / result.factors_array("SUVbw")[0], ratio,
                                rel_tol=1e-12)
        else:  # James and Devine give non-positive masses at the extremes: refused, never used
            assert name not in result.conversions and "non-positive" in result.unavailable[name]


@settings(max_examples=300, deadline=None)
@given(shift=st.timedeltas(min_value=timedelta(days=-800), max_value=timedelta(days=800)),
       uptake_s=st.floats(300, 6 * 3600), hour=st.floats(0, 24 * 3600 - 1),
       decay=st.sampled_from(["START", "NONE"]), series_shift_s=st.sampled_from([0.0, 5400.0]),
       start_time_only=st.booleans())
def test_shifting_every_timestamp_leaves_the_suv_unchanged(shift, uptake_s, hour, decay, series_shift_s,
                                                           start_time_only) -> None:
    # Times are written to the microsecond, so the shift is too; the scan may start on either side of midnight.
    shift = timedelta(days=shift.days, seconds=shift.seconds, microseconds=shift.microseconds)
    scan = datetime(2024, 3, 5) + timedelta(seconds=round(hour, 6))
    injection = scan - timedelta(seconds=round(uptake_s, 6))
    options = {"decay": decay, "series_shift_s": series_shift_s, "start_time_only": start_time_only}
    base = compute_suv_factors(header(injection, scan, **options))
    moved = compute_suv_factors(header(injection + shift, scan + shift, **options))
    assert base.ok and moved.ok, (base.reason, moved.reason)
    for before, after in zip(base.slice_factors, moved.slice_factors, strict=True):
        assert math.isclose(before, after, rel_tol=1e-9)
    assert math.isclose(base.parameters.uptake_time_s, moved.parameters.uptake_time_s, abs_tol=1e-6)
