"""Who may see and do what in a project.

Objects of a project the user is not a member of do not exist for that user: lookups
raise Http404, never 403, so nothing leaks about other projects.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404

from .models import Membership, Project


def membership_for(user: AbstractBaseUser | AnonymousUser, project_id: object) -> Membership:
    if not user.is_authenticated:
        raise Http404("No such project.")
    try:
        return Membership.objects.select_related("project").get(project_id=int(str(project_id)), user=user)
    except (Membership.DoesNotExist, ValueError):
        raise Http404("No such project.") from None


def projects_visible_to(user: AbstractBaseUser | AnonymousUser):
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user=user).distinct()


def project_by_key(key: str) -> Project | None:
    """A project named on a command line: its id, or else its name."""
    query = Project.objects.filter(pk=int(key)) if key.isdigit() else Project.objects.filter(name=key)
    return query.first()
