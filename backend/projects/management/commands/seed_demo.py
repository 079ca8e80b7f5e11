"""Create (or bring back to its known state) the demo project and demo users. Idempotent."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from backend.projects.models import Label, LabelKind, Membership, Project

DEMO_PROJECT = "Demo whole-body FDG PET"
# username -> (password, roles, is_staff)
DEMO_USERS = {
    "manager": ("demo-manager-pass", ["manager"], True),
    "annotator1": ("demo-annotator1-pass", ["annotator"], False),
    "annotator2": ("demo-annotator2-pass", ["annotator"], False),
    "reviewer": ("demo-reviewer-pass", ["reviewer"], False),
}
DEMO_LABELS = [
    ("liver", 1, "#c8783c", LabelKind.ORGAN),
    ("kidney", 2, "#b43cb4", LabelKind.ORGAN),
    ("spleen", 3, "#3c8cc8", LabelKind.ORGAN),
    ("heart", 4, "#dc3c3c", LabelKind.ORGAN),
    ("lesion", 5, "#f0dc28", LabelKind.LESION),
]


class Command(BaseCommand):
    help = "Create the demo project, its label set and demo users (manager, two annotators, reviewer)."

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        project, _ = Project.objects.get_or_create(
            name=DEMO_PROJECT,
            defaults={"description": "Synthetic phantoms for trying SegAnyPET Studio. Not patient data."},
        )
        for name, value, color, kind in DEMO_LABELS:
            Label.objects.update_or_create(project=project, value=value, defaults={"name": name, "color": color, "kind": kind})
        User = get_user_model()
        for username, (password, roles, is_staff) in DEMO_USERS.items():
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = is_staff
            user.is_superuser = is_staff
            user.save()
            membership, _ = Membership.objects.get_or_create(project=project, user=user)
            membership.set_roles(roles)
            membership.save()
        self.stdout.write(self.style.SUCCESS(f"Demo project: {project.name} (id {project.pk})"))
        self.stdout.write("Demo users (username / password / roles):")
        for username, (password, roles, _) in DEMO_USERS.items():
            self.stdout.write(f"  {username:<11} {password:<22} {', '.join(roles)}")
