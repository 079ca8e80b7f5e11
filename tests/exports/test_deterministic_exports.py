"""Same inputs, byte-identical archives: fixed zip timestamps, sorted entries, deterministic files."""

from __future__ import annotations

import zipfile

import pytest

from backend.exports.archive import FIXED_DATE_TIME
from tests.exports import helpers

pytestmark = pytest.mark.slow


def test_two_exports_of_the_same_versions_are_byte_identical(dicom_world, eager_tasks,
                                                             django_capture_on_commit_callbacks):
    client = helpers.client_for(dicom_world["manager"])
    project = dicom_world["project"].pk
    first = helpers.export(client, project, django_capture_on_commit_callbacks)
    # Settings spelled differently but meaning the same normalise to the same export.
    second = helpers.export(client, project, django_capture_on_commit_callbacks,
                            {"formats": ["nnunet", "csv", "nifti", "dicom_seg", "csv"], "states": ["approved"]})
    assert first["id"] != second["id"]
    one, two = helpers.download(client, first), helpers.download(client, second)
    assert one == two and first["archive_sha256"] == second["archive_sha256"]

    archive = zipfile.ZipFile(__import__("io").BytesIO(one))
    names = archive.namelist()
    assert names == sorted(names)
    assert {info.date_time for info in archive.infolist()} == {FIXED_DATE_TIME}
    assert {"csv", "dicom_seg", "manifest.json", "nifti", "nnunet"} == {n.split("/")[0] for n in names}


def test_different_settings_give_a_different_archive(dicom_world, eager_tasks, django_capture_on_commit_callbacks):
    client = helpers.client_for(dicom_world["manager"])
    project = dicom_world["project"].pk
    everything = helpers.export(client, project, django_capture_on_commit_callbacks, {"formats": ["csv"]})
    lesions = helpers.export(client, project, django_capture_on_commit_callbacks,
                             {"formats": ["csv"], "labels": [dicom_world["lesion_label"].pk]})
    assert everything["archive_sha256"] != lesions["archive_sha256"]
    archive, manifest = helpers.open_archive(helpers.download(client, lesions))
    assert manifest["settings"]["labels"] == [dicom_world["lesion_label"].pk]
    assert {row.split(",")[8] for row in archive.read("csv/objects.csv").decode().splitlines()[1:]} == {"lesion"}
