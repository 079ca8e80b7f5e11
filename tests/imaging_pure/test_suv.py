"""SUV factors: hand-computed references, decay rules, vendor variants, missing parameters."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, time, timedelta
from pathlib import Path

import numpy as np
import pytest

from backend.imaging.dicom_series import load_series_from_sources
from backend.imaging.suv import (
    SuvHeader,
    SuvOverrides,
    bsa_dubois,
    compute_suv_factors,
    compute_suv_from_parameters,
    ibw_devine,
    identify_radionuclide,
    lbm_james,
    lbm_janmahasatian,
    parse_dicom_datetime,
    parse_dicom_time,
)
from worker.phantoms import make_phantom, write_dicom_series

F18_HALF_LIFE = 6586.2

# 75 kg, 370 MBq FDG injected at 10:00:00, series (and first acquisition) at 11:00:00: 60 min uptake.
REFERENCE = SuvHeader(
    units="BQML",
    decay_correction="START",
    corrected_image=("NORM", "ATTN", "DECY", "SCAT"),
    patient_weight_kg=75.0,
    patient_size_m=1.80,
    patient_sex="M",
    series_date="20240305",
    series_time="110000",
    acquisition_date="20240305",
    acquisition_time="110000",
    radiopharmaceutical="Fluorodeoxyglucose",
    radionuclide="^18^Fluorine",
    radionuclide_total_dose=370e6,
    radionuclide_half_life=F18_HALF_LIFE,
    radiopharmaceutical_start_datetime="20240305100000",
    radiopharmaceutical_start_time="100000",
)


def expected_factor(
    weight_kg: float, dose_bq: float, uptake_s: float, half_life_s: float = F18_HALF_LIFE
) -> float:
    return weight_kg * 1000.0 / (dose_bq * math.exp(-math.log(2) * uptake_s / half_life_s))


def test_hand_computed_body_weight_factor() -> None:
    result = compute_suv_factors([REFERENCE] * 3)
    assert result.status == "ok" and result.units == "g/ml" and result.raw_units == "BQML"
    factor = expected_factor(75.0, 370e6, 3600.0)
    assert factor == pytest.approx(75_000 / (370e6 * 0.6846), rel=1e-3)  # decay to 68.5 % after 1 h
    assert result.factor == pytest.approx(factor, rel=1e-12)
    assert result.slice_factors == pytest.approx((factor,) * 3, rel=1e-12)
    assert not result.varies_per_slice
    assert result.parameters.uptake_time_s == 3600.0
    assert result.parameters.decayed_dose_bq == pytest.approx(370e6 * 0.5 ** (3600 / F18_HALF_LIFE))
    assert "SeriesDate/SeriesTime" in result.rule and "RadiopharmaceuticalStartDateTime" in result.rule
    # 5 kBq/ml (a typical liver value) is SUV ≈ 1.48 here.
    assert float(result.apply(np.full((3, 2, 2), 5000.0))[0, 0, 0]) == pytest.approx(5000 * factor, rel=1e-6)


def test_admin_decay_correction_has_no_decay_term() -> None:
    result = compute_suv_factors([replace(REFERENCE, decay_correction="ADMIN")])
    assert result.ok and result.factor == pytest.approx(75_000 / 370e6)
    assert "ADMIN" in result.rule


def test_none_decay_correction_decays_to_each_frame_start_and_averages_over_the_frame() -> None:
    corrected = ("ATTN", "SCAT")  # no DECY: pixels are not decay corrected
    slices = [
        replace(REFERENCE, decay_correction="NONE", corrected_image=corrected, acquisition_time=moment,
                actual_frame_duration_ms=120_000.0)
        for moment in ("110000", "110200", "110400")
    ]
    result = compute_suv_factors(slices)
    assert result.ok and result.varies_per_slice and result.factor is None
    decay_constant = math.log(2) / F18_HALF_LIFE
    in_frame = (1 - math.exp(-decay_constant * 120.0)) / (decay_constant * 120.0)
    expected = [expected_factor(75.0, 370e6, 3600.0 + 120.0 * k) / in_frame for k in range(3)]
    assert result.slice_factors == pytest.approx(expected, rel=1e-12)
    values = np.ones((3, 1, 1))
    np.testing.assert_allclose(result.apply(values).ravel(), expected, rtol=1e-6)
    without_duration = compute_suv_factors([replace(slices[0], actual_frame_duration_ms=None)])
    assert without_duration.status == "needs_parameters"
    assert "ActualFrameDuration (0018,1242) on every slice" in without_duration.missing


def test_not_attenuation_corrected_has_no_suv() -> None:
    result = compute_suv_factors([replace(REFERENCE, corrected_image=("DECY", "NORM"))])
    assert result.status == "not_applicable" and "not attenuation corrected" in result.reason
    assert result.units == "BQML" and result.factor is None
    assert compute_suv_factors([replace(REFERENCE, corrected_image=None)]).status == "not_applicable"
    not_decay = compute_suv_factors([replace(REFERENCE, corrected_image=("ATTN",))])
    assert not_decay.status == "not_applicable" and "not decay corrected" in not_decay.reason


@pytest.mark.parametrize(
    ("change", "tag"),
    [
        ({"patient_weight_kg": None}, "PatientWeight (0010,1030)"),
        ({"patient_weight_kg": 0.0}, "PatientWeight (0010,1030)"),
        ({"radionuclide_total_dose": None}, "RadionuclideTotalDose (0018,1074)"),
        (
            {"radiopharmaceutical_start_datetime": None, "radiopharmaceutical_start_time": None},
            "RadiopharmaceuticalStartTime",
        ),
        ({"series_date": None, "series_time": None, "acquisition_time": None}, "SeriesDate/SeriesTime"),
        (
            {"radionuclide_half_life": None, "radionuclide": None, "radiopharmaceutical": "tracer X"},
            "RadionuclideHalfLife",
        ),
    ],
)
def test_missing_parameters_are_named(change: dict, tag: str) -> None:
    result = compute_suv_factors([replace(REFERENCE, **change)])
    assert result.status == "needs_parameters"
    assert any(tag in missing for missing in result.missing), result.missing
    assert tag in result.reason
    assert result.units == "BQML" and result.slice_factors is None


def test_dose_stored_in_mbq_is_converted_with_a_warning_and_an_ambiguous_one_refused() -> None:
    result = compute_suv_factors([replace(REFERENCE, radionuclide_total_dose=370.0)])
    assert result.ok and result.factor == pytest.approx(expected_factor(75.0, 370e6, 3600.0))
    assert any("read as MBq" in warning and "3.7e+08 Bq" in warning for warning in result.warnings)
    assert result.parameters.sources["dose"] == "header (MBq converted to Bq)"
    ambiguous = compute_suv_factors([replace(REFERENCE, radionuclide_total_dose=370e3)])
    assert ambiguous.status == "needs_parameters"
    assert "RadionuclideTotalDose (0018,1074)" in ambiguous.missing and "MBq" in ambiguous.reason
    fixed = compute_suv_factors(
        [replace(REFERENCE, radionuclide_total_dose=370e3)], SuvOverrides(injected_dose_bq=370e6)
    )
    assert fixed.ok and fixed.factor == pytest.approx(expected_factor(75.0, 370e6, 3600.0))
    assert fixed.parameters.sources["dose"] == "supplied"


def test_overrides_supply_missing_weight_and_times() -> None:
    header = replace(
        REFERENCE,
        patient_weight_kg=None,
        radiopharmaceutical_start_datetime=None,
        radiopharmaceutical_start_time=None,
    )
    overrides = SuvOverrides(patient_weight_kg=80.0, injection_datetime=datetime(2024, 3, 5, 9, 50))
    result = compute_suv_factors([header], overrides)
    assert result.ok
    assert result.factor == pytest.approx(expected_factor(80.0, 370e6, 4200.0))
    assert result.parameters.sources["weight"] == "supplied" and "supplied" in result.reason
    assert SuvOverrides.from_dict(json.loads(json.dumps(overrides.to_dict()))) == overrides


def test_half_life_falls_back_to_the_named_nuclide_with_a_warning() -> None:
    result = compute_suv_factors([replace(REFERENCE, radionuclide_half_life=None)])
    assert result.ok and result.factor == pytest.approx(expected_factor(75.0, 370e6, 3600.0))
    assert any("F-18" in warning for warning in result.warnings)
    assert identify_radionuclide("^68^Gallium") == "Ga-68"
    assert identify_radionuclide("Fluorine-18") == "F-18"
    assert identify_radionuclide(None, "FDG") == "F-18"
    assert identify_radionuclide("unknown") is None


def test_midnight_crossing_with_start_time_only() -> None:
    header = replace(
        REFERENCE,
        series_date="20240306",
        series_time="004500",
        acquisition_date="20240306",
        acquisition_time="004500",
        radiopharmaceutical_start_datetime=None,
        radiopharmaceutical_start_time="234000",
    )
    result = compute_suv_factors([header])
    assert result.ok
    assert result.parameters.uptake_time_s == 65 * 60
    assert result.parameters.injection_datetime == datetime(2024, 3, 5, 23, 40)
    assert any("midnight" in warning for warning in result.warnings)
    assert result.factor == pytest.approx(expected_factor(75.0, 370e6, 3900.0))


def test_injection_after_scan_needs_parameters() -> None:
    result = compute_suv_factors([replace(REFERENCE, radiopharmaceutical_start_datetime="20240305120000")])
    assert result.status == "needs_parameters" and "after the scan reference time" in result.reason


def test_post_processed_series_uses_ge_private_then_earliest_acquisition_with_a_warning() -> None:
    late = replace(REFERENCE, series_time="130000")  # series written 2 h after the acquisition
    ge = compute_suv_factors([replace(late, ge_scan_datetime="20240305110500")])
    assert ge.factor == pytest.approx(expected_factor(75.0, 370e6, 3900.0))
    assert "0009,100D" in ge.rule
    earliest = compute_suv_factors([late, replace(late, acquisition_time="110300")])
    assert earliest.factor == pytest.approx(expected_factor(75.0, 370e6, 3600.0))
    assert "earliest AcquisitionDate/Time" in earliest.rule
    assert any("late by up to half a frame" in warning for warning in earliest.warnings)


def test_sul_uses_janmahasatian_lean_body_mass() -> None:
    male = compute_suv_factors([REFERENCE])
    bmi = 75.0 / 1.80**2
    lbm_male = 9270 * 75.0 / (6680 + 216 * bmi)
    assert male.parameters.lean_body_mass_kg == pytest.approx(lbm_male)
    assert male.conversions["SUL"] == pytest.approx(lbm_male / 75.0)
    assert male.factors_array("SUL")[0] == pytest.approx(male.factor * lbm_male / 75.0)
    female = compute_suv_factors(
        [replace(REFERENCE, patient_sex="F", patient_size_m=1.65, patient_weight_kg=62.0)]
    )
    bmi_f = 62.0 / 1.65**2
    lbm_female = 9270 * 62.0 / (8780 + 244 * bmi_f)
    assert female.factors_array("SUL")[0] == pytest.approx(expected_factor(62.0, 370e6, 3600.0) * lbm_female / 62.0)
    no_height = compute_suv_factors([replace(REFERENCE, patient_size_m=None)])
    assert no_height.ok and "SUL" not in no_height.conversions
    assert no_height.unavailable["SUL"] == "PatientSize (0010,1020) missing or not a plausible height in m"
    in_cm = compute_suv_factors([replace(REFERENCE, patient_size_m=180.0)])
    assert "SUL" not in in_cm.conversions and any("stored in cm" in warning for warning in in_cm.warnings)


def test_body_size_helpers_follow_their_formulas() -> None:
    assert lbm_janmahasatian(80, 1.75, "M") == pytest.approx(9270 * 80 / (6680 + 216 * 80 / 1.75**2))
    assert lbm_janmahasatian(60, 1.60, "F") == pytest.approx(9270 * 60 / (8780 + 244 * 60 / 1.60**2))
    assert lbm_james(80, 1.75, "M") == pytest.approx(1.10 * 80 - 128 * (80 / 175) ** 2)
    assert lbm_james(80, 1.75, "M", male_coefficient=120) == pytest.approx(1.10 * 80 - 120 * (80 / 175) ** 2)
    assert lbm_james(60, 1.60, "F") == pytest.approx(1.07 * 60 - 148 * (60 / 160) ** 2)
    assert bsa_dubois(70, 1.70) == pytest.approx(0.007184 * 70**0.425 * 170**0.725)
    assert bsa_dubois(70, 1.70) == pytest.approx(1.81, abs=0.01)
    assert ibw_devine(1.80, "M") == pytest.approx(48.0 + 1.06 * 28)
    assert ibw_devine(1.60, "F") == pytest.approx(45.5 + 0.91 * 8)
    with pytest.raises(ValueError):
        lbm_james(80, 1.75, "O")


def test_manual_parameters_path() -> None:
    injection = datetime(2024, 3, 5, 10, 0)
    result = compute_suv_from_parameters(
        patient_weight_kg=75.0,
        injected_dose_bq=370e6,
        injection_datetime=injection,
        half_life_s=F18_HALF_LIFE,
        scan_datetime=injection + timedelta(minutes=60),
        slice_count=4,
    )
    assert result.ok and len(result.slice_factors or ()) == 4
    assert result.factor == pytest.approx(expected_factor(75.0, 370e6, 3600.0))
    assert "supplied" in result.rule
    backwards = compute_suv_from_parameters(
        patient_weight_kg=75.0,
        injected_dose_bq=370e6,
        injection_datetime=injection,
        half_life_s=F18_HALF_LIFE,
        scan_datetime=injection - timedelta(minutes=5),
    )
    assert backwards.status == "needs_parameters"
    implausible = compute_suv_from_parameters(
        patient_weight_kg=75.0,
        injected_dose_bq=370.0,
        injection_datetime=injection,
        half_life_s=F18_HALF_LIFE,
        scan_datetime=injection + timedelta(hours=1),
    )
    assert implausible.status == "needs_parameters" and "MBq" in implausible.reason


def test_gml_is_passed_through() -> None:
    result = compute_suv_factors([replace(REFERENCE, units="GML", patient_weight_kg=None)])
    assert result.ok and result.factor == 1.0 and "GML" in result.rule and result.units == "g/ml"
    assert result.suv_type == "SUVbw"


def test_unknown_units_have_no_suv() -> None:
    result = compute_suv_factors([replace(REFERENCE, units="PROPCNTS")])
    assert result.status == "not_applicable" and "PROPCNTS" in result.reason


def test_philips_counts_with_private_suv_factor() -> None:
    header = replace(REFERENCE, units="CNTS", manufacturer="Philips", philips_suv_scale_factor=0.00042)
    result = compute_suv_factors([header, header])
    assert result.ok and result.factor == pytest.approx(0.00042)
    assert "7053,1000" in result.rule
    activity_only = replace(REFERENCE, units="CNTS", philips_activity_concentration_scale_factor=2.5)
    converted = compute_suv_factors([activity_only])
    assert converted.factor == pytest.approx(2.5 * expected_factor(75.0, 370e6, 3600.0))
    assert "7053,1009" in converted.rule
    bare = compute_suv_factors([replace(REFERENCE, units="CNTS")])
    assert bare.status == "not_applicable" and "7053,1000" in bare.reason


def test_results_and_headers_are_json_round_trippable() -> None:
    result = compute_suv_factors([REFERENCE])
    text = json.dumps(result.to_dict())
    assert json.loads(text)["parameters"]["injection_datetime"] == "2024-03-05T10:00:00"
    assert SuvHeader.from_dict(json.loads(json.dumps(REFERENCE.to_dict()))) == REFERENCE


def test_dicom_date_time_parsing() -> None:
    assert parse_dicom_datetime("20240305101530.250000+0100") == datetime(2024, 3, 5, 10, 15, 30, 250000)
    assert parse_dicom_datetime("202403051015") == datetime(2024, 3, 5, 10, 15)
    assert parse_dicom_time("10:15:30.5") == time(10, 15, 30, 500000)
    assert parse_dicom_time("1015") == time(10, 15)
    assert parse_dicom_time("garbage") is None
    assert parse_dicom_datetime("") is None


# ----------------------------------------------------------------------------- end to end via DICOM files


def _suv_from_files(directory: Path, **options):
    phantom = make_phantom(seed=8, n_lesions=2, **options.pop("phantom", {}))
    written = write_dicom_series(phantom, directory, write_ct=False, **options)
    loaded = load_series_from_sources(written.pet_files)
    return phantom, loaded, compute_suv_factors(loaded.slice_headers)


def _assert_matches(phantom, loaded, result) -> None:
    assert result.ok, result.reason
    np.testing.assert_allclose(result.apply(loaded.array), phantom.suv, atol=1e-3)


@pytest.mark.parametrize(
    "options",
    [
        {"decay_correction": "ADMIN"},
        {"units": "CNTS", "vendor": "Philips", "philips_scale_tags": ("suv",)},
        {"units": "CNTS", "vendor": "Philips", "philips_scale_tags": ("activity",)},
        {"units": "GML"},
        {"vendor": "GE", "series_time_offset_s": 3600.0},
        {"series_time_offset_s": 3600.0},
        {"vendor": "Siemens", "phantom": {"tracer": "PSMA"}},
    ],
    ids=[
        "admin",
        "philips-suv-tag",
        "philips-activity-tag",
        "gml",
        "ge-post-processed",
        "post-processed",
        "psma",
    ],
)
def test_written_variants_give_the_phantom_suv(options: dict, tmp_path: Path) -> None:
    phantom, loaded, result = _suv_from_files(tmp_path, **options)
    _assert_matches(phantom, loaded, result)


def test_midnight_crossing_end_to_end(tmp_path: Path) -> None:
    phantom, loaded, result = _suv_from_files(
        tmp_path,
        phantom={"injection_datetime": datetime(2024, 3, 5, 23, 30), "uptake_time_s": 3900},
        omit_tags=("RadiopharmaceuticalStartDateTime",),
    )
    assert loaded.metadata.series_date == "20240306"
    _assert_matches(phantom, loaded, result)
    assert result.parameters.uptake_time_s == 3900


def test_missing_weight_end_to_end(tmp_path: Path) -> None:
    _, _, result = _suv_from_files(tmp_path, omit_tags=("PatientWeight",))
    assert result.status == "needs_parameters" and "PatientWeight (0010,1030)" in result.missing


def test_dose_in_mbq_end_to_end(tmp_path: Path) -> None:
    phantom, loaded, result = _suv_from_files(tmp_path, dose_in_mbq=True)
    assert any("read as MBq" in warning for warning in result.warnings)
    _assert_matches(phantom, loaded, result)


def test_not_attenuation_corrected_end_to_end(tmp_path: Path) -> None:
    _, loaded, result = _suv_from_files(tmp_path, corrected_image=("NORM", "DECY"))
    assert result.status == "not_applicable" and loaded.metadata.series_description.endswith("NAC")
