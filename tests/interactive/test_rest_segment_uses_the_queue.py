"""POST .../annotations/<id>/segment/ goes through the prompt task and queue, as WebSocket prompts do:
in production a prompt worker runs the engine, never the web process."""

from __future__ import annotations

import pytest

from backend.annotations.services import read_mask
from backend.interactive.models import InteractiveSession, PromptLog
from tests.annotations.helpers import client_for
from tests.interactive.conftest import lesion_point, lesion_truth


def _segment(world, phantom, engine: str = "threshold"):
    annotator, scan = world["annotator"], world["pet_scan"]
    api = f"/api/projects/{scan.project_id}"
    reader = client_for(annotator)
    annotation = reader.post(f"{api}/annotations/", {"scan": scan.pk}, content_type="application/json").json()
    response = reader.post(f"{api}/annotations/{annotation['id']}/segment/", {
        "base_version": None, "label": world["lesion"].pk, "engine": engine,
        "points": [{"index": lesion_point(phantom), "positive": True}]}, content_type="application/json")
    return annotation, response


@pytest.mark.services_only
@pytest.mark.slow
def test_a_rest_prompt_runs_on_a_prompt_worker(phantom_world, interactive_phantom, start_celery_worker):
    worker = start_celery_worker("gpu-rest")
    annotation, response = _segment(phantom_world, interactive_phantom)
    assert response.status_code == 201, response.content
    session = InteractiveSession.objects.get(annotation_id=annotation["id"])
    assert not session.is_open  # a one-shot session of its own, closed after the save
    mask_log = PromptLog.objects.get(session=session, action="mask")
    assert mask_log.payload["worker"] == worker.hostname and mask_log.engine == "threshold"
    truth = lesion_truth(interactive_phantom)
    saved = read_mask(session.annotation.current_version) > 0
    assert 2 * (saved & truth).sum() / (saved.sum() + truth.sum()) > 0.5


def test_in_the_embedded_mode_the_same_task_runs_in_process(phantom_world, interactive_phantom, eager_tasks):
    annotation, response = _segment(phantom_world, interactive_phantom)
    assert response.status_code == 201, response.content
    session = InteractiveSession.objects.get(annotation_id=annotation["id"])
    prompts = list(session.log.filter(action="prompt").values_list("seq", flat=True))
    masks = session.log.filter(action="mask")
    assert prompts == [0] and masks.count() == 1 and masks.get().voxels > 0


def test_an_unknown_engine_is_a_clear_400_and_nothing_is_saved(phantom_world, interactive_phantom, eager_tasks):
    annotation, response = _segment(phantom_world, interactive_phantom, engine="no-such-engine")
    assert response.status_code == 400 and "no-such-engine" in response.json()["detail"]
    assert not InteractiveSession.objects.filter(annotation_id=annotation["id"]).exists()


@pytest.mark.services_only
def test_no_worker_answering_is_a_503_and_nothing_is_saved(phantom_world, interactive_phantom, settings):
    from backend.celery import app

    app.control.purge()
    settings.PROMPT_TIMEOUT_S = 2
    annotation, response = _segment(phantom_world, interactive_phantom)
    assert response.status_code == 503 and "No segmentation worker answered" in response.json()["detail"]
    session = InteractiveSession.objects.get(annotation_id=annotation["id"])
    assert not session.is_open and session.annotation.current_version is None
