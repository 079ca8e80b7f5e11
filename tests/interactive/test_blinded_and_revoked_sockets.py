"""F5: in a blinded project, `mask.accepted` names no annotation or version of another reader.
F6: removing a member closes their open sockets on the project's scans within a second."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async

from backend.projects.models import Membership
from tests.annotations.helpers import client_for
from tests.base import make_project_world, make_user
from tests.interactive.conftest import connect_client, lesion_point

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("eager_tasks")]


async def accepted_as_seen_by_another_reader(world, phantom, blinded: bool) -> dict:
    scan = world["pet_scan"]

    def setup():
        world["project"].blinded_double_read = blinded
        world["project"].save()
        second = make_user("dora")
        Membership.objects.create(project=world["project"], user=second, is_annotator=True)
        return second

    second = await sync_to_async(setup)()
    watcher = await connect_client(second, scan)
    reader = await connect_client(world["annotator"], scan)
    session = await reader.open_session(world["lesion"].pk)
    await reader.send(type="prompt", session=session, seq=1, point={"index": lesion_point(phantom), "positive": True})
    await reader.receive()
    await reader.send(type="accept", session=session, seq=2)
    accepted = await reader.receive()
    assert accepted["type"] == "accepted" and accepted["annotation"]  # the reader's own reply names it
    seen = await watcher.receive()
    await reader.close()
    await watcher.close()
    return seen


async def test_blinded_readers_get_no_annotation_ids(phantom_world, interactive_phantom):
    seen = await accepted_as_seen_by_another_reader(phantom_world, interactive_phantom, blinded=True)
    assert seen == {"type": "mask.accepted", "user": "alice_annotator", "label": phantom_world["lesion"].pk}


async def test_unblinded_readers_get_them(phantom_world, interactive_phantom):
    seen = await accepted_as_seen_by_another_reader(phantom_world, interactive_phantom, blinded=False)
    assert seen["type"] == "mask.accepted" and seen["annotation"] and seen["version"]


@pytest.fixture
def world(transactional_db):
    return make_project_world("alice")


async def test_a_removed_member_is_disconnected_within_a_second(world):
    reader = await connect_client(world["annotator"], world["scan"])
    bystander = await connect_client(world["reviewer"], world["scan"])

    def remove():
        membership = Membership.objects.get(project=world["project"], user=world["annotator"])
        response = client_for(world["manager"]).delete(
            f"/api/projects/{world['project'].pk}/members/{membership.pk}/")
        assert response.status_code == 204, response.content

    await sync_to_async(remove)()
    removed_at = time.monotonic()
    error = await reader.receive(timeout=1)
    assert error["type"] == "error" and error["code"] == "forbidden", error
    closed = await reader.receive(timeout=1)
    assert closed == {"type": "closed", "code": 4404}
    assert time.monotonic() - removed_at < 1.0
    # Everyone else stays connected.
    await bystander.send(type="ping", seq=1)
    assert await bystander.receive() == {"type": "pong", "seq": 1}
    await bystander.close()
