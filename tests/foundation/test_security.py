"""Security behaviour: login lockout, token throttling, CSRF, no public media, metrics access,
request ids, production refuses DEBUG, and no patient data in logs."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

from tests.base import BaseTestCase
from tests.foundation.test_settings import load_settings


class LoginLockoutTestCase(BaseTestCase):
    @override_settings(AXES_ENABLED=True)
    def test_repeated_failures_lock_the_account_out(self):
        client = Client(REMOTE_ADDR="10.1.2.3")
        codes = [client.post("/accounts/login/", {"username": "alice_manager", "password": "wrong"}).status_code
                 for _ in range(5)]
        self.assertEqual(codes, [200, 200, 200, 200, 429])  # the form again with an error, then locked
        response = client.post("/accounts/login/", {"username": "alice_manager", "password": "password"})
        self.assertEqual(response.status_code, 429)
        self.assertIn("Too many failed sign-in attempts", response.json()["detail"])

    @override_settings(AXES_ENABLED=True)
    def test_a_good_password_before_the_limit_works(self):
        client = Client(REMOTE_ADDR="10.1.2.4")
        client.post("/accounts/login/", {"username": "alice_manager", "password": "wrong"})
        response = client.post("/accounts/login/", {"username": "alice_manager", "password": "password"})
        self.assertEqual(response.status_code, 302)


class TokenThrottleTestCase(BaseTestCase):
    def test_token_requests_are_rate_limited(self):
        from unittest import mock

        from rest_framework.throttling import ScopedRateThrottle

        cache.clear()
        # DRF reads the rates once at import; the production default is 10/min (TOKEN_THROTTLE_RATE).
        with mock.patch.object(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "3/min"}):
            codes = [self.client.post("/api/auth/token/", {"username": "alice_annotator", "password": "x"}).status_code
                     for _ in range(4)]
        self.assertEqual(codes, [400, 400, 400, 429])
        cache.clear()


class CsrfTestCase(BaseTestCase):
    def test_session_writes_need_the_csrf_token(self):
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.manager)
        url = f"/api/projects/{self.project.pk}/labels/"
        body = {"name": "spleen", "value": 3, "color": "#0000ff"}
        response = client.post(url, body, content_type="application/json")
        self.assertEqual(response.status_code, 403)
        self.assertIn("CSRF", response.json()["detail"])
        client.get("/")  # sets the csrftoken cookie, as the app does
        token = client.cookies["csrftoken"].value
        response = client.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
        self.assertEqual(response.status_code, 201, response.content)


class MediaAndMetricsTestCase(BaseTestCase):
    def test_media_files_have_no_public_url(self):
        pet = self.scan.pet
        self.login(self.manager)
        for url in (f"/media/{pet.volume_file}", f"/{pet.volume_file}", f"/static/../media/{pet.volume_file}"):
            self.assertEqual(self.client.get(url).status_code, 404, url)

    def test_metrics_for_loopback_or_with_the_token(self):
        response = self.client.get("/metrics")
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"seganypet_prompt_round_trip_seconds", response.content)
        self.assertIn(b"django_http_requests_total", response.content)
        self.assertEqual(Client(REMOTE_ADDR="10.0.0.9").get("/metrics").status_code, 403)
        with override_settings(METRICS_TOKEN="s3cret"):
            self.assertEqual(self.client.get("/metrics").status_code, 401)
            self.assertEqual(self.client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code, 200)

    def test_request_ids_are_returned(self):
        response = self.client.get("/health/", HTTP_X_REQUEST_ID="abc-123")
        self.assertEqual(response["X-Request-ID"], "abc-123")
        self.assertEqual(len(self.client.get("/health/")["X-Request-ID"]), 32)


def test_production_refuses_debug(tmp_path):
    result = load_settings(tmp_path, DEBUG="true", PRODUCTION="true", SECRET_KEY="x" * 50)
    assert result.returncode != 0 and "DEBUG must be off" in result.stderr


@pytest.mark.django_db
def test_ingest_logs_no_patient_data(tmp_path, caplog):
    from backend.imaging.ingest import ingest_dicom
    from backend.imaging.models import Scan
    from backend.projects.models import Project
    from worker.phantoms import make_phantom, write_dicom_series

    phantom = make_phantom(seed=8, n_lesions=1, shape=(24, 32, 32))
    write_dicom_series(phantom, tmp_path, write_ct=False)
    broken = sorted(tmp_path.rglob("*.dcm"))
    broken[5].unlink()  # a failing ingest logs the most
    with caplog.at_level(logging.DEBUG):
        ingest_dicom(Scan.objects.create(project=Project.objects.create(name="p")), broken)
        ingest_dicom(Scan.objects.create(project=Project.objects.first()), sorted(tmp_path.rglob("*.dcm")))
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert phantom.patient.name not in text and phantom.patient.patient_id not in text
