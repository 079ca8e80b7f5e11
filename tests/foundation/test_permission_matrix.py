"""Every API route × HTTP method × role, generated from the URL conf and each view's role policy.

A new endpoint is covered without editing this file: it must declare a `role_policy`
for its actions, and its model must have an object in the fixture project.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tests.base import make_project_world, make_user

ROLES = ["anonymous", "outsider", "other_manager", "annotator", "reviewer", "manager"]
# Routes outside any project: their rules are tested in their own files.
NOT_PROJECT_SCOPED = {"api-root", "api-token", "schema", "api-docs", "project-list"}


@dataclass(frozen=True)
class Route:
    name: str
    regex: str
    viewset: type
    actions: dict[str, str]


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def api_routes() -> list[Route]:
    routes = []
    for regex, pattern in _walk(get_resolver().url_patterns):
        if not regex.startswith("api/") or pattern.name in NOT_PROJECT_SCOPED or "format" in regex:
            continue
        viewset = getattr(pattern.callback, "cls", None)
        actions = getattr(pattern.callback, "actions", None)
        assert viewset is not None and actions, f"{regex} is not a viewset route: add it to the matrix"
        routes.append(Route(pattern.name, regex, viewset, dict(actions)))
    return routes


def _cases():
    for route in api_routes():
        for method, action in route.actions.items():
            for role in ROLES:
                yield pytest.param(route, method, action, role, id=f"{route.name}-{method}-{role}")


def _fill(regex: str, project_pk: int, pk: int | None) -> str:
    values = {"project_pk": project_pk, "pk": pk}
    url = "/" + re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(values[m.group(1)]), regex)
    return url.replace("^", "").replace("$", "")


def _object_in(route: Route, world: dict) -> int | None:
    if "(?P<pk>" not in route.regex:
        return None
    model = route.viewset.queryset.model
    if model.__name__ == "Project":
        return world["project"].pk
    # Prefer an object that does not belong to the manager, so destroying it is allowed.
    candidates = model.objects.filter(project=world["project"]).order_by("-pk")
    obj = candidates.first()
    assert obj is not None, f"the fixture world has no {model.__name__}: add one to make_project_world"
    return obj.pk


@pytest.mark.django_db
@pytest.mark.parametrize("route,method,action,role", list(_cases()))
def test_role_matrix(route: Route, method: str, action: str, role: str) -> None:
    world = make_project_world("alice")
    other = make_project_world("charlie")
    client = APIClient()
    if role == "outsider":
        client.force_authenticate(make_user("mallory"))
    elif role == "other_manager":
        client.force_authenticate(other["manager"])
    elif role != "anonymous":
        client.force_authenticate(world[role])

    url = _fill(route.regex, world["project"].pk, _object_in(route, world))
    response = getattr(client, method)(url, {}, format="json")

    if role == "anonymous":
        assert response.status_code in (401, 403)
        return
    if role in ("outsider", "other_manager"):
        # Other projects' objects do not exist for them, and the body says nothing more.
        assert response.status_code == 404, response.content
        return
    allowed = route.viewset.role_policy.get(action)
    assert allowed is not None, f"{route.viewset.__name__} has no role policy for {action!r}"
    if role in allowed:
        assert response.status_code not in (401, 403, 404, 405), (response.status_code, response.content)
    else:
        assert response.status_code == 403, (response.status_code, response.content)


@pytest.mark.django_db
def test_cross_project_object_ids_answer_404() -> None:
    """A member holding every role in their own project asks for another project's objects through it."""
    world = make_project_world("alice")
    other = make_project_world("charlie")
    membership = other["project"].memberships.get(user=other["manager"])
    membership.set_roles(["manager", "annotator", "reviewer"])
    membership.save()
    client = APIClient()
    client.force_authenticate(other["manager"])
    checked = 0
    for route in api_routes():
        if "(?P<pk>" not in route.regex or "(?P<project_pk>" not in route.regex:
            continue
        url = _fill(route.regex, other["project"].pk, _object_in(route, world))
        for method in route.actions:
            response = getattr(client, method)(url, {}, format="json")
            assert response.status_code == 404, (url, method, response.status_code)
            checked += 1
    assert checked >= 9


def test_the_matrix_covers_every_project_route() -> None:
    names = {route.name for route in api_routes()}
    assert {"project-detail", "membership-list", "membership-detail", "label-list", "label-detail",
            "scan-list", "scan-detail"} <= names


# --- role combinations on a blinded project ----------------------------------------------------------
# A person may hold several roles. Each action is allowed when any held role allows it; and blinding
# follows the reading: a combination that reads the scan itself (its own draft there) does not see the
# other reader's draft, whatever its other roles, so routes on that annotation answer 404.

COMBINATIONS = [("annotator", "reviewer"), ("manager", "reviewer"), ("manager", "annotator")]


def _combination_cases():
    for route in api_routes():
        for method, action in route.actions.items():
            for roles in COMBINATIONS:
                yield pytest.param(route, method, action, roles, id=f"{route.name}-{method}-{'+'.join(roles)}")


def _reads_another_readers_work(route: Route) -> bool:
    model = route.viewset.queryset.model
    return "(?P<pk>" in route.regex and (model.__name__ == "Annotation" or hasattr(model, "version"))


@pytest.mark.django_db
@pytest.mark.parametrize("route,method,action,roles", list(_combination_cases()))
def test_role_combinations_on_a_blinded_project(route: Route, method: str, action: str, roles: tuple) -> None:
    import numpy as np

    from backend.annotations.services import open_annotation, save_version
    from backend.projects.models import Membership

    world = make_project_world("alice")
    world["project"].blinded_double_read = True
    world["project"].save()
    person = make_user("pat")
    membership = Membership(project=world["project"], user=person)
    membership.set_roles(list(roles))
    membership.save()
    # Pat reads the scan too: a draft of their own beside the annotator's draft.
    own, _ = open_annotation(world["scan"], person)
    save_version(own, person, base_version_id=None, object_map=np.ones((4, 4, 4), dtype=np.uint8),
                 segments=[{"id": 1, "label": world["label"].pk}], source="manual")
    client = APIClient()
    client.force_authenticate(person)

    model = route.viewset.queryset.model
    if _reads_another_readers_work(route):
        target = world["annotation"]  # the other reader's draft
        pk = target.pk if model.__name__ == "Annotation" else model.objects.filter(
            version__annotation=target).values_list("pk", flat=True).first()
    elif model.__name__ == "Membership" and "(?P<pk>" in route.regex:
        pk = Membership.objects.get(project=world["project"], user=world["reviewer"]).pk
    else:
        pk = _object_in(route, world)
    response = getattr(client, method)(_fill(route.regex, world["project"].pk, pk), {}, format="json")

    allowed = route.viewset.role_policy.get(action)
    assert allowed is not None, f"{route.viewset.__name__} has no role policy for {action!r}"
    if not set(roles) & set(allowed):
        assert response.status_code == 403, (response.status_code, response.content)
    elif _reads_another_readers_work(route):
        assert response.status_code == 404, (response.status_code, response.content)  # blinded
    else:
        assert response.status_code not in (401, 403, 404, 405), (response.status_code, response.content)
