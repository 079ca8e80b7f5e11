from rest_framework.test import APIClient

from backend.projects.models import Label, Membership, Project
from tests.base import BaseTestCase


class ProjectListTestCase(BaseTestCase):
    def test_it_works(self):
        self.login(self.annotator)
        response = self.client.get("/api/projects/")
        self.assertEqual(response.status_code, 200)
        body = response.json()
        self.assertEqual([p["name"] for p in body["results"]], [self.project.name])
        self.assertEqual(body["results"][0]["my_roles"], ["annotator"])

    def test_it_checks_membership(self):
        self.login(self.outsider)
        response = self.client.get("/api/projects/")
        self.assertEqual(response.json()["results"], [])

    def test_it_searches(self):
        Membership.objects.create(project=self.other_project, user=self.annotator, is_annotator=True)
        self.login(self.annotator)
        response = self.client.get("/api/projects/", {"search": "charlie"})
        self.assertEqual([p["name"] for p in response.json()["results"]], [self.other_project.name])


class ProjectCreateTestCase(BaseTestCase):
    def test_staff_creates_and_becomes_manager(self):
        self.manager.is_staff = True
        self.manager.save()
        self.login(self.manager)
        response = self.client.post("/api/projects/", {"name": "New study"}, content_type="application/json")
        self.assertEqual(response.status_code, 201, response.content)
        project = Project.objects.get(name="New study")
        self.assertTrue(Membership.objects.get(project=project, user=self.manager).is_manager)

    def test_non_staff_cannot_create(self):
        self.login(self.manager)
        response = self.client.post("/api/projects/", {"name": "New study"}, content_type="application/json")
        self.assertEqual(response.status_code, 403)
        self.assertFalse(Project.objects.filter(name="New study").exists())


class MembershipApiTestCase(BaseTestCase):
    def url(self, project=None):
        return f"/api/projects/{(project or self.project).pk}/members/"

    def test_it_works(self):
        self.login(self.reviewer)
        response = self.client.get(self.url())
        usernames = {m["username"]: m["roles"] for m in response.json()["results"]}
        self.assertEqual(usernames, {"alice_manager": ["manager"], "alice_annotator": ["annotator"],
                                     "alice_reviewer": ["reviewer"]})

    def test_it_checks_membership(self):
        self.login(self.other_manager)
        self.assertEqual(self.client.get(self.url()).status_code, 404)

    def test_manager_adds_member_with_several_roles(self):
        self.login(self.manager)
        response = self.client.post(self.url(), {"username": "mallory", "roles": ["annotator", "reviewer"]},
                                    content_type="application/json")
        self.assertEqual(response.status_code, 201, response.content)
        membership = Membership.objects.get(project=self.project, user=self.outsider)
        self.assertEqual(membership.roles, ["annotator", "reviewer"])

    def test_duplicate_member_is_refused(self):
        self.login(self.manager)
        response = self.client.post(self.url(), {"username": "alice_annotator", "roles": ["reviewer"]},
                                    content_type="application/json")
        self.assertEqual(response.status_code, 400)
        self.assertIn("already a member", str(response.json()))

    def test_unknown_role_is_refused(self):
        self.login(self.manager)
        response = self.client.post(self.url(), {"username": "mallory", "roles": ["owner"]},
                                    content_type="application/json")
        self.assertEqual(response.status_code, 400)
        self.assertFalse(Membership.objects.filter(user=self.outsider).exists())

    def test_last_manager_cannot_leave(self):
        self.login(self.manager)
        membership = Membership.objects.get(project=self.project, user=self.manager)
        response = self.client.delete(f"{self.url()}{membership.pk}/")
        self.assertEqual(response.status_code, 400)
        self.assertIn("at least one manager", str(response.json()))
        response = self.client.patch(f"{self.url()}{membership.pk}/", {"roles": ["annotator"]},
                                     content_type="application/json")
        self.assertEqual(response.status_code, 400)
        membership.refresh_from_db()
        self.assertTrue(membership.is_manager)


class LabelApiTestCase(BaseTestCase):
    def url(self):
        return f"/api/projects/{self.project.pk}/labels/"

    def test_it_works(self):
        self.login(self.annotator)
        response = self.client.get(self.url())
        self.assertEqual(response.json()["results"], [
            {"id": self.label.pk, "name": "liver", "value": 1, "color": "#aa5500", "kind": "organ", "archived": False}
        ])

    def test_it_checks_membership(self):
        self.login(self.outsider)
        self.assertEqual(self.client.get(self.url()).status_code, 404)

    def test_manager_adds_label(self):
        self.login(self.manager)
        response = self.client.post(self.url(), {"name": "lesion", "value": 2, "color": "#ffee00", "kind": "lesion"},
                                    content_type="application/json")
        self.assertEqual(response.status_code, 201, response.content)
        self.assertTrue(Label.objects.filter(project=self.project, name="lesion", kind="lesion").exists())

    def test_label_values_and_colours_are_validated(self):
        self.login(self.manager)
        for bad in ({"name": "x", "value": 1, "color": "#000000"}, {"name": "x", "value": 300, "color": "#000000"},
                    {"name": "x", "value": 3, "color": "red"}, {"name": "liver", "value": 4, "color": "#000000"}):
            response = self.client.post(self.url(), bad, content_type="application/json")
            self.assertEqual(response.status_code, 400, bad)
        self.assertEqual(Label.objects.filter(project=self.project).count(), 1)

    def test_same_name_in_another_project_is_fine(self):
        self.login(self.manager)
        self.assertEqual(self.other_label.name, "liver")
        response = self.client.post(self.url(), {"name": "spleen", "value": 3, "color": "#0000ff"},
                                    content_type="application/json")
        self.assertEqual(response.status_code, 201)


class ScanApiTestCase(BaseTestCase):
    def url(self):
        return f"/api/projects/{self.project.pk}/scans/"

    def test_it_works(self):
        self.login(self.reviewer)
        body = self.client.get(self.url()).json()
        self.assertEqual(body["count"], 1)
        scan = body["results"][0]
        self.assertEqual(scan["name"], "alice scan")
        pet = next(series for series in scan["series"] if series["modality"] == "PT")
        self.assertEqual(pet["shape"], [4, 4, 4])
        self.assertEqual(pet["units"], "SUVbw")

    def test_it_checks_membership(self):
        self.login(self.other_manager)
        self.assertEqual(self.client.get(f"{self.url()}{self.scan.pk}/").status_code, 404)
        self.assertEqual(self.client.get(f"/api/projects/{self.other_project.pk}/scans/{self.scan.pk}/").status_code, 404)

    def test_it_filters_and_paginates(self):
        from backend.imaging.models import Scan

        for i in range(60):
            Scan.objects.create(project=self.project, name=f"s{i}", status="failed" if i % 2 else "ready")
        self.login(self.annotator)
        body = self.client.get(self.url(), {"status": "failed"}).json()
        self.assertEqual(body["count"], 30)
        self.assertEqual(len(body["results"]), 30)
        body = self.client.get(self.url()).json()
        self.assertEqual(body["count"], 61)
        self.assertEqual(len(body["results"]), 50)
        self.assertIsNotNone(body["next"])


class TokenAuthTestCase(BaseTestCase):
    def test_scripts_use_tokens(self):
        response = self.client.post("/api/auth/token/", {"username": "alice_annotator", "password": "password"})
        self.assertEqual(response.status_code, 200)
        token = response.json()["token"]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        self.assertEqual(client.get(f"/api/projects/{self.project.pk}/scans/").status_code, 200)
        client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
        self.assertEqual(client.get(f"/api/projects/{self.project.pk}/scans/").status_code, 401)

    def test_wrong_password_gets_no_token(self):
        response = self.client.post("/api/auth/token/", {"username": "alice_annotator", "password": "nope"})
        self.assertEqual(response.status_code, 400)


class PagesTestCase(BaseTestCase):
    def test_home_needs_login(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 302)
        self.assertIn("/accounts/login/", response["Location"])

    def test_login_then_home_lists_projects(self):
        response = self.client.post("/accounts/login/", {"username": "alice_reviewer", "password": "password"})
        self.assertEqual(response.status_code, 302)
        page = self.client.get("/")
        self.assertEqual(page.status_code, 200)
        if b'id="app"' in page.content:  # the built viewer: it lists projects through the API
            self.assertIn(b"/static/assets/", page.content)
        else:  # no frontend build: the server-rendered project list
            self.assertIn(b"alice project", page.content)
            self.assertNotIn(b"charlie project", page.content)

    def test_schema_and_docs(self):
        self.login(self.annotator)
        schema = self.client.get("/api/schema/")
        self.assertEqual(schema.status_code, 200)
        self.assertIn(b"/api/projects/{project_pk}/scans/", schema.content)
        self.assertEqual(self.client.get("/api/docs/").status_code, 200)

    def test_admin_lists_projects(self):
        self.manager.is_staff = self.manager.is_superuser = True
        self.manager.save()
        self.login(self.manager)
        response = self.client.get("/admin/projects/project/")
        self.assertContains(response, "alice project")
        for url in ("/admin/imaging/scan/", "/admin/imaging/series/", "/admin/projects/label/",
                    "/admin/projects/membership/"):
            self.assertEqual(self.client.get(url).status_code, 200, url)
