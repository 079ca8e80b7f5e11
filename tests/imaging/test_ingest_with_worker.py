"""The production path: upload through the API, a real Celery worker ingests from the Redis queue."""

from __future__ import annotations

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from backend.imaging.models import Scan, ScanStatus
from tests.base import make_project_world

pytestmark = [pytest.mark.services_only, pytest.mark.slow]


def test_upload_is_ingested_by_a_real_worker(celery_worker_process, phantom_dicom_dir):
    world = make_project_world("alice")
    client = Client()
    client.force_login(world["manager"])
    files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(phantom_dicom_dir.rglob("*")) if p.is_file()]
    response = client.post(f"/api/projects/{world['project'].pk}/scans/", {"files": files})
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    scan = Scan.objects.get(pk=response.json()["id"])
    deadline = time.monotonic() + 120
    while scan.status in (ScanStatus.PENDING, ScanStatus.INGESTING) and time.monotonic() < deadline:
        time.sleep(0.5)
        scan.refresh_from_db()
    assert scan.status == ScanStatus.READY, scan.status_message
    assert {s.modality for s in scan.series.all()} == {"PT", "CT"}
