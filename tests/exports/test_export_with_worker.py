"""The production path: a real Celery worker on the `cpu` queue computes statistics and runs an export."""

from __future__ import annotations

import time

import numpy as np
import pytest
from django.test import Client

from backend.annotations import services
from backend.exports.models import ExportJob
from backend.quantification.models import VersionStatistics
from tests.base import make_project_world

pytestmark = [pytest.mark.services_only, pytest.mark.slow]


def wait_for(check, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    pytest.fail("the worker did not finish in time")


def test_a_worker_computes_statistics_and_runs_the_export(start_celery_worker):
    start_celery_worker("cpu")
    world = make_project_world("alice")
    annotation = world["annotation"]
    objects = np.zeros((4, 4, 4), dtype=np.uint8)
    objects[0:2, 0:2, 0:2] = 1
    version = services.save_version(annotation, world["annotator"], base_version_id=annotation.current_version_id,
                                    object_map=objects, segments=[{"id": 1, "label": world["label"].pk}],
                                    source="manual")
    row = wait_for(lambda: VersionStatistics.objects.filter(version=version, status="done").first())
    assert row.object_stats[0]["voxels"] == 8
    services.submit(annotation, world["annotator"])
    services.approve(annotation, world["reviewer"])

    client = Client()
    client.force_login(world["manager"])
    response = client.post(f"/api/projects/{world['project'].pk}/exports/", {"formats": ["nifti", "csv"]},
                           content_type="application/json")
    assert response.status_code == 202 and response.json()["status"] == "pending"
    job = wait_for(lambda: ExportJob.objects.filter(pk=response.json()["id"], status__in=["done", "failed"]).first())
    assert job.status == "done", job.message
    download = client.get(f"/api/projects/{world['project'].pk}/exports/{job.pk}/download/")
    assert download.status_code == 200 and download["X-Archive-Sha256"] == job.archive_sha256


def test_a_worker_killed_during_an_export_fails_it_cleanly(start_celery_worker, settings):
    from backend.imaging import storage

    worker = start_celery_worker("doomed-cpu", include="tests.exports.slow_export")
    world = make_project_world("alice")
    annotation = world["annotation"]
    services.submit(annotation, world["annotator"])
    services.approve(annotation, world["reviewer"])
    client = Client()
    client.force_login(world["manager"])
    response = client.post(f"/api/projects/{world['project'].pk}/exports/", {"formats": ["nifti", "csv"]},
                           content_type="application/json")
    job_id = response.json()["id"]
    wait_for(lambda: ExportJob.objects.filter(pk=job_id, status="running").exists(), 60)
    worker.kill()
    settings.EXPORT_STALE_S = 0  # no heartbeat is expected any more
    time.sleep(0.5)
    body = client.get(f"/api/projects/{world['project'].pk}/exports/{job_id}/").json()
    assert body["status"] == "failed" and "stopped before it finished" in body["message"]
    assert client.get(f"/api/projects/{world['project'].pk}/exports/{job_id}/download/").status_code == 409
    assert not storage.media_path(f"exports/{job_id}").exists(), "no half-written archive"
