"""CSV and JSON of per-object and per-scan statistics agree with the phantoms' own truth."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.exports import helpers

pytestmark = pytest.mark.slow


def test_csv_and_json_statistics(dicom_world, eager_tasks, django_capture_on_commit_callbacks):
    client = helpers.client_for(dicom_world["manager"])
    job = helpers.export(client, dicom_world["project"].pk, django_capture_on_commit_callbacks, {"formats": ["csv"]})
    archive, manifest = helpers.open_archive(helpers.download(client, job))
    objects = list(csv.DictReader(io.StringIO(archive.read("csv/objects.csv").decode())))
    scans = list(csv.DictReader(io.StringIO(archive.read("csv/scans.csv").decode())))
    as_json = json.loads(archive.read("csv/statistics.json"))
    assert len(as_json["objects"]) == len(objects) and len(as_json["scans"]) == len(scans) == 2
    for scan, phantom in zip(dicom_world["phantom_scans"], dicom_world["phantoms"], strict=True):
        rows = [r for r in objects if int(r["scan"]) == scan.pk]
        lesions = [r for r in rows if r["kind"] == "lesion"]
        assert len(lesions) == len(phantom.lesions)
        for row, lesion in zip(lesions, phantom.lesions, strict=True):
            assert int(row["voxels"]) == lesion.voxel_count
            assert float(row["suv_max"]) == pytest.approx(lesion.suv_max, rel=1e-3)
            assert float(row["suv_mean"]) == pytest.approx(lesion.suv_mean, rel=1e-3)
            assert float(row["tlg"]) == pytest.approx(float(row["suv_mean"]) * float(row["mtv_ml"]), rel=1e-4)
            assert float(row["hu_mean"]) > -1024
        [total] = [r for r in scans if int(r["scan"]) == scan.pk]
        assert int(total["lesion_count"]) == len(phantom.lesions)
        assert float(total["total_mtv_ml"]) == pytest.approx(sum(float(r["mtv_ml"]) for r in lesions), abs=1e-4)
        assert total["units"] == "SUVbw"
    assert manifest["files"][0]["source_versions"] == sorted(s["version"] for s in manifest["sources"])
