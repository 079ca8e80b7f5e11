"""F3: deleting a label that annotations use archives it, so nothing is lost from later exports; an
export that meets a label no longer in the project says so in its manifest."""

from __future__ import annotations

import csv
import io
import json

from backend.annotations import services as annotation_services
from backend.annotations.models import AnnotationVersion
from backend.projects.models import Label
from tests.annotations.helpers import client_for, cube, save
from tests.base import BaseTestCase
from tests.exports.helpers import open_archive


class ArchivedLabelsTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        from backend.celery import app

        previous = app.conf.task_always_eager
        app.conf.task_always_eager = True
        self.addCleanup(setattr, app.conf, "task_always_eager", previous)
        self.annotation = self.scan.annotations.get()
        self.labels_url = f"/api/projects/{self.project.pk}/labels/"

    def approve(self) -> None:
        annotation_services.submit(self.annotation, self.annotator)
        annotation_services.approve(self.annotation, self.reviewer)

    def export(self) -> tuple[dict, dict]:
        self.login(self.manager)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(f"/api/projects/{self.project.pk}/exports/", {"formats": ["nifti", "csv"]},
                                        content_type="application/json")
        assert response.status_code == 202, response.content
        job = self.client.get(f"/api/projects/{self.project.pk}/exports/{response.json()['id']}/").json()
        assert job["status"] == "done", job
        download = self.client.get(f"/api/projects/{self.project.pk}/exports/{job['id']}/download/")
        archive, manifest = open_archive(b"".join(download.streaming_content))
        return job, {"manifest": manifest, "archive": archive}

    def test_a_label_in_use_is_archived_and_still_exported(self):
        self.approve()
        self.login(self.manager)
        response = self.client.delete(f"{self.labels_url}{self.label.pk}/")
        assert response.status_code == 200, response.content
        assert response.json()["archived"] is True
        self.label.refresh_from_db()
        assert self.label.archived
        listed = self.client.get(self.labels_url).json()["results"]
        assert [(item["id"], item["archived"]) for item in listed] == [(self.label.pk, True)]
        _, files = self.export()
        stem = f"nifti/scan{self.scan.pk:05d}/annotation{self.annotation.pk:05d}_v1"
        segments = json.loads(files["archive"].read(f"{stem}_segments.json"))
        assert [(s["label"], s["voxels"]) for s in segments] == [("liver", 8)]
        rows = list(csv.DictReader(io.StringIO(files["archive"].read("csv/objects.csv").decode())))
        assert [row["label"] for row in rows] == ["liver"]
        assert files["manifest"]["unknown_label_objects"] == []

    def test_an_unused_label_is_deleted(self):
        unused = Label.objects.create(project=self.project, name="spleen", value=2, color="#00ff00")
        self.login(self.manager)
        assert self.client.delete(f"{self.labels_url}{unused.pk}/").status_code == 204
        assert not Label.objects.filter(pk=unused.pk).exists()

    def test_new_objects_cannot_take_an_archived_label(self):
        self.login(self.manager)
        assert self.client.delete(f"{self.labels_url}{self.label.pk}/").status_code == 200
        # The reader's own annotation, which already uses the label, is still edited and saved...
        reader = client_for(self.annotator)
        response = save(reader, self.project.pk, self.annotation.pk, self.annotation.current_version_id, cube(0, 3),
                        self.label.pk)
        assert response.status_code == 201, response.content
        # ...but a new annotation cannot start using it.
        other, _ = annotation_services.open_annotation(self.scan, self.manager)
        response = save(client_for(self.manager), self.project.pk, other.pk, None, cube(), self.label.pk)
        assert response.status_code == 400 and "archived" in response.json()["detail"], response.content

    def test_an_unknown_label_is_noted_in_the_manifest(self):
        self.approve()
        spleen = Label.objects.create(project=self.project, name="spleen", value=2, color="#00ff00")
        version = self.annotation.current_version
        # A second object on a label deleted outright, as was possible before labels in use were archived.
        AnnotationVersion.objects.filter(pk=version.pk).update(  # versions refuse save(): bypassed here
            segments=[*version.segments, {"id": 2, "label": spleen.pk, "voxels": 0}])
        Label.objects.filter(pk=spleen.pk).delete()
        job, files = self.export()
        unknown = files["manifest"]["unknown_label_objects"]
        assert unknown == [{"annotation": self.annotation.pk, "version": version.pk, "object": 2,
                            "label": spleen.pk}]
        assert any("no longer in the project" in note for note in files["manifest"]["notes"])
        assert "left out" in job["message"]
        stem = f"nifti/scan{self.scan.pk:05d}/annotation{self.annotation.pk:05d}_v1"
        segments = json.loads(files["archive"].read(f"{stem}_segments.json"))
        assert [s["label"] for s in segments] == ["liver"]  # the known object is still exported
