"""The scan API exposes what a viewer unit switch needs: the stored SUV type, each type's multiplier from the
stored voxels, and the reason a type is unavailable; values already in another SUV type are never called SUVbw."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan, ScanStatus
from tests.base import make_project_world
from tests.imaging_pure.suv_reference import case_named, normaliser, write_series

pytestmark = pytest.mark.django_db


def ingested(world, case_name: str, folder: Path) -> dict:
    scan = Scan.objects.create(project=world["project"], name=case_name)
    scan = ingest_dicom(scan, write_series(case_named(case_name), folder))
    assert scan.status == ScanStatus.READY, scan.status_message
    client = Client()
    client.force_login(world["annotator"])
    detail = client.get(f"/api/projects/{world['project'].pk}/scans/{scan.pk}/").json()
    return next(series for series in detail["series"] if series["modality"] == "PT")


def test_it_lists_every_suv_type_with_its_multiplier(tmp_path: Path):
    world = make_project_world("types")
    case = case_named("bqml-female-types")
    pet = ingested(world, case.name, tmp_path)
    assert pet["units"] == pet["suv_type"] == "SUVbw"
    types = {entry["type"]: entry for entry in pet["suv_types"]}
    assert list(types) == ["SUVbw", "SUL", "SULjames", "SUVbsa", "SUVibw"]
    assert types["SUVbw"]["stored"] and types["SUVbw"]["multiplier"] == 1.0
    for name in ("SUL", "SULjames", "SUVbsa", "SUVibw"):
        ratio = normaliser(name, case.patient) / normaliser("SUVbw", case.patient)
        assert types[name]["available"] and types[name]["multiplier"] == pytest.approx(ratio, rel=1e-9)
    assert types["SUVbsa"]["units"] == "cm2/ml" and types["SUL"]["units"] == "g/ml"


def test_it_says_why_a_type_is_unavailable(tmp_path: Path):
    world = make_project_world("sexo")
    pet = ingested(world, "bqml-sex-other", tmp_path)
    unavailable = {entry["type"]: entry["reason"] for entry in pet["suv_types"] if not entry["available"]}
    assert set(unavailable) == {"SUL", "SULjames", "SUVibw"}
    assert unavailable["SUL"].startswith("PatientSex 'O': SUL (Janmahasatian or James lean body mass) and SUVibw")


def test_values_in_another_suv_type_keep_their_label(tmp_path: Path):
    world = make_project_world("lbm")
    pet = ingested(world, "gml-lbm-no-height", tmp_path)
    assert pet["units"] == pet["suv_type"] == "SULjames"
    assert [entry["type"] for entry in pet["suv_types"] if entry["available"]] == ["SULjames"]
    scan = Scan.objects.get(series__pk=pet["id"])
    assert "kept and labelled as such (not SUVbw)" in scan.status_message
