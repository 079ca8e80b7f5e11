"""Statistics of annotation versions: computed when a version is saved, served per project."""

from __future__ import annotations

import numpy as np
import pytest

from backend.annotations import services
from backend.annotations.models import AnnotationVersion
from backend.imaging import storage
from backend.quantification.models import VersionStatistics
from tests.base import BaseTestCase


class StatisticsApiTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        from backend.celery import app

        # Tasks run in-process in both modes here; the real worker path is tests/exports/test_export_with_worker.
        previous = app.conf.task_always_eager
        app.conf.task_always_eager = True
        self.addCleanup(setattr, app.conf, "task_always_eager", previous)

    def url(self, project=None) -> str:
        return f"/api/projects/{(project or self.project).pk}/statistics/"

    def test_it_works(self):
        self.login(self.annotator)
        annotation = self.scan.annotations.get()
        response = self.client.get(self.url(), {"annotation": annotation.pk})
        assert response.status_code == 200, response.content
        [row] = response.json()["results"]
        assert row["status"] == "done" and row["version"] == annotation.current_version_id
        assert row["units"] == "SUVbw" and row["has_ct"] is True
        [item] = row["objects"]
        # The fixture PET is arange(64)/10 on a 4 mm grid, the object its [1:3, 1:3, 1:3] cube.
        pet = np.arange(64, dtype=np.float64).reshape(4, 4, 4) / 10
        cube = pet[1:3, 1:3, 1:3]
        assert item["voxels"] == 8 and item["volume_ml"] == pytest.approx(8 * 64 / 1000)
        assert item["suv_max"] == pytest.approx(cube.max(), abs=1e-6)
        assert item["suv_mean"] == pytest.approx(cube.mean(), abs=1e-6)
        assert item["tlg"] == pytest.approx(cube.mean() * 8 * 64 / 1000, abs=1e-5)
        # The CT is pet * 100 - 500 on the same grid: mean HU follows.
        assert item["hu_mean"] == pytest.approx(cube.mean() * 100 - 500, abs=1e-3)
        assert item["label_name"] == "liver" and item["kind"] == "organ"
        assert row["lesion_count"] == 0 and row["total_mtv_ml"] == 0
        assert "fractional" in row["method"]["suv_peak_partial_voxels"]
        detail = self.client.get(f"{self.url()}{row['id']}/")
        assert detail.status_code == 200 and detail.json()["objects"] == row["objects"]

    def test_it_checks_membership(self):
        theirs = VersionStatistics.objects.get(project=self.other_project)
        self.login(self.manager)
        assert self.client.get(f"{self.url()}{theirs.pk}/").status_code == 404
        assert self.client.get(self.url(self.other_project)).status_code == 404
        self.login(self.outsider)
        assert self.client.get(self.url()).status_code == 404

    def test_recompute_is_for_managers(self):
        row = VersionStatistics.objects.get(project=self.project)
        self.login(self.annotator)
        assert self.client.post(f"{self.url()}{row.pk}/recompute/").status_code == 403
        self.login(self.manager)
        response = self.client.post(f"{self.url()}{row.pk}/recompute/")
        assert response.status_code == 200 and response.json()["status"] == "done"

    def test_version_numbers_pick_older_versions(self):
        annotation = self.scan.annotations.get()
        objects = np.zeros((4, 4, 4), dtype=np.uint8)
        objects[0:4, 0:4, 0:2] = 1
        with self.captureOnCommitCallbacks(execute=True):
            services.save_version(annotation, self.annotator, base_version_id=annotation.current_version_id,
                                  object_map=objects, segments=[{"id": 1, "label": self.label.pk}], source="manual")
        self.login(self.reviewer)
        current = self.client.get(self.url(), {"annotation": annotation.pk}).json()["results"]
        assert [r["version_number"] for r in current] == [2] and current[0]["objects"][0]["voxels"] == 32
        first = self.client.get(self.url(), {"annotation": annotation.pk, "version": 1}).json()["results"]
        assert [r["version_number"] for r in first] == [1] and first[0]["objects"][0]["voxels"] == 8
        assert self.client.get(self.url(), {"version": 1}).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_saving_a_version_queues_its_statistics(eager_tasks):
    from tests.base import make_project_world

    world = make_project_world("alice")
    annotation = world["annotation"]
    objects = np.zeros((4, 4, 4), dtype=np.uint8)
    objects[0, 0, 0] = 1
    objects[3, 3, 3] = 2
    version = services.save_version(annotation, world["annotator"], base_version_id=annotation.current_version_id,
                                    object_map=objects, segments=[{"id": 1, "label": world["label"].pk},
                                                                  {"id": 2, "label": world["label"].pk}],
                                    source="manual")
    row = VersionStatistics.objects.get(version=version)  # the on-commit task ran (in-process here)
    assert row.status == "done" and [o["id"] for o in row.object_stats] == [1, 2]
    assert row.object_stats[1]["suv_max"] == pytest.approx(6.3, abs=1e-6)


@pytest.mark.django_db(transaction=True)
def test_a_failure_is_stored_and_does_not_break_saving(eager_tasks):
    from tests.base import make_project_world

    world = make_project_world("alice")
    pet = world["scan"].pet
    storage.media_path(pet.volume_file).unlink()
    storage.clear_volume_cache()
    annotation = world["annotation"]
    version = services.save_version(annotation, world["annotator"], base_version_id=annotation.current_version_id,
                                    object_map=np.ones((4, 4, 4), dtype=np.uint8),
                                    segments=[{"id": 1, "label": world["label"].pk}], source="manual")
    assert AnnotationVersion.objects.filter(pk=version.pk).exists()
    row = VersionStatistics.objects.get(version=version)
    assert row.status == "failed" and "No such file" in row.message
