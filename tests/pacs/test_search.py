"""Searching a source's studies (QIDO-RS against Orthanc): filters, wrong credentials, membership."""

from __future__ import annotations

import logging

import pytest

from .conftest import client_for, make_source

pytestmark = pytest.mark.django_db


def search(user, project, source, **params):
    return client_for(user).get(f"/api/projects/{project.pk}/pacs-sources/{source.pk}/studies/", params)


@pytest.fixture
def loaded(orthanc, pet_ct_study, second_study):
    orthanc.upload(pet_ct_study.files + second_study.files)
    return orthanc


def test_it_works(world, loaded, pet_ct_study, second_study):
    source = make_source(world["project"], loaded)
    response = search(world["manager"], world["project"], source)
    assert response.status_code == 200, response.content
    found = {s["study_instance_uid"]: s for s in response.json()}
    assert set(found) == {pet_ct_study.uid, second_study.uid}
    study = found[pet_ct_study.uid]
    assert study["patient_id"] == pet_ct_study.phantom.patient.patient_id
    assert sorted(study["modalities"]) == ["CT", "PT"]
    assert study["instance_count"] == len(pet_ct_study.files)
    assert study["scan_id"] is None


def test_it_checks_membership(world, other_world, loaded):
    source = make_source(world["project"], loaded)
    assert search(other_world["manager"], world["project"], source).status_code == 404
    assert search(other_world["manager"], other_world["project"], source).status_code == 404
    assert search(world["annotator"], world["project"], source).status_code == 403


def test_filters(world, loaded, pet_ct_study, second_study):
    source = make_source(world["project"], loaded)

    def uids(**params):
        response = search(world["manager"], world["project"], source, **params)
        assert response.status_code == 200, response.content
        return {s["study_instance_uid"] for s in response.json()}

    assert uids(patient_id=pet_ct_study.phantom.patient.patient_id) == {pet_ct_study.uid}
    name = pet_ct_study.phantom.patient.name.split("^")[-1].lower()  # part of the name, any case
    assert uids(patient_name=name) == {pet_ct_study.uid}
    assert uids(date_from="2019-01-01", date_to="2019-12-31") == {second_study.uid}
    assert uids(date_from="2030-01-01") == set()


def test_studies_without_pet_are_not_offered(world, orthanc, pet_ct_study):
    orthanc.upload(pet_ct_study.written.ct_files)
    source = make_source(world["project"], orthanc)
    assert search(world["manager"], world["project"], source).json() == []
    everything = search(world["manager"], world["project"], source, modality="any")
    assert [s["study_instance_uid"] for s in everything.json()] == [pet_ct_study.uid]


def test_wrong_password(world, loaded, caplog):
    source = make_source(world["project"], loaded, password="wrong-password-123")
    caplog.set_level(logging.DEBUG)
    response = search(world["manager"], world["project"], source)
    assert response.status_code == 502
    assert response.json()["code"] == "pacs_auth_failed"
    assert "refused the credentials" in response.json()["detail"]
    assert "wrong-password-123" not in response.content.decode() + caplog.text


def test_pacs_down(world, orthanc):
    source = make_source(world["project"], orthanc)
    orthanc.kill()
    response = search(world["manager"], world["project"], source)
    assert response.status_code == 502
    assert response.json()["code"] == "pacs_unavailable"


def test_bad_dates(world, orthanc):
    source = make_source(world["project"], orthanc)
    response = search(world["manager"], world["project"], source, date_from="2024-05-01", date_to="2024-01-01")
    assert response.status_code == 400
