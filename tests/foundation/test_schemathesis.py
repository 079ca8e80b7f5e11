"""Schemathesis against the project's own OpenAPI schema: no 500 and no response that
violates the schema, for every operation, called as a manager of the fixture project."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = pytest.mark.slow

schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def api_schema(transactional_db):
    return schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@pytest.fixture
def manager_token(transactional_db):
    from tests.base import make_project_world

    world = make_project_world("alice")
    world["manager"].is_staff = True
    world["manager"].save()
    return Token.objects.create(user=world["manager"]).key


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, manager_token):
    response = case.call(headers={"Authorization": f"Token {manager_token}"})
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
