"""Saving versions: stale bases are refused, racing saves have exactly one winner, checksums guard reads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from django.db import connection

from backend.annotations import services
from backend.annotations.masks import MaskError
from backend.annotations.models import Annotation, AnnotationVersion
from backend.imaging import storage
from tests.annotations.helpers import client_for, cube, save
from tests.base import make_project_world


@pytest.fixture
def world(db):
    return make_project_world("alice")


def test_it_works(world):
    annotation = world["annotation"]
    client = client_for(world["annotator"])
    response = save(client, world["project"].pk, annotation.pk, annotation.current_version_id, cube(0, 4),
                    world["label"].pk)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["number"] == 2 and body["segments"] == [{"id": 1, "label": world["label"].pk, "voxels": 64}]
    mask = client.get(f"/api/projects/{world['project'].pk}/annotations/{annotation.pk}/mask/?version=1")
    assert mask.status_code == 200 and mask["X-Version-Sha256"] == annotation.current_version.sha256


def test_it_checks_membership(world):
    other = make_project_world("charlie")
    annotation = world["annotation"]
    response = save(client_for(other["annotator"]), world["project"].pk, annotation.pk,
                    annotation.current_version_id, cube(), world["label"].pk)
    assert response.status_code == 404


def test_stale_base_version_is_a_conflict_that_names_the_current_version(world):
    annotation = world["annotation"]
    client = client_for(world["annotator"])
    first = annotation.current_version_id
    assert save(client, world["project"].pk, annotation.pk, first, cube(0, 2), world["label"].pk).status_code == 201
    response = save(client, world["project"].pk, annotation.pk, first, cube(2, 4), world["label"].pk)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "conflict" and body["current_number"] == 2
    assert AnnotationVersion.objects.filter(annotation=annotation).count() == 2


@pytest.mark.parametrize("bad,message", [
    ({"objects": cube(value=2), "segments": [{"id": 1, "label": None}]}, "integer"),
    ({"objects": cube(value=2), "segments": [{"id": 2, "label": 999999}]}, "label set"),
    ({"objects": cube(value=3), "segments": []}, "no segment describes"),
])
def test_bad_masks_are_refused_and_nothing_is_written(world, bad, message, tmp_path):
    annotation = world["annotation"]
    before = AnnotationVersion.objects.count()
    with pytest.raises(MaskError, match=message):
        services.save_version(annotation, world["annotator"], base_version_id=annotation.current_version_id,
                              object_map=bad["objects"], segments=bad["segments"], source="manual")
    assert AnnotationVersion.objects.count() == before


def test_wrong_shape_and_grid_are_refused_through_the_api(world):
    annotation = world["annotation"]
    client = client_for(world["annotator"])
    response = save(client, world["project"].pk, annotation.pk, annotation.current_version_id,
                    np.ones((4, 4, 5), dtype=np.uint8), world["label"].pk)
    assert response.status_code == 400 and "PET grid" in response.json()["detail"]
    from tests.annotations.helpers import mask_upload

    response = client.post(f"/api/projects/{world['project'].pk}/annotations/{annotation.pk}/versions/", {
        "base_version": annotation.current_version_id, "segments": "[]",
        "mask": mask_upload(np.zeros((4, 4, 4)), np.diag([2.0, 2.0, 2.0, 1.0]))})
    assert response.status_code == 400 and "affine" in str(response.json())
    response = client.post(f"/api/projects/{world['project'].pk}/annotations/{annotation.pk}/versions/", {
        "base_version": annotation.current_version_id, "segments": "[]",
        "mask": mask_upload(np.zeros((4, 4, 4)))} | {"mask": __import__("io").BytesIO(b"not nifti")})
    assert response.status_code == 400


def test_a_damaged_mask_file_is_detected_on_read(world):
    version = world["annotation"].current_version
    path = storage.media_path(version.mask_file)
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0xFF
    path.write_bytes(bytes(payload))
    with pytest.raises(MaskError, match="checksum"):
        services.read_mask(version)
    response = client_for(world["annotator"]).get(
        f"/api/projects/{world['project'].pk}/annotations/{world['annotation'].pk}/mask/")
    assert response.status_code == 400 and "checksum" in response.json()["detail"]


@pytest.mark.services_only  # PostgreSQL row locks; SQLite's in-memory test database cannot share threads
@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_on_the_same_base_have_exactly_one_winner():
    world = make_project_world("alice")
    annotation = world["annotation"]
    base = annotation.current_version_id
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def attempt(offset: int) -> None:
        try:
            barrier.wait()
            services.save_version(Annotation.objects.get(pk=annotation.pk), world["annotator"], base_version_id=base,
                                  object_map=cube(offset % 3, offset % 3 + 1), segments=[{"id": 1, "label": world["label"].pk}],
                                  source="manual")
            outcomes.append("saved")
        except services.ConflictError:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "saved"]
    annotation.refresh_from_db()
    assert annotation.current_version.number == 2
    assert AnnotationVersion.objects.filter(annotation=annotation).count() == 2
    folder = storage.media_path(f"scans/{world['scan'].pk}/annotations/{annotation.pk}")
    assert len(list(folder.glob("*.nii.gz"))) == 2, "the losers must leave no files behind"


@pytest.mark.services_only
@pytest.mark.django_db(transaction=True)
def test_racing_claims_have_exactly_one_winner():
    from backend.projects.models import Membership
    from tests.base import make_user

    world = make_project_world("alice")
    annotation = services.submit(world["annotation"], world["annotator"])
    reviewers = [world["reviewer"]] + [make_user(f"rev{i}") for i in range(3)]
    for user in reviewers[1:]:
        Membership.objects.create(project=world["project"], user=user, is_reviewer=True)
    barrier = threading.Barrier(len(reviewers))
    outcomes: list[str] = []

    def attempt(user) -> None:
        try:
            barrier.wait()
            services.claim(Annotation.objects.get(pk=annotation.pk), user)
            outcomes.append(user.username)
        except services.ConflictError:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(user,)) for user in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [o for o in outcomes if o != "conflict"]
    assert len(winners) == 1 and outcomes.count("conflict") == len(reviewers) - 1
    annotation.refresh_from_db()
    assert annotation.claimed_by.username == winners[0]
