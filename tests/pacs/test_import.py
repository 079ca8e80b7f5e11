"""Importing a study from Orthanc: through the API (eager task) and the management command."""

from __future__ import annotations

import pydicom
import pytest
from django.core.management import CommandError, call_command

from backend.imaging.models import Scan, ScanStatus
from backend.pacs.models import ImportStatus, PacsImport

from .conftest import client_for, make_source

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


def post_import(django_capture_on_commit_callbacks, user, project, data):
    with django_capture_on_commit_callbacks(execute=True):
        return client_for(user).post(f"/api/projects/{project.pk}/pacs-imports/", data,
                                     content_type="application/json")


def test_it_works(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc)
    response = post_import(django_capture_on_commit_callbacks, world["manager"], world["project"],
                           {"source": source.pk, "study_instance_uid": pet_ct_study.uid})
    assert response.status_code == 202, response.content
    record = PacsImport.objects.get(pk=response.json()["id"])
    assert record.status == ImportStatus.DONE, record.message
    scan = Scan.objects.get(pk=record.scan_id)
    assert scan.status == ScanStatus.READY, scan.status_message
    assert scan.study_instance_uid == pet_ct_study.uid
    assert scan.pet.shape == list(pet_ct_study.phantom.shape)
    assert scan.ct is not None
    # The PET's instances are those in the PACS, in slice order: what a SEG will reference.
    expected = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                for p in pet_ct_study.written.pet_files]
    assert scan.pet.sop_instance_uids == expected
    assert record.instances_retrieved == len(pet_ct_study.files)
    assert record.staging_dir == ""


def test_it_checks_membership(world, other_world, orthanc, django_capture_on_commit_callbacks):
    source = make_source(world["project"], orthanc)
    response = post_import(django_capture_on_commit_callbacks, other_world["manager"], world["project"],
                           {"source": source.pk, "study_instance_uid": "1.2.3"})
    assert response.status_code == 404
    # Their own project cannot use our source either.
    response = post_import(django_capture_on_commit_callbacks, other_world["manager"], other_world["project"],
                           {"source": source.pk, "study_instance_uid": "1.2.3"})
    assert response.status_code == 404
    assert not PacsImport.objects.filter(study_instance_uid="1.2.3").exists()


def test_only_managers_import(world, orthanc, django_capture_on_commit_callbacks):
    source = make_source(world["project"], orthanc)
    response = post_import(django_capture_on_commit_callbacks, world["annotator"], world["project"],
                           {"source": source.pk, "study_instance_uid": "1.2.3"})
    assert response.status_code == 403


def test_a_study_already_imported_is_recognised(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc)
    data = {"source": source.pk, "study_instance_uid": pet_ct_study.uid}
    first = post_import(django_capture_on_commit_callbacks, world["manager"], world["project"], data)
    again = post_import(django_capture_on_commit_callbacks, world["manager"], world["project"], data)
    assert again.status_code == 409
    assert again.json()["code"] == "already_imported"
    assert again.json()["scan"] == first.json()["scan"]
    assert Scan.objects.filter(study_instance_uid=pet_ct_study.uid).count() == 1
    # The search says so too.
    found = client_for(world["manager"]).get(f"/api/projects/{world['project'].pk}/pacs-sources/{source.pk}/studies/")
    assert [s["scan_id"] for s in found.json()] == [first.json()["scan"]]


def test_a_study_without_pet_is_refused(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    orthanc.upload(pet_ct_study.written.ct_files)  # the CT alone
    source = make_source(world["project"], orthanc)
    scans_before = Scan.objects.count()
    response = post_import(django_capture_on_commit_callbacks, world["manager"], world["project"],
                           {"source": source.pk, "study_instance_uid": pet_ct_study.uid})
    assert response.status_code == 400
    assert "no PET series" in response.json()["detail"]
    assert Scan.objects.count() == scans_before and not PacsImport.objects.filter(study_instance_uid=pet_ct_study.uid).exists()


def test_a_non_pet_series_is_refused(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc)
    response = post_import(django_capture_on_commit_callbacks, world["manager"], world["project"],
                           {"source": source.pk, "study_instance_uid": pet_ct_study.uid,
                            "series": [pet_ct_study.written.ct_series_instance_uid]})
    assert response.status_code == 400
    assert "no PET series" in response.json()["detail"]
    assert not PacsImport.objects.filter(study_instance_uid=pet_ct_study.uid).exists()


def test_the_management_command(world, orthanc, pet_ct_study, capsys):
    orthanc.upload(pet_ct_study.files)
    make_source(world["project"], orthanc, name="reading room")
    call_command("pacs_import", "--source", "reading room", "--project", world["project"].name,
                 "--study", pet_ct_study.uid)
    record = PacsImport.objects.get(study_instance_uid=pet_ct_study.uid)
    assert record.status == ImportStatus.DONE
    assert f"scan {record.scan_id}" in capsys.readouterr().out
    call_command("pacs_import", "--source", "reading room", "--project", world["project"].name,
                 "--study", pet_ct_study.uid)
    assert "already imported" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no source 'nope'"):
        call_command("pacs_import", "--source", "nope", "--project", world["project"].name, "--study", "1.2")
