"""The engines a project allows: listed for members, changed by managers, checked against the registry."""

from backend.projects.models import Project
from tests.base import BaseTestCase


class ProjectEnginesTestCase(BaseTestCase):
    def url(self, suffix: str = "") -> str:
        return f"/api/projects/{self.project.pk}/{suffix}"

    def test_it_works(self):
        self.client.force_login(self.manager)
        response = self.client.patch(self.url(), {"allowed_engines": ["threshold", "seganypet-demo"],
                                                  "default_engine": "threshold"}, content_type="application/json")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["allowed_engines"], ["threshold", "seganypet-demo"])
        self.client.force_login(self.annotator)
        rows = self.client.get(self.url("engines/")).json()
        allowed = {r["name"] for r in rows if r["allowed"]}
        self.assertEqual(allowed, {"threshold", "seganypet-demo"})
        self.assertEqual([r["name"] for r in rows if r["default"]], ["threshold"])

    def test_it_refuses_unknown_engines_and_a_default_outside_the_list(self):
        self.client.force_login(self.manager)
        unknown = self.client.patch(self.url(), {"allowed_engines": ["threshold", "magic"]},
                                    content_type="application/json")
        self.assertEqual(unknown.status_code, 400)
        self.assertIn("magic", str(unknown.json()))
        outside = self.client.patch(self.url(), {"allowed_engines": ["threshold"], "default_engine": "seganypet-demo"},
                                    content_type="application/json")
        self.assertEqual(outside.status_code, 400)
        self.assertIn("default_engine", outside.json())
        self.project.refresh_from_db()
        self.assertEqual(self.project.allowed_engines, ["threshold", "seganypet", "seganypet-demo"])

    def test_a_new_project_allows_every_engine(self):
        self.assertEqual(self.project.allowed_engines, ["threshold", "seganypet", "seganypet-demo"])

    def test_a_new_default_joins_the_allowed_engines(self):
        self.project.allowed_engines = ["threshold"]
        self.project.save()
        self.client.force_login(self.manager)
        response = self.client.patch(self.url(), {"default_engine": "seganypet-demo"}, content_type="application/json")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(Project.objects.get(pk=self.project.pk).allowed_engines, ["threshold", "seganypet-demo"])

    def test_it_checks_membership(self):
        self.client.force_login(self.other_manager)
        self.assertEqual(self.client.get(self.url("engines/")).status_code, 404)
        self.client.force_login(self.annotator)
        response = self.client.patch(self.url(), {"allowed_engines": ["threshold"]}, content_type="application/json")
        self.assertEqual(response.status_code, 403)


class ApiDocsOfflineTestCase(BaseTestCase):
    def test_swagger_ui_assets_are_served_locally(self):
        self.client.force_login(self.manager)
        page = self.client.get("/api/docs/").content.decode()
        self.assertNotIn("cdn.jsdelivr.net", page)
        self.assertIn("swagger-ui", page)
        self.assertIn("/static/drf_spectacular_sidecar/", page)
