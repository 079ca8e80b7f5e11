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
