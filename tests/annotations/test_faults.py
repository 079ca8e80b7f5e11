"""Faults while saving: a full disk or an absent database leave the previous version intact."""

from __future__ import annotations

import errno
import os

import pytest
from django.db import OperationalError

from backend.annotations.models import AnnotationVersion
from backend.annotations.services import read_mask
from backend.imaging import storage
from tests.annotations.helpers import client_for, cube, save
from tests.base import make_project_world

pytestmark = pytest.mark.django_db


def test_disk_full_while_saving_keeps_the_previous_version(monkeypatch):
    world = make_project_world("alice")
    annotation = world["annotation"]
    before = read_mask(annotation.current_version).copy()

    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.stream = real_fdopen(handle, "wb")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, payload):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.os, "fdopen", lambda handle, mode: FullDisk(handle))
    response = save(client_for(world["annotator"]), world["project"].pk, annotation.pk,
                    annotation.current_version_id, cube(0, 4), world["label"].pk)
    assert response.status_code == 503
    assert "No space left" in response.json()["detail"] and "previous version is unchanged" in response.json()["detail"]
    monkeypatch.undo()
    annotation.refresh_from_db()
    assert annotation.current_version.number == 1
    assert AnnotationVersion.objects.filter(annotation=annotation).count() == 1
    assert (read_mask(annotation.current_version) == before).all()
    folder = storage.media_path(f"scans/{world['scan'].pk}/annotations/{annotation.pk}")
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp")) == []


def test_database_unavailable_gives_a_503_with_retry_after(monkeypatch):
    world = make_project_world("alice")
    client = client_for(world["annotator"])
    from backend.projects import access

    def down(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(access, "membership_for", down)
    monkeypatch.setattr("backend.projects.api_base.membership_for", down)
    response = client.get(f"/api/projects/{world['project'].pk}/scans/")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "database is unavailable" in response.json()["detail"]


def test_pages_outside_the_api_also_answer_503_when_the_database_is_away():
    from django.test import RequestFactory

    from backend.health.middleware import DatabaseUnavailableMiddleware

    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    response = middleware.process_exception(RequestFactory().get("/"), OperationalError("server closed"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert middleware.process_exception(RequestFactory().get("/"), ValueError("other")) is None
