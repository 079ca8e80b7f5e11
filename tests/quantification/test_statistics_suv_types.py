"""Statistics carry the SUV type of each value, and give SUL (PERCIST) and the other types beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.annotations.services import open_annotation, save_version
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan
from backend.quantification.services import compute_for_version
from tests.base import make_project_world
from tests.imaging_pure.suv_reference import REGION_SUV, case_named, normaliser, region_map, write_series

pytestmark = pytest.mark.django_db


def test_each_value_is_given_in_every_available_type(tmp_path: Path):
    world = make_project_world("stats")
    case = case_named("bqml-female-types")
    scan = ingest_dicom(Scan.objects.create(project=world["project"], name="types"), write_series(case, tmp_path))
    annotation, _ = open_annotation(scan, world["annotator"])
    objects = (region_map() == 2).astype(np.uint8)  # the SUVbw 8.0 block
    version = save_version(annotation, world["annotator"], base_version_id=None, object_map=objects,
                           segments=[{"id": 1, "label": world["label"].pk}], source="manual")
    row = compute_for_version(version)
    assert row.status == "done" and row.units == "SUVbw"
    [item] = row.object_stats
    assert item["units"] == "SUVbw" and item["suv_mean"] == pytest.approx(REGION_SUV[2], rel=1e-3)
    for name in ("SUL", "SULjames", "SUVbsa", "SUVibw"):
        ratio = normaliser(name, case.patient) / normaliser("SUVbw", case.patient)
        assert item["by_type"][name]["suv_mean"] == pytest.approx(REGION_SUV[2] * ratio, rel=1e-3)
        assert item["by_type"][name]["tlg"] == pytest.approx(item["tlg"] * ratio, rel=1e-5)
    types = {entry["type"]: entry for entry in row.method["suv_types"]}
    assert types["SUVbw"]["stored"] and types["SUL"]["available"]
