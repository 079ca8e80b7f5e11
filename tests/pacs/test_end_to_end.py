"""Phantom study in Orthanc -> search -> import -> segment -> approve -> SEG pushed -> read back over QIDO/WADO."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

from backend.exports import dicom_seg
from backend.exports.services import referenced_series
from backend.imaging.models import Scan, ScanStatus
from backend.pacs.models import PushStatus, SegPush

from .conftest import client_for, make_source
from .helpers import approved_annotation
from .orthanc import PASSWORD, USER

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


def test_phantom_study_round_trip(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc, push_on_approval=True)
    manager = client_for(world["manager"])
    base = f"/api/projects/{world['project'].pk}"

    found = manager.get(f"{base}/pacs-sources/{source.pk}/studies/",
                        {"patient_id": pet_ct_study.phantom.patient.patient_id}).json()
    assert [s["study_instance_uid"] for s in found] == [pet_ct_study.uid]

    with django_capture_on_commit_callbacks(execute=True):
        started = manager.post(f"{base}/pacs-imports/", {"source": source.pk, "study_instance_uid": pet_ct_study.uid},
                               content_type="application/json")
    assert started.status_code == 202, started.content
    scan = Scan.objects.get(pk=started.json()["scan"])
    assert scan.status == ScanStatus.READY, scan.status_message

    with django_capture_on_commit_callbacks(execute=True):
        annotation, objects = approved_annotation(scan, pet_ct_study.phantom, world)
    assert annotation.state == "approved"
    push = SegPush.objects.get(version=annotation.current_version)
    assert push.status == PushStatus.SENT, push.message
    assert push.attempts == 1

    # Read it back from the PACS as any viewer would: QIDO-RS finds the SEG series, WADO-RS brings it.
    client = DICOMwebClient(url=orthanc.dicomweb_url, session=create_session_from_user_pass(USER, PASSWORD))
    segs = client.search_for_series(pet_ct_study.uid, search_filters={"Modality": "SEG"})
    assert [s["0020000E"]["Value"][0] for s in segs] == [push.series_instance_uid]
    instances = client.search_for_instances(pet_ct_study.uid, push.series_instance_uid)
    assert [i["00080018"]["Value"][0] for i in instances] == [push.sop_instance_uid]
    seg = client.retrieve_instance(pet_ct_study.uid, push.series_instance_uid, push.sop_instance_uid)

    pet = scan.pet
    pacs_pet_uids = [i["00080018"]["Value"][0] for i in
                     client.search_for_instances(pet_ct_study.uid, pet_ct_study.written.pet_series_instance_uid)]
    # References: the retrieved PET series and only its instances.
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == pet_ct_study.written.pet_series_instance_uid == pet.series_instance_uid
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} <= set(pacs_pet_uids)
    assert seg.FrameOfReferenceUID == pet.frame_of_reference_uid
    assert seg.PatientID == pet_ct_study.phantom.patient.patient_id
    # Frames: one per non-empty slice and segment, and together they are the saved mask.
    segments = int(objects.max())
    expected_frames = sum(int((objects[k] == s).any()) for k in range(objects.shape[0]) for s in range(1, segments + 1))
    assert int(seg.NumberOfFrames) == expected_frames
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, seg, enforce_file_format=True)
    read = dicom_seg.read_seg(buffer.getvalue(), referenced_series(scan, pet))
    assert np.array_equal(read.segment_map, objects.astype(np.uint16))
    assert sorted(read.labels.values()) == sorted({"liver", "lesion"} if segments == 2 else {"liver"})


def test_push_from_the_api(world, orthanc, pet_ct_study, django_capture_on_commit_callbacks):
    """Without push-on-approval nothing is sent by itself; the API action sends it, once."""
    from backend.pacs.services import run_import, start_import

    orthanc.upload(pet_ct_study.files)
    source = make_source(world["project"], orthanc)
    record = run_import(start_import(source, pet_ct_study.uid, world["manager"]))
    with django_capture_on_commit_callbacks(execute=True):
        annotation, _ = approved_annotation(Scan.objects.get(pk=record.scan_id), pet_ct_study.phantom, world)
    assert not SegPush.objects.filter(annotation=annotation).exists()

    reviewer = client_for(world["reviewer"])
    url = f"/api/projects/{world['project'].pk}/seg-pushes/"
    with django_capture_on_commit_callbacks(execute=True):
        response = reviewer.post(url, {"annotation": annotation.pk}, content_type="application/json")
    assert response.status_code == 202, response.content
    push = SegPush.objects.get(pk=response.json()["id"])
    assert push.status == PushStatus.SENT, push.message
    assert orthanc.instance_count() == len(pet_ct_study.files) + 1
    with django_capture_on_commit_callbacks(execute=True):
        again = reviewer.post(url, {"annotation": annotation.pk}, content_type="application/json")
    assert again.status_code == 409 and "already sent" in again.json()["detail"]
    listed = client_for(world["annotator"]).get(url, {"annotation": annotation.pk}).json()["results"]
    assert [(p["status"], p["version_number"]) for p in listed] == [("sent", 1)]
