"""Faults during an import: the PACS dies mid-retrieve (then resume), wrong password, PACS down, mixed patients."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pydicom
import pytest

from backend.imaging.models import Scan, ScanStatus, Series
from backend.pacs.dicomweb import PacsClient, PacsUnavailable
from backend.pacs.models import ImportStatus, PacsImport
from backend.pacs.services import ImportRefused, check_instance, run_import, start_import

from .conftest import client_for, make_source

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


def test_killed_mid_retrieve_then_resumed(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc)
    record = start_import(source, pet_ct_study.uid, world["manager"])

    def kill_after_ten(retrieved: int) -> None:
        if retrieved == 10:
            orthanc.kill()

    record = run_import(record, on_instance=kill_after_ten)
    assert record.status == ImportStatus.FAILED and record.resumable
    assert "resume the import" in record.message
    scan = Scan.objects.get(pk=record.scan_id)
    assert scan.status == ScanStatus.FAILED and not Series.objects.filter(scan=scan).exists()
    staged = sorted(p.name for p in Path(record.staging_dir).glob("*.dcm"))
    assert 10 <= len(staged) < len(pet_ct_study.files)

    orthanc.start()  # same storage: the PACS is back
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world["manager"]).post(
            f"/api/projects/{world['project'].pk}/pacs-imports/{record.pk}/resume/")
    assert response.status_code == 202, response.content
    record.refresh_from_db()
    assert record.status == ImportStatus.DONE, record.message
    assert record.attempts == 2
    scan.refresh_from_db()
    assert scan.status == ScanStatus.READY
    # Complete, and each instance once: the PET has every slice, in order, no duplicates.
    pet_uids = scan.pet.sop_instance_uids
    assert len(pet_uids) == len(set(pet_uids)) == len(pet_ct_study.written.pet_files)
    assert scan.pet.shape == list(pet_ct_study.phantom.shape)
    assert record.instances_retrieved == len(pet_ct_study.files)


def test_a_resumed_import_fetches_only_what_is_missing(world, orthanc, pet_ct_study):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc)
    record = start_import(source, pet_ct_study.uid, world["manager"])

    def connection_lost_after_ten(retrieved: int) -> None:
        # Orthanc dies; a small answer may already sit whole in the socket buffer, so the break of the
        # stream at this instance is made explicit, as the client sees it from a larger series.
        if retrieved == 10:
            orthanc.kill()
            raise PacsUnavailable("the PACS stopped answering mid-series")

    record = run_import(record, on_instance=connection_lost_after_ten)
    assert record.status == ImportStatus.FAILED and record.resumable
    assert len(list(Path(record.staging_dir).glob("*.dcm"))) == 10
    orthanc.start()
    fetched: list[int] = []
    record = run_import(record, on_instance=fetched.append)
    assert record.status == ImportStatus.DONE, record.message
    # Exactly what was missing came (the rest of the PET, then the CT), nothing twice.
    assert len(fetched) == len(pet_ct_study.files) - 10
    assert record.instances_retrieved == len(pet_ct_study.files)
    scan = Scan.objects.get(pk=record.scan_id)
    assert len(set(scan.pet.sop_instance_uids)) == len(pet_ct_study.written.pet_files)


def test_few_missing_instances_are_fetched_one_by_one(world, orthanc, pet_ct_study, monkeypatch):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc)
    record = start_import(source, pet_ct_study.uid, world["manager"])
    pet_count = len(pet_ct_study.written.pet_files)

    def lost_near_the_end_of_the_pet(retrieved: int) -> None:
        if retrieved == pet_count - 3:
            raise PacsUnavailable("the PACS stopped answering mid-series")

    record = run_import(record, on_instance=lost_near_the_end_of_the_pet)
    assert record.status == ImportStatus.FAILED
    streamed, one_by_one = [], []
    monkeypatch.setattr(PacsClient, "iter_series", _spy(PacsClient.iter_series, streamed))
    monkeypatch.setattr(PacsClient, "retrieve_instance", _spy(PacsClient.retrieve_instance, one_by_one))
    record = run_import(record)
    assert record.status == ImportStatus.DONE, record.message
    assert len(one_by_one) == 3  # the PET's last three, each by its own WADO-RS request
    assert [call[2] for call in streamed] == [pet_ct_study.written.ct_series_instance_uid]  # the CT, streamed


def _spy(method, calls: list):
    def wrapper(self, *args):
        calls.append((self, *args))
        return method(self, *args)
    return wrapper


def test_wrong_password(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks, caplog):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc, password="not-the-password")
    caplog.set_level(logging.DEBUG)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world["manager"]).post(
            f"/api/projects/{world['project'].pk}/pacs-imports/",
            {"source": source.pk, "study_instance_uid": pet_ct_study.uid}, content_type="application/json")
    assert response.status_code == 502
    assert response.json()["code"] == "pacs_auth_failed"
    assert "credentials" in response.json()["detail"]
    assert "not-the-password" not in response.content.decode() and "not-the-password" not in caplog.text
    assert not PacsImport.objects.filter(study_instance_uid=pet_ct_study.uid).exists() and not Scan.objects.filter(study_instance_uid=pet_ct_study.uid).exists()


def test_pacs_down_when_importing(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    source = make_source(world["project"], orthanc)
    orthanc.kill()
    scans = Scan.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world["manager"]).post(
            f"/api/projects/{world['project'].pk}/pacs-imports/",
            {"source": source.pk, "study_instance_uid": pet_ct_study.uid}, content_type="application/json")
    assert response.status_code == 502
    assert response.json()["code"] == "pacs_unavailable"
    assert "cannot be reached" in response.json()["detail"]
    assert Scan.objects.count() == scans and not PacsImport.objects.filter(study_instance_uid=pet_ct_study.uid).exists()


def test_a_mixed_patient_series_is_refused(pet_ct_study):
    series = {"uid": pet_ct_study.written.pet_series_instance_uid, "modality": "PT"}
    dataset = pydicom.dcmread(pet_ct_study.written.pet_files[0], stop_before_pixels=True)
    check_instance(dataset, series, str(dataset.PatientID), pet_ct_study.uid)  # the right patient passes
    with pytest.raises(ImportRefused, match="mixes patients"):
        check_instance(dataset, series, "SOMEONE-ELSE", pet_ct_study.uid)
    with pytest.raises(ImportRefused, match="listed as CT but holds a PT"):
        check_instance(dataset, {**series, "modality": "CT"}, str(dataset.PatientID), pet_ct_study.uid)


def test_a_mixed_patient_series_in_the_pacs_fails_cleanly(world, orthanc, pet_ct_study, tmp_path):
    # One PET slice of the study carries another patient id: the import refuses and keeps nothing.
    odd = pydicom.dcmread(pet_ct_study.written.pet_files[3])
    odd.PatientID = "INTRUDER-1"
    odd_path = tmp_path / "odd.dcm"
    odd.save_as(odd_path)
    orthanc.upload([*pet_ct_study.written.pet_files[:3], odd_path, *pet_ct_study.written.pet_files[4:]])
    source = make_source(world["project"], orthanc)
    with pytest.raises(ImportRefused, match="different patients"):
        start_import(source, pet_ct_study.uid, world["manager"])
    assert not PacsImport.objects.filter(study_instance_uid=pet_ct_study.uid).exists()
    assert not Scan.objects.filter(project=world["project"], status=ScanStatus.PENDING).exists()


def test_an_instance_of_another_patient_met_while_retrieving_fails_cleanly(world, orthanc, pet_ct_study):
    # The PACS lists one patient, but an instance it sends says otherwise: the import stops and keeps nothing.
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc)
    record = start_import(source, pet_ct_study.uid, world["manager"])
    PacsImport.objects.filter(pk=record.pk).update(patient_id="SOMEONE-ELSE")
    record = run_import(record)
    assert record.status == ImportStatus.FAILED and not record.resumable
    assert "mixes patients" in record.message
    assert record.staging_dir == ""
    # The thread that was receiving the series stopped with the import.
    assert not [t for t in threading.enumerate() if t.name.startswith("wado-rs-")]
    assert not Series.objects.filter(scan_id=record.scan_id).exists()
    assert Scan.objects.get(pk=record.scan_id).status == ScanStatus.FAILED


def test_an_abandoned_import_can_be_resumed(world, orthanc, pet_ct_study):
    """A worker that died mid-import leaves it 'retrieving'; after a quiet while it can be resumed, not before."""
    from datetime import timedelta

    from django.utils import timezone

    from backend.pacs.services import ABANDONED_AFTER, AlreadyImported, prepare_resume

    orthanc.upload(pet_ct_study.files)
    record = start_import(make_source(world["project"], orthanc), pet_ct_study.uid, world["manager"])
    PacsImport.objects.filter(pk=record.pk).update(status=ImportStatus.RETRIEVING, updated_at=timezone.now())
    with pytest.raises(AlreadyImported, match="being imported"):
        prepare_resume(record)
    PacsImport.objects.filter(pk=record.pk).update(updated_at=timezone.now() - ABANDONED_AFTER - timedelta(seconds=1))
    record = run_import(prepare_resume(record))
    assert record.status == ImportStatus.DONE, record.message


def test_deleting_the_scan_of_a_failed_import_removes_its_staged_instances(
        world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    orthanc.upload(pet_ct_study.files)
    record = start_import(make_source(world["project"], orthanc), pet_ct_study.uid, world["manager"])
    record = run_import(record, on_instance=lambda retrieved: orthanc.kill() if retrieved == 5 else None)
    staging = Path(record.staging_dir)
    assert record.resumable and any(staging.glob("*.dcm"))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(world["manager"]).delete(f"/api/projects/{world['project'].pk}/scans/{record.scan_id}/")
    assert response.status_code == 204
    assert not PacsImport.objects.filter(pk=record.pk).exists()
    assert not staging.exists()
