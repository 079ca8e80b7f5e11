"""Every branch of the SUV computation against synthetic DICOM series of known SUV (suv_reference.py).

Each series holds uniform regions of SUVbw 1.0, 2.5 and 8.0; every voxel computed must lie within 0.1 % of
the analytical value, in the stored SUV type and in every other type the case checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.imaging_pure.suv_reference import CASES, TOLERANCE, Case, case_named, measure


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_branch_gives_the_analytical_suv(case: Case, tmp_path: Path) -> None:
    measured = measure(case, tmp_path)
    assert measured.status == "ok", measured.result
    assert measured.suv_type == case.expect_type
    for suv_type, error in measured.errors.items():
        assert error <= TOLERANCE, f"{suv_type}: {error:.3%} off ({measured.rule})"
    if case.warning:
        assert any(case.warning in warning for warning in measured.warnings), measured.warnings


def test_post_processed_series_uses_the_back_computed_scan_start(tmp_path: Path) -> None:
    measured = measure(case_named("bqml-start-post-processed"), tmp_path)
    assert "QIBA back-computation" in measured.rule
    assert measured.result.parameters.scan_datetime == case_named("bqml-start-post-processed").scan_start


def test_a_gml_lean_body_mass_series_without_height_is_labelled_as_such(tmp_path: Path) -> None:
    result = measure(case_named("gml-lbm-no-height"), tmp_path).result
    assert result.suv_type == "SULjames" and result.conversions == {"SULjames": 1.0}
    assert result.unavailable["SUVbw"] == ("values are SULjames and PatientSize (0010,1020) missing or not a "
                                           "plausible height in m is needed to convert them")


def test_sex_other_keeps_the_sex_neutral_types_and_says_why_the_others_are_missing(tmp_path: Path) -> None:
    result = measure(case_named("bqml-sex-other"), tmp_path).result
    assert set(result.conversions) == {"SUVbw", "SUVbsa"}
    rule = ("PatientSex 'O': SUL (Janmahasatian or James lean body mass) and SUVibw (Devine) exist only in male and "
            "female forms, so they are not computed; SUVbw and SUVbsa (DuBois, no sex term) are")
    assert result.unavailable == {"SUL": rule, "SULjames": rule, "SUVibw": rule}
