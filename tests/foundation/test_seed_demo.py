from io import StringIO

from django.contrib.auth import authenticate
from django.core.management import call_command
from django.test import TestCase

from backend.imaging.models import Scan, ScanStatus
from backend.projects.management.commands.seed_demo import DEMO_PROJECT, DEMO_USERS
from backend.projects.models import Label, Membership, Project


class SeedDemoTestCase(TestCase):
    def test_it_is_idempotent_and_prints_credentials(self):
        out = StringIO()
        call_command("seed_demo", "--skip-scan", stdout=out)
        call_command("seed_demo", "--skip-scan", stdout=StringIO())
        self.assertEqual(Project.objects.filter(name=DEMO_PROJECT).count(), 1)
        project = Project.objects.get(name=DEMO_PROJECT)
        self.assertEqual(Membership.objects.filter(project=project).count(), 4)
        self.assertEqual(Label.objects.filter(project=project).count(), 5)
        roles = {m.user.username: m.roles for m in Membership.objects.filter(project=project)}
        self.assertEqual(roles["manager"], ["manager"])
        self.assertEqual(sorted(u for u, r in roles.items() if r == ["annotator"]), ["annotator1", "annotator2"])
        self.assertEqual(roles["reviewer"], ["reviewer"])
        for username, (password, _, _) in DEMO_USERS.items():
            self.assertIn(password, out.getvalue())
            self.assertIsNotNone(authenticate(username=username, password=password))

    def test_demo_manager_sees_project_in_api_and_admin(self):
        call_command("seed_demo", "--skip-scan", stdout=StringIO())
        self.assertTrue(self.client.login(username="manager", password=DEMO_USERS["manager"][0]))
        body = self.client.get("/api/projects/").json()
        self.assertEqual([p["name"] for p in body["results"]], [DEMO_PROJECT])
        self.assertContains(self.client.get("/admin/projects/project/"), DEMO_PROJECT)


class SeedDemoScanTestCase(TestCase):
    def test_it_ingests_two_demo_phantom_scans_once(self):
        call_command("seed_demo", stdout=StringIO())
        call_command("seed_demo", stdout=StringIO())
        project = Project.objects.get(name=DEMO_PROJECT)
        scans = Scan.objects.filter(project=project)
        self.assertEqual(scans.count(), 2)
        for scan in scans:
            self.assertEqual(scan.status, ScanStatus.READY, scan.status_message)
            self.assertEqual(scan.pet.units, "SUVbw")
            self.assertIsNotNone(scan.ct)


class SeedDemoKeepsChangesTestCase(TestCase):
    def test_it_keeps_roles_passwords_and_engines_users_changed(self):
        call_command("seed_demo", "--skip-scan", stdout=StringIO())
        project = Project.objects.get(name=DEMO_PROJECT)
        membership = Membership.objects.get(project=project, user__username="annotator2")
        membership.set_roles(["annotator", "reviewer"])
        membership.save()
        user = membership.user
        user.set_password("a-new-secret-pass")
        user.save()
        project.default_engine, project.allowed_engines = "threshold", ["threshold"]
        project.save()
        Label.objects.filter(project=project, name="heart").update(color="#000000")

        call_command("seed_demo", "--skip-scan", stdout=StringIO())

        membership.refresh_from_db()
        project.refresh_from_db()
        self.assertEqual(membership.roles, ["annotator", "reviewer"])
        self.assertIsNotNone(authenticate(username="annotator2", password="a-new-secret-pass"))
        self.assertEqual((project.default_engine, project.allowed_engines), ("threshold", ["threshold"]))
        self.assertEqual(Label.objects.get(project=project, name="heart").color, "#000000")

    def test_it_creates_what_is_missing(self):
        call_command("seed_demo", "--skip-scan", stdout=StringIO())
        Membership.objects.filter(user__username="reviewer").delete()
        call_command("seed_demo", "--skip-scan", stdout=StringIO())
        self.assertEqual(Membership.objects.get(user__username="reviewer").roles, ["reviewer"])

    def test_the_demo_project_uses_the_demo_model_when_its_weights_are_here(self):
        from worker.engines.registry import demo_availability

        call_command("seed_demo", "--skip-scan", stdout=StringIO())
        project = Project.objects.get(name=DEMO_PROJECT)
        expected = "seganypet-demo" if demo_availability().available else "threshold"
        self.assertEqual(project.default_engine, expected)
        self.assertIn(expected, project.allowed_engines)
        self.assertIn("threshold", project.allowed_engines)
