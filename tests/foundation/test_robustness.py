"""F12: bad or hostile input gets a clean 4xx (or 503 when the server is out of space), never a 500."""

from __future__ import annotations

from unittest import mock

from django.core.files.uploadedfile import SimpleUploadedFile

from backend.annotations import services
from backend.annotations.models import ReviewComment
from backend.imaging import uploads
from tests.annotations.helpers import client_for
from tests.base import BaseTestCase

TOO_BIG = 2**64 + 5


class RobustnessTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.api = f"/api/projects/{self.project.pk}"
        self.annotation = self.scan.annotations.get(annotator=self.annotator)

    def test_deeply_nested_json_is_a_400(self):
        nested = "[" * 100_000 + "]" * 100_000
        response = client_for(self.manager).post(f"{self.api}/labels/", nested, content_type="application/json")
        self.assertEqual(response.status_code, 400, response.content)
        response = client_for(self.manager).post(f"{self.api}/exports/", '{"formats": ' + nested + "}",
                                                 content_type="application/json")
        self.assertEqual(response.status_code, 400, response.content)

    def test_ids_above_2_63_are_a_400(self):
        manager = client_for(self.manager)
        manager.raise_request_exception = False  # a 500 must show as one, not as the test's exception
        for url, query in ((f"{self.api}/statistics/", {"scan": TOO_BIG}),
                           (f"{self.api}/statistics/", {"annotation": TOO_BIG}),
                           (f"{self.api}/annotations/", {"scan": TOO_BIG})):
            response = manager.get(url, query)
            # SQLite cannot bind the number (400 now, a 500 before); PostgreSQL's backend finds nothing.
            self.assertIn(response.status_code, (200, 400), (url, query, response.content))
            if response.status_code == 200:
                self.assertEqual(response.json()["results"], [])
        reader = client_for(self.annotator)
        reader.raise_request_exception = False
        response = reader.post(f"{self.api}/annotations/", {"scan": TOO_BIG}, content_type="application/json")
        self.assertEqual(response.status_code // 100, 4, response.content)

    def test_a_scan_upload_on_a_full_disk_is_a_503(self):
        def full_staging_dir():
            # The staged file is a link to /dev/full, where every write fails with ENOSPC, as on a full disk.
            path = uploads.staging_root() / "full-disk"
            path.mkdir(parents=True, exist_ok=True)
            (path / "file00000_pet.nii.gz").symlink_to("/dev/full")
            return path

        with mock.patch.object(uploads, "new_staging_dir", full_staging_dir):
            response = client_for(self.manager).post(f"{self.api}/scans/", {
                "pet": SimpleUploadedFile("pet.nii.gz", b"\x1f\x8b" + b"x" * 1000), "pet_units": "SUV"})
        self.assertEqual(response.status_code, 503, response.content)
        self.assertIn("storage is full", response.json()["detail"])
        self.assertEqual(response["Retry-After"], "5")
        self.assertFalse((uploads.staging_root() / "full-disk").exists())  # nothing left behind

    def test_comments_have_a_length_limit(self):
        body = "x" * (services.MAX_COMMENT_CHARS + 1)
        response = client_for(self.reviewer).post(f"{self.api}/annotations/{self.annotation.pk}/comments/",
                                                  {"body": body}, content_type="application/json")
        self.assertEqual(response.status_code, 400, response.content)
        self.assertIn("limited to", response.json()["detail"])
        services.submit(self.annotation, self.annotator)
        response = client_for(self.reviewer).post(f"{self.api}/annotations/{self.annotation.pk}/approve/",
                                                  {"comment": body}, content_type="application/json")
        self.assertEqual(response.status_code, 400, response.content)
        self.assertFalse(ReviewComment.objects.filter(annotation=self.annotation).exists())
        ok = client_for(self.reviewer).post(f"{self.api}/annotations/{self.annotation.pk}/comments/",
                                            {"body": "x" * services.MAX_COMMENT_CHARS}, content_type="application/json")
        self.assertEqual(ok.status_code, 201, ok.content)

    def test_every_response_has_a_content_security_policy(self):
        self.login(self.manager)
        for path in ("/", f"{self.api}/labels/", "/accounts/login/", "/health/"):
            policy = self.client.get(path)["Content-Security-Policy"]
            self.assertIn("default-src 'self'", policy)
            self.assertIn("script-src 'self' 'wasm-unsafe-eval';", policy)  # no inline scripts, no eval
            self.assertIn("frame-ancestors 'none'", policy)
        self.assertIn("cdn.jsdelivr.net", self.client.get("/api/docs/")["Content-Security-Policy"])
