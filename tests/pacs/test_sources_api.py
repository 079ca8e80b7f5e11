"""Managing a project's DICOMweb sources; secrets are write-only and never stored in clear."""

from __future__ import annotations

import json

import pytest

from backend.pacs import secrets
from backend.pacs.models import DicomWebSource

from .conftest import client_for

pytestmark = pytest.mark.django_db

URL = "http://pacs.example.org:8042/dicom-web"


def create(user, project, **data):
    body = {"name": "reading room", "qido_url": URL, "wado_url": URL, "stow_url": URL, **data}
    return client_for(user).post(f"/api/projects/{project.pk}/pacs-sources/", body, content_type="application/json")


def test_it_works(world):
    response = create(world["manager"], world["project"], auth="basic", username="reader", password="s3cret-pw")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"] == "encrypted" and "password" not in body and "token" not in body
    assert "s3cret-pw" not in response.content.decode()
    source = DicomWebSource.objects.get(pk=body["id"])
    assert source.project == world["project"]
    assert "s3cret-pw" not in source.secret_encrypted  # encrypted at rest...
    assert secrets.resolve(source.secret_ref, source.secret_encrypted) == "s3cret-pw"  # ...and usable
    listed = client_for(world["annotator"]).get(f"/api/projects/{world['project'].pk}/pacs-sources/")
    assert "s3cret-pw" not in listed.content.decode()
    rows = listed.json()["results"] if isinstance(listed.json(), dict) else listed.json()
    assert "reading room" in [row["name"] for row in rows]


def test_it_checks_membership(world, other_world):
    source = DicomWebSource.objects.get(project=world["project"], name="pacs")
    client = client_for(other_world["manager"])
    assert client.get(f"/api/projects/{world['project'].pk}/pacs-sources/{source.pk}/").status_code == 404
    assert client.get(f"/api/projects/{other_world['project'].pk}/pacs-sources/{source.pk}/").status_code == 404
    assert create(other_world["manager"], world["project"]).status_code == 404


def test_only_managers_add_sources(world):
    assert create(world["annotator"], world["project"]).status_code == 403
    assert create(world["reviewer"], world["project"]).status_code == 403


def test_an_environment_reference(world, monkeypatch):
    response = create(world["manager"], world["project"], auth="bearer", secret_ref="env:PACS_TOKEN_FOR_TEST")
    assert response.status_code == 201, response.content
    assert response.json()["secret"] == "env" and response.json()["secret_ref"] == "env:PACS_TOKEN_FOR_TEST"
    source = DicomWebSource.objects.get(pk=response.json()["id"])
    monkeypatch.setenv("PACS_TOKEN_FOR_TEST", "tok-123")
    assert secrets.resolve(source.secret_ref, source.secret_encrypted) == "tok-123"
    monkeypatch.delenv("PACS_TOKEN_FOR_TEST")
    with pytest.raises(secrets.SecretError, match="PACS_TOKEN_FOR_TEST named by this source.s secret is not set"):
        secrets.resolve(source.secret_ref, source.secret_encrypted)


@pytest.mark.parametrize("data,field", [
    ({"auth": "basic", "username": "reader"}, "needs a secret"),
    ({"auth": "basic", "password": "x"}, "user name"),
    ({"auth": "bearer", "secret_ref": "ORTHANC_PASSWORD"}, "env:NAME"),
    ({"auth": "bearer", "token": "a", "secret_ref": "env:X"}, "either"),
    ({"qido_url": "not a url"}, "URL"),
])
def test_bad_input_gets_a_clear_400(world, data, field):
    response = create(world["manager"], world["project"], **data)
    assert response.status_code == 400
    assert field.lower() in json.dumps(response.json()).lower()


def test_names_are_unique_per_project(world):
    assert create(world["manager"], world["project"], name="pacs").status_code == 400


def test_a_source_in_use_is_not_deleted(world):
    source = DicomWebSource.objects.get(project=world["project"], name="pacs")
    response = client_for(world["manager"]).delete(f"/api/projects/{world['project'].pk}/pacs-sources/{source.pk}/")
    assert response.status_code == 409
    assert DicomWebSource.objects.filter(pk=source.pk).exists()
