"""Export jobs through the API: managers only, progress and status, an authorised download, clear refusals."""

from __future__ import annotations

import hashlib

from backend.annotations import services as annotation_services
from backend.exports.models import ExportJob
from backend.exports.services import run_export_job
from backend.imaging import storage
from tests.base import BaseTestCase
from tests.exports.helpers import open_archive


class ExportApiTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        from backend.celery import app

        # Tasks run in-process in both modes here; the real worker path is test_export_with_worker.
        previous = app.conf.task_always_eager
        app.conf.task_always_eager = True
        self.addCleanup(setattr, app.conf, "task_always_eager", previous)
        self.annotation = self.scan.annotations.get()
        annotation_services.submit(self.annotation, self.annotator)
        annotation_services.approve(self.annotation, self.reviewer)

    def url(self, project=None) -> str:
        return f"/api/projects/{(project or self.project).pk}/exports/"

    def start(self, body: dict | None = None):
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(self.url(), body or {}, content_type="application/json")

    def test_it_works(self):
        self.login(self.manager)
        response = self.start({"formats": ["nifti", "csv", "dicom_seg", "nnunet"]})
        assert response.status_code == 202, response.content
        job = self.client.get(f"{self.url()}{response.json()['id']}/").json()
        assert job["status"] == "done" and job["progress"] == 1.0, job
        assert job["settings"]["states"] == ["approved"] and job["settings"]["nnunet"]["pet_channel"] == "PET"
        download = self.client.get(job["download_url"])
        assert download.status_code == 200 and download["Content-Type"] == "application/zip"
        payload = b"".join(download.streaming_content)
        assert hashlib.sha256(payload).hexdigest() == job["archive_sha256"] == download["X-Archive-Sha256"]
        archive, manifest = open_archive(payload)
        assert manifest["settings"] == job["settings"]
        assert [s["version"] for s in manifest["sources"]] == [self.annotation.current_version_id]
        listed = {f["path"]: f for f in manifest["files"]}
        assert set(listed) == set(archive.namelist()) - {"manifest.json"}
        for name, entry in listed.items():
            assert hashlib.sha256(archive.read(name)).hexdigest() == entry["sha256"]
        scan_folder = f"scan{self.scan.pk:05d}"
        assert listed[f"nifti/{scan_folder}/annotation{self.annotation.pk:05d}_v1_labels.nii.gz"]["source_versions"] \
            == [self.annotation.current_version_id]
        # The fixture scan was not ingested from DICOM: no SEG, and the manifest says why.
        assert not any(name.startswith("dicom_seg/") for name in listed)
        assert any("not ingested from DICOM" in note for note in manifest["notes"])

    def test_it_checks_membership(self):
        job = ExportJob.objects.get(project=self.project)
        self.login(self.other_manager)
        assert self.client.get(self.url()).status_code == 404
        assert self.client.post(self.url(), {}, content_type="application/json").status_code == 404
        theirs = self.url(self.other_project)
        assert self.client.get(f"{theirs}{job.pk}/").status_code == 404
        assert self.client.get(f"{theirs}{job.pk}/download/").status_code == 404
        self.login(self.outsider)
        assert self.client.get(f"{self.url()}{job.pk}/download/").status_code == 404

    def test_only_managers_export(self):
        for user in (self.annotator, self.reviewer):
            self.login(user)
            assert self.client.get(self.url()).status_code == 403
            assert self.client.post(self.url(), {}, content_type="application/json").status_code == 403

    def test_a_filter_selecting_nothing_is_refused_clearly(self):
        self.login(self.manager)
        response = self.client.post(self.url(), {"states": ["draft"]}, content_type="application/json")
        assert response.status_code == 400 and "selects no annotations" in response.json()["detail"]
        response = self.client.post(self.url(), {"date_to": "2000-01-01"}, content_type="application/json")
        assert response.status_code == 400 and "selects no annotations" in response.json()["detail"]

    def test_bad_settings_are_refused(self):
        self.login(self.manager)
        for body in ({"formats": ["tiff"]}, {"nnunet": {"pet_channel": "CT"}}, {"labels": [self.other_label.pk]},
                     {"date_from": "2030-01-02", "date_to": "2030-01-01"}, {"nnunet": {"dataset_id": 1000}}):
            response = self.client.post(self.url(), body, content_type="application/json")
            assert response.status_code == 400, (body, response.content)

    def test_a_selection_that_empties_before_the_run_gives_an_empty_export_that_says_so(self):
        self.login(self.manager)
        response = self.client.post(self.url(), {}, content_type="application/json")  # queued, not run yet
        job = ExportJob.objects.get(pk=response.json()["id"])
        annotation_services.save_version(self.annotation, self.annotator,
                                         base_version_id=self.annotation.current_version_id,
                                         object_map=annotation_services.read_mask(self.annotation.current_version),
                                         segments=[{"id": 1, "label": self.label.pk}], source="manual")  # reopened
        job = run_export_job(job)
        assert job.status == "done" and "selected no annotations" in job.message
        archive, manifest = open_archive(storage.media_path(job.archive_file).read_bytes())
        assert manifest["selection"]["empty"] is True and manifest["sources"] == []
        # Only the statistics tables, with their header rows and nothing else.
        assert all(f["path"].startswith("csv/") for f in manifest["files"])
        assert archive.read("csv/objects.csv").decode().count("\n") == 1
        assert "the export is empty" in manifest["selection"]["note"]

    def test_an_unfinished_export_cannot_be_downloaded(self):
        job = ExportJob.objects.get(project=self.project)  # the fixture's pending job
        self.login(self.manager)
        response = self.client.get(f"{self.url()}{job.pk}/download/")
        assert response.status_code == 409 and response.json()["code"] == "not_ready"

    def test_deleting_an_export_removes_its_archive(self):
        self.login(self.manager)
        job_id = self.start({"formats": ["csv"]}).json()["id"]
        path = storage.media_path(ExportJob.objects.get(pk=job_id).archive_file)
        assert path.exists()
        with self.captureOnCommitCallbacks(execute=True):
            assert self.client.delete(f"{self.url()}{job_id}/").status_code == 204
        assert not path.exists()

    def test_archives_have_no_public_url(self):
        self.login(self.manager)
        job = ExportJob.objects.get(pk=self.start({"formats": ["csv"]}).json()["id"])
        assert self.client.get(f"/media/{job.archive_file}").status_code == 404
        self.client.logout()
        assert self.client.get(f"{self.url()}{job.pk}/download/").status_code in (401, 403)
