"""F1: a small gzip NIfTI that expands to a gigabyte is refused (or read no further than its header
says) without the server's memory growing by more than 300 MB, as a PET upload, a mask upload and a
label import.

Two bombs of each kind: one whose header honestly claims the gigabyte (refused from the header), one
whose header claims the PET grid while a gigabyte of zeros follows (read up to the header's size only).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from backend.imaging.models import Scan, ScanStatus
from tests.base import make_project_world
from tests.conftest import ROOT
from tests.imaging import bombs

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]

LIMIT = 300 * 1024**2


@pytest.fixture(scope="module")
def gigabyte_of_zeros() -> bytes:
    return bombs.zeros_member(bombs.GIB)


@pytest.fixture
def world():
    return make_project_world("alice")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def traced_peak(call):
    """(result, peak bytes allocated during the call): numpy and bytes buffers are both traced."""
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def honest_and_lying(body: bytes, dtype, honest_shape) -> list[tuple[str, bytes]]:
    return [("honest", bombs.bomb(honest_shape, dtype, body)), ("lying", bombs.bomb((4, 4, 4), dtype, body))]


def test_pet_upload(world, gigabyte_of_zeros, django_capture_on_commit_callbacks):
    client = client_for(world["manager"])
    cases = honest_and_lying(gigabyte_of_zeros, np.float32, (1024, 512, 512))
    # Untraced first: the ingest's lazily imported modules would take minutes to import under tracemalloc.
    for name, payload in [("warm-up", bombs.bomb((4, 4, 4), np.float32, b""))] + cases:
        def send(payload=payload):
            with django_capture_on_commit_callbacks(execute=True):
                return client.post(f"/api/projects/{world['project'].pk}/scans/", {
                    "pet": SimpleUploadedFile("pet.nii.gz", payload), "pet_units": "SUV"})
        response, peak = (send(), 0) if name == "warm-up" else traced_peak(send)
        assert response.status_code == 202, response.content
        scan = Scan.objects.get(pk=response.json()["id"])
        assert peak < LIMIT, f"{name}: {peak / 2**20:.0f} MiB"
        if name == "honest":
            assert scan.status == ScanStatus.FAILED and "exceed the limit" in scan.status_message
        elif name == "warm-up":  # a header without its voxels
            assert scan.status == ScanStatus.FAILED and "ends before its image data" in scan.status_message
        else:  # only the 4x4x4 the header claims was read
            assert scan.status == ScanStatus.READY and scan.pet.shape == [4, 4, 4]


def test_mask_upload(world, gigabyte_of_zeros):
    client = client_for(world["annotator"])
    annotation = world["annotation"]
    for name, payload in honest_and_lying(gigabyte_of_zeros, np.uint8, (1024, 1024, 1024)):
        def send(payload=payload):
            return client.post(f"/api/projects/{world['project'].pk}/annotations/{annotation.pk}/versions/", {
                "base_version": annotation.current_version_id, "mask": SimpleUploadedFile("m.nii.gz", payload),
                "segments": json.dumps([])})
        response, peak = traced_peak(send)
        assert peak < LIMIT, f"{name}: {peak / 2**20:.0f} MiB"
        if name == "honest":
            assert response.status_code == 400 and "PET grid" in response.content.decode()
        else:  # an empty mask on the right grid is a valid (empty) version
            assert response.status_code == 201, response.content
            annotation.refresh_from_db()


def test_label_import(world, gigabyte_of_zeros):
    client = client_for(world["annotator"])
    for name, payload in honest_and_lying(gigabyte_of_zeros, np.uint8, (1024, 1024, 1024)):
        def send(payload=payload):
            return client.post(f"/api/projects/{world['project'].pk}/label-imports/",
                               {"scan": world["scan"].pk, "file": SimpleUploadedFile("labels.nii.gz", payload)})
        response, peak = traced_peak(send)
        assert response.status_code == 400, response.content
        assert peak < LIMIT, f"{name}: {peak / 2**20:.0f} MiB"
        body = response.content.decode()
        assert ("PET grid" in body) if name == "honest" else ("no labelled voxels" in body)


READERS = textwrap.dedent("""
    import json, os, resource, sys, tempfile
    import django
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    django.setup()
    import numpy as np
    from pathlib import Path
    from backend.annotations.masks import MaskError, read_uploaded_mask
    from backend.imaging.ingest import IngestError, _read_nifti
    from tests.imaging import bombs

    def rss() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    body = bombs.zeros_member(bombs.GIB)
    files = {"pet_honest": bombs.bomb((1024, 512, 512), np.float32, body),
             "pet_lying": bombs.bomb((4, 4, 4), np.float32, body),
             "mask_honest": bombs.bomb((1024, 1024, 1024), np.uint8, body),
             "mask_lying": bombs.bomb((4, 4, 4), np.uint8, body)}
    folder = Path(tempfile.mkdtemp())
    for name in ("pet_honest", "pet_lying"):
        (folder / f"{name}.nii.gz").write_bytes(files[name])
    baseline, outcome = rss(), {}
    for name in ("pet_honest", "pet_lying"):  # the PET upload reads its staged file
        try:
            outcome[name] = list(_read_nifti(folder / f"{name}.nii.gz", "PET", "image").shape)
        except IngestError as error:
            outcome[name] = str(error)
    for name in ("mask_honest", "mask_lying"):  # the mask upload and the label import read the bytes
        try:
            outcome[name] = list(read_uploaded_mask(files[name], (4, 4, 4))[0].shape)
        except MaskError as error:
            outcome[name] = str(error)
    print(json.dumps({"growth": rss() - baseline, "outcome": outcome}))
""")


def test_peak_rss_of_the_readers_in_a_fresh_process():
    """The same readers in a process of their own, where the peak resident size is not hidden by an
    earlier test's peak."""
    done = subprocess.run([sys.executable, "-c", READERS], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["growth"] < LIMIT, report
    outcome = report["outcome"]
    assert "exceed the limit" in outcome["pet_honest"] and outcome["pet_lying"] == [4, 4, 4]
    assert "PET grid" in outcome["mask_honest"] and outcome["mask_lying"] == [4, 4, 4]
