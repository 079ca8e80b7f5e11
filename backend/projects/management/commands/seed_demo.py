"""Create what is missing of the demo project, its labels, users and scans. Idempotent, and never overwrites what
users changed since (roles, passwords, labels, the project's engines): `make run` runs it on every start."""

import tempfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan, ScanStatus
from backend.projects.models import Label, LabelKind, Membership, Project
from worker.phantoms import make_phantom, write_dicom_series

DEMO_PROJECT = "Demo whole-body FDG PET"
# username -> (password, roles, is_staff)
DEMO_USERS = {
    "manager": ("demo-manager-pass", ["manager"], True),
    "annotator1": ("demo-annotator1-pass", ["annotator"], False),
    "annotator2": ("demo-annotator2-pass", ["annotator"], False),
    "reviewer": ("demo-reviewer-pass", ["reviewer"], False),
}
# Whole body at 4 mm: large enough to look real, small enough to generate in seconds.
DEMO_PHANTOM_SIZE = {"shape": (220, 128, 128), "spacing": (4.0, 4.0, 4.0)}
# name, seed, tracer, phantom options
DEMO_SCANS = [
    ("Phantom A, FDG (synthetic)", 2026, "FDG", {"n_lesions": 6}),
    ("Phantom B, FDG feet-first (synthetic)", 2027, "FDG", {"n_lesions": 4, "feet_first": True}),
]
DEMO_LABELS = [
    ("liver", 1, "#c8783c", LabelKind.ORGAN),
    ("kidney", 2, "#b43cb4", LabelKind.ORGAN),
    ("spleen", 3, "#3c8cc8", LabelKind.ORGAN),
    ("heart", 4, "#dc3c3c", LabelKind.ORGAN),
    ("lesion", 5, "#f0dc28", LabelKind.LESION),
]


class Command(BaseCommand):
    help = "Create the demo project, its label set and demo users (manager, two annotators, reviewer)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--skip-scan", action="store_true", help="do not generate the demo phantom scans")

    def _ensure_demo_scans(self, project: Project, skip: bool) -> None:
        for name, seed, tracer, options in DEMO_SCANS:
            if skip or Scan.objects.filter(project=project, name=name, status=ScanStatus.READY).exists():
                continue
            Scan.objects.filter(project=project, name=name).delete()  # a failed earlier attempt
            self.stdout.write(f"Generating the synthetic PET/CT phantom '{name}' ...")
            phantom = make_phantom(seed=seed, tracer=tracer, **DEMO_PHANTOM_SIZE, **options)
            with tempfile.TemporaryDirectory() as folder:
                write_dicom_series(phantom, folder)
                scan = Scan.objects.create(project=project, name=name, tracer=tracer)
                ingest_dicom(scan, sorted(p for p in Path(folder).rglob("*") if p.is_file()))
            if scan.status == ScanStatus.FAILED:
                raise CommandError(f"The demo scan '{name}' could not be ingested: {scan.status_message}")

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        from worker.engines.registry import available_engines  # torch-free listing

        runnable = [e["name"] for e in available_engines() if e["available"]]
        # The demo model when its weights are here (make run preloads it), else the classical engine.
        default = "seganypet-demo" if "seganypet-demo" in runnable else "threshold"
        project, created = Project.objects.get_or_create(
            name=DEMO_PROJECT,
            defaults={"description": "Synthetic phantoms for trying SegAnyPET Studio. Not patient data.",
                      "default_engine": default, "allowed_engines": runnable or [default]},
        )
        if created:
            for name, value, color, kind in DEMO_LABELS:
                Label.objects.get_or_create(project=project, value=value,
                                            defaults={"name": name, "color": color, "kind": kind})
        User = get_user_model()
        for username, (password, roles, is_staff) in DEMO_USERS.items():
            user, user_created = User.objects.get_or_create(username=username)
            if user_created:
                user.set_password(password)
                user.is_staff = is_staff
                user.is_superuser = is_staff
                user.save()
            membership, membership_created = Membership.objects.get_or_create(project=project, user=user)
            if membership_created:
                membership.set_roles(roles)
                membership.save()
        self._ensure_demo_scans(project, options.get("skip_scan", False))
        self.stdout.write(self.style.SUCCESS(f"Demo project: {project.name} (id {project.pk})"))
        self.stdout.write("Demo users (username / password / roles):")
        for username, (password, roles, _) in DEMO_USERS.items():
            self.stdout.write(f"  {username:<11} {password:<22} {', '.join(roles)}")
