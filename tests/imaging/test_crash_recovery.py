"""F7, F8: a process killed in the middle of an ingest or an export leaves a scan "ingesting" or a job
"running" and a staging folder; recovery finds them by their stopped heartbeat, fails them with a
clear message and removes what they left. The processes here are real and are killed with SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from backend.annotations import services as annotation_services
from backend.exports.models import ExportJob, ExportStatus
from backend.exports.services import normalise_settings
from backend.health.recovery import recover_stale
from backend.imaging import storage
from backend.imaging.models import Scan, ScanStatus
from backend.imaging.nifti_io import nifti_bytes
from backend.imaging.uploads import stage_uploaded_files
from tests.base import make_project_world
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

PRELUDE = """
import os, sys, time
import django
django.setup()
"""


def database_url() -> str:
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{database['NAME']}"
    return f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


def start(script: str) -> subprocess.Popen:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(),
           "MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    env.pop("REDIS_URL", None)  # tasks in-process; broadcasts go nowhere
    return subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(script)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the process ended early: {process.stdout.read() if process.stdout else ''}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the process did not get there in time")
        time.sleep(0.2)


def kill(process: subprocess.Popen) -> None:
    process.kill()  # SIGKILL: no finally, no clean-up
    process.wait(timeout=20)


@pytest.fixture
def world():
    return make_project_world("alice")


def test_a_killed_ingest_is_failed_and_cleaned_up(world):
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    upload = SimpleUploadedFile("pet.nii.gz", nifti_bytes(np.ones((4, 4, 4), dtype=np.float32), affine))
    staging = stage_uploaded_files([upload])
    scan = Scan.objects.create(project=world["project"], name="killed", created_by=world["manager"],
                               staging_dir=str(staging))
    staged = next(staging.iterdir()).name
    child = start(f"""
        from backend.imaging import ingest
        real = ingest.read_nifti
        def slow(*args, **kwargs):
            time.sleep(120)  # killed here, after the heartbeat and before any volume is written
            return real(*args, **kwargs)
        ingest.read_nifti = slow
        from backend.imaging.tasks import ingest_upload
        ingest_upload({scan.pk}, {str(staging)!r}, "nifti", {{"pet": {staged!r}, "pet_units": "SUV"}})
    """)
    wait_for(lambda: Scan.objects.get(pk=scan.pk).status == ScanStatus.INGESTING, child)
    storage.write_atomically(f"{storage.scan_dir_relative(scan.pk)}/partial.nii.gz", b"half")  # as a later step would
    kill(child)
    assert recover_stale()["failed_scans"] == []  # the heartbeat is recent: it might still be alive
    scan.refresh_from_db()
    assert scan.status == ScanStatus.INGESTING and staging.exists()

    time.sleep(1.1)
    with override_settings(INGEST_STALE_S=1):
        report = recover_stale()
    assert report["failed_scans"] == [scan.pk]
    scan.refresh_from_db()
    assert scan.status == ScanStatus.FAILED and "server stopped" in scan.status_message
    assert not staging.exists()
    assert not storage.media_path(storage.scan_dir_relative(scan.pk)).exists()
    assert not scan.series.exists()
    assert recover_stale(stale_after=0)["failed_scans"] == []  # once only


def test_an_orphan_upload_staging_folder_is_removed(world):
    waiting = stage_uploaded_files([SimpleUploadedFile("a.dcm", b"x")])
    Scan.objects.create(project=world["project"], name="queued", staging_dir=str(waiting))  # pending: kept
    orphan = stage_uploaded_files([SimpleUploadedFile("b.dcm", b"x")])
    removed = recover_stale(stale_after=0)["removed_upload_staging"]
    assert removed == [str(orphan)] and waiting.exists() and not orphan.exists()


def test_a_killed_export_is_failed_and_its_staging_removed(world):
    annotation = world["annotation"]
    annotation_services.submit(annotation, world["annotator"])
    annotation_services.approve(annotation, world["reviewer"])
    job = ExportJob.objects.create(project=world["project"], created_by=world["manager"],
                                   settings=normalise_settings(world["project"], {"formats": ["nifti"]}))
    exports_dir = storage.media_path("exports")
    child = start(f"""
        import tests.exports.slow_export  # every export step takes 3 s
        from backend.exports.models import ExportJob
        from backend.exports.services import run_export_job
        run_export_job(ExportJob.objects.get(pk={job.pk}))
    """)
    wait_for(lambda: any(exports_dir.glob(f".staging-{job.pk}-*")), child)
    kill(child)
    job.refresh_from_db()
    assert job.status == ExportStatus.RUNNING
    leftover = list(exports_dir.glob(f".staging-{job.pk}-*"))
    assert leftover and recover_stale()["failed_exports"] == []  # heartbeat recent: left alone
    assert all(path.exists() for path in leftover)

    time.sleep(1.1)
    report = recover_stale(stale_after=1)
    assert report["failed_exports"] == [job.pk]
    assert sorted(report["removed_export_staging"]) == sorted(str(p) for p in leftover)
    job.refresh_from_db()
    assert job.status == ExportStatus.FAILED and "stopped before it finished" in job.message
    assert not any(Path(p).exists() for p in leftover)


def test_staging_of_a_deleted_job_is_removed(world):
    exports_dir = storage.media_path("exports")
    exports_dir.mkdir(parents=True, exist_ok=True)
    left = exports_dir / ".staging-999999-abc"
    left.mkdir()
    assert recover_stale()["removed_export_staging"] == [str(left)] and not left.exists()
