"""SEG pushes that do not go through: PACS stopped (retry after restart), rejected, not pushable; membership."""

from __future__ import annotations

import time

import pytest

from backend.imaging.models import Scan
from backend.pacs.models import DicomWebSource, PushStatus, SegPush
from backend.pacs.services import run_import, start_import

from .conftest import client_for, make_source
from .helpers import approved_annotation


@pytest.fixture
def imported(world, orthanc, pet_ct_study):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc, push_on_approval=True)
    record = run_import(start_import(source, pet_ct_study.uid, world["manager"]))
    return source, Scan.objects.get(pk=record.scan_id)


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_tasks")
def test_push_with_the_pacs_stopped_then_retried_after_restart(world, orthanc, pet_ct_study, imported,
                                                               django_capture_on_commit_callbacks):
    orthanc.stop()
    with django_capture_on_commit_callbacks(execute=True):
        annotation, _ = approved_annotation(imported[1], pet_ct_study.phantom, world)
    assert annotation.state == "approved"  # the approval stands whatever the PACS does
    push = SegPush.objects.get(annotation=annotation)
    assert push.status == PushStatus.FAILED
    assert "cannot be reached" in push.message and push.next_attempt_at is not None

    orthanc.start()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world["reviewer"]).post(
            f"/api/projects/{world['project'].pk}/seg-pushes/{push.pk}/retry/")
    assert response.status_code == 202, response.content
    push.refresh_from_db()
    assert push.status == PushStatus.SENT, push.message
    assert push.attempts == 2
    assert orthanc.instance_count() == len(pet_ct_study.files) + 1


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_tasks")
def test_a_push_rejected_by_the_pacs(world, orthanc, pet_ct_study, imported, django_capture_on_commit_callbacks):
    source = imported[0]
    DicomWebSource.objects.filter(pk=source.pk).update(stow_url=f"{orthanc.url}/no-such-service")
    with django_capture_on_commit_callbacks(execute=True):
        annotation, _ = approved_annotation(imported[1], pet_ct_study.phantom, world)
    push = SegPush.objects.get(annotation=annotation)
    assert push.status == PushStatus.FAILED
    assert "refused" in push.message and "HTTP 404" in push.message
    assert push.next_attempt_at is None and "Retry by hand" in push.message  # no point retrying by itself
    assert orthanc.instance_count() == len(pet_ct_study.files)


@pytest.mark.django_db
@pytest.mark.usefixtures("eager_tasks")
def test_only_approved_annotations_of_imported_scans_are_pushed(world, django_capture_on_commit_callbacks):
    url = f"/api/projects/{world['project'].pk}/seg-pushes/"
    reviewer = client_for(world["reviewer"])
    response = reviewer.post(url, {"annotation": world["annotation"].pk}, content_type="application/json")
    assert response.status_code == 409 and "approved" in response.json()["detail"]
    assert client_for(world["annotator"]).post(url, {"annotation": world["annotation"].pk},
                                               content_type="application/json").status_code == 403


@pytest.mark.django_db
def test_it_checks_membership(world, other_world):
    push = SegPush.objects.get(project=world["project"])
    client = client_for(other_world["manager"])
    assert client.get(f"/api/projects/{world['project'].pk}/seg-pushes/{push.pk}/").status_code == 404
    assert client.post(f"/api/projects/{other_world['project'].pk}/seg-pushes/{push.pk}/retry/").status_code == 404
    response = client.post(f"/api/projects/{other_world['project'].pk}/seg-pushes/",
                           {"annotation": world["annotation"].pk}, content_type="application/json")
    assert response.status_code == 404


@pytest.mark.services_only
@pytest.mark.slow
def test_a_real_worker_retries_with_backoff(world, orthanc, pet_ct_study, imported, start_celery_worker, monkeypatch):
    """The production path: the worker's retry comes by itself once the PACS is back."""
    monkeypatch.setenv("PACS_PUSH_RETRY_DELAYS_S", "2,2,2")
    start_celery_worker("pacs")
    orthanc.stop()
    annotation, _ = approved_annotation(imported[1], pet_ct_study.phantom, world)  # commits: the push is queued
    push = SegPush.objects.get(annotation=annotation)
    deadline = time.monotonic() + 60
    while push.status != PushStatus.FAILED and time.monotonic() < deadline:
        time.sleep(0.3)
        push.refresh_from_db()
    assert push.status == PushStatus.FAILED and push.next_attempt_at is not None
    orthanc.start()
    deadline = time.monotonic() + 60
    while push.status != PushStatus.SENT and time.monotonic() < deadline:
        time.sleep(0.5)
        push.refresh_from_db()
    assert push.status == PushStatus.SENT, push.message
    assert push.attempts >= 2
