from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models


class Role(models.TextChoices):
    MANAGER = "manager", "Manager"
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"


def default_allowed_engines() -> list[str]:
    """Every engine the registry knows: a project may use any until a manager narrows the choice."""
    from worker.engines.registry import engine_names  # torch-free listing

    return engine_names()


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    # Engine used for interactive segmentation unless a request names another.
    default_engine = models.CharField(max_length=50, default="threshold")
    # Engines an annotator may pick in the viewer; the default engine is always one of them.
    allowed_engines = models.JSONField(default=default_allowed_engines, blank=True)
    required_approvals = models.PositiveSmallIntegerField(
        default=1, help_text="How many distinct reviewers must approve an annotation."
    )
    blinded_double_read = models.BooleanField(
        default=False, help_text="Annotators do not see each other's work on a scan until both have submitted."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's roles in one project; a person may hold several roles at once."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    is_manager = models.BooleanField(default=False)
    is_annotator = models.BooleanField(default=False)
    is_reviewer = models.BooleanField(default=False)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user__username"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({', '.join(self.roles) or 'no role'})"

    @property
    def roles(self) -> list[str]:
        flags = {Role.MANAGER: self.is_manager, Role.ANNOTATOR: self.is_annotator, Role.REVIEWER: self.is_reviewer}
        return [role.value for role, held in flags.items() if held]

    def set_roles(self, roles: list[str]) -> None:
        self.is_manager = Role.MANAGER in roles
        self.is_annotator = Role.ANNOTATOR in roles
        self.is_reviewer = Role.REVIEWER in roles

    def has_any(self, roles: set[str]) -> bool:
        return bool(roles & set(self.roles))


class LabelKind(models.TextChoices):
    ORGAN = "organ", "Organ"
    LESION = "lesion", "Lesion"
    OTHER = "other", "Other"


class Label(models.Model):
    """One entry of a project's label set; `value` is the integer written into label maps."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    value = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(255)],
        help_text="Integer used in exported label maps (1-255).",
    )
    color = models.CharField(
        max_length=7, validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", "Colour must look like #rrggbb.")]
    )
    kind = models.CharField(max_length=10, choices=LabelKind.choices, default=LabelKind.OTHER)
    # A label that annotations use is archived instead of deleted: their objects and exports keep it,
    # new objects cannot take it. Its name and value stay taken.
    archived = models.BooleanField(default=False)

    class Meta:
        ordering = ["project", "value"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="unique_label_name_per_project"),
            models.UniqueConstraint(fields=["project", "value"], name="unique_label_value_per_project"),
            models.CheckConstraint(condition=models.Q(value__gte=1, value__lte=255), name="label_value_1_255"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.value})"
