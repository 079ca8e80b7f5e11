"""One scan from assignment to a locked, twice-approved annotation, entirely through the API."""

from __future__ import annotations

import numpy as np
import pytest

from backend.annotations.models import AnnotationState, AuditEvent
from backend.annotations.services import read_mask
from backend.imaging import storage
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan
from backend.projects.models import Label, LabelKind, Membership
from tests.annotations.helpers import client_for
from tests.base import make_project_world, make_user
from worker.phantoms import make_phantom, write_dicom_series

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


def test_life_of_one_scan(tmp_path):
    world = make_project_world("alice")
    project, manager, annotator, reviewer = world["project"], world["manager"], world["annotator"], world["reviewer"]
    project.required_approvals = 2
    project.save()
    second_reviewer = make_user("bob_reviewer")
    Membership.objects.create(project=project, user=second_reviewer, is_reviewer=True)
    lesion = Label.objects.create(project=project, name="lesion", value=2, color="#ffff00", kind=LabelKind.LESION)
    phantom = make_phantom(seed=31, n_lesions=3)
    write_dicom_series(phantom, tmp_path, write_ct=False)
    scan = ingest_dicom(Scan.objects.create(project=project, name="life"), sorted(tmp_path.rglob("*.dcm")))
    assert scan.status == "ready", scan.status_message
    api = f"/api/projects/{project.pk}"

    # 1. The manager assigns the scan; it shows on the annotator's worklist.
    response = client_for(manager).post(f"{api}/assignments/", {"scan": scan.pk, "annotator": annotator.username},
                                        content_type="application/json")
    assert response.status_code == 201, response.content
    worklist = client_for(annotator).get(f"{api}/assignments/worklist/").json()
    assert {"scan": scan.pk, "annotation_state": "not_started"}.items() <= \
        next(row for row in worklist if row["scan"] == scan.pk).items()

    # 2. The annotator opens an annotation and clicks the biggest lesion: the threshold engine's mask is saved.
    reader = client_for(annotator)
    annotation = reader.post(f"{api}/annotations/", {"scan": scan.pk}, content_type="application/json").json()
    target = max(phantom.lesions, key=lambda lesion: lesion.radius_mm)
    centre = [int(round(c)) for c in target.centre_index]
    response = reader.post(f"{api}/annotations/{annotation['id']}/segment/", {
        "base_version": None, "label": lesion.pk, "engine": "threshold",
        "points": [{"index": centre, "positive": True}]}, content_type="application/json")
    assert response.status_code == 201, response.content
    version = response.json()
    assert version["source"] == "threshold" and version["segments"][0]["label"] == lesion.pk
    truth = phantom.lesion_labels == target.index
    predicted = read_mask(scan.annotations.get().current_version) > 0
    dice = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert dice > 0.5, dice

    # 3. Submitted; the first reviewer claims it and sends it back with a comment on a voxel.
    assert reader.post(f"{api}/annotations/{annotation['id']}/submit/").status_code == 200
    queue = client_for(reviewer).get(f"{api}/annotations/review-queue/").json()
    assert [item["id"] for item in queue["results"]] == [annotation["id"]]
    assert client_for(reviewer).post(f"{api}/annotations/{annotation['id']}/claim/").status_code == 200
    assert client_for(second_reviewer).post(f"{api}/annotations/{annotation['id']}/approve/").status_code == 409
    response = client_for(reviewer).post(f"{api}/annotations/{annotation['id']}/request-changes/", {
        "comment": "Please also include the second lesion", "voxel": centre}, content_type="application/json")
    assert response.status_code == 201

    # 4. The annotator reads the comment, corrects (adds a second lesion by a click) and resubmits.
    comments = reader.get(f"{api}/annotations/{annotation['id']}/comments/").json()
    assert comments[0]["body"].startswith("Please also include")
    other = sorted(phantom.lesions, key=lambda lesion: -lesion.radius_mm)[1]
    response = reader.post(f"{api}/annotations/{annotation['id']}/segment/", {
        "base_version": version["id"], "label": lesion.pk, "engine": "threshold",
        "points": [{"index": [int(round(c)) for c in other.centre_index], "positive": True}]},
        content_type="application/json")
    assert response.status_code == 201, response.content
    assert len(response.json()["segments"]) == 2
    assert reader.post(f"{api}/annotations/{annotation['id']}/submit/").status_code == 200

    # 5. Two distinct reviewers approve; the annotation is locked.
    assert client_for(reviewer).post(f"{api}/annotations/{annotation['id']}/approve/").json()["state"] == "submitted"
    final = client_for(second_reviewer).post(f"{api}/annotations/{annotation['id']}/approve/").json()
    assert final["state"] == AnnotationState.APPROVED and sorted(final["approvals"]) == ["alice_reviewer", "bob_reviewer"]
    response = reader.post(f"{api}/annotations/{annotation['id']}/submit/")
    assert response.status_code == 409
    approved = scan.annotations.get().current_version
    assert storage.media_path(approved.mask_file).exists()
    assert int(np.count_nonzero(read_mask(approved))) > 0

    actions = set(AuditEvent.objects.filter(project=project).values_list("action", flat=True))
    assert {"assigned", "annotation_created", "version_saved", "submitted", "claimed", "changes_requested",
            "approved"} <= actions
