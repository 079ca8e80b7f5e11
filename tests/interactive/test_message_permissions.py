"""Every client message type × role, generated from the protocol's list of message types."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from backend.asgi import application
from backend.interactive import protocol
from backend.interactive.consumers import MESSAGE_ROLES
from tests.base import make_project_world, make_user
from tests.foundation.test_websocket_auth import session_headers
from tests.interactive.conftest import connect_client

pytestmark = [pytest.mark.usefixtures("eager_tasks")]  # asyncio_mode = auto runs the async tests

SAMPLE = {
    "ping": {"seq": 1},
    "activity": {"activity": "reading"},
    "session.open": {"label": None},
    "prompt": {"session": "00000000-0000-0000-0000-000000000000", "seq": 1, "point": {"index": [1, 1, 1]}},
    "undo": {"session": "00000000-0000-0000-0000-000000000000", "seq": 1},
    "redo": {"session": "00000000-0000-0000-0000-000000000000", "seq": 1},
    "reset": {"session": "00000000-0000-0000-0000-000000000000", "seq": 1},
    "accept": {"session": "00000000-0000-0000-0000-000000000000", "seq": 1},
    "session.close": {"session": "00000000-0000-0000-0000-000000000000"},
}


def test_every_message_type_has_a_role_policy_and_a_sample():
    assert set(MESSAGE_ROLES) == protocol.CLIENT_TYPES
    assert set(SAMPLE) == protocol.CLIENT_TYPES


@pytest.mark.parametrize("message_type", sorted(protocol.CLIENT_TYPES))
@pytest.mark.parametrize("role", ["annotator", "reviewer", "manager"])
async def test_roles_per_message_type(transactional_db, message_type, role):
    world = await sync_to_async(make_project_world)("alice")
    client = await connect_client(world[role], world["scan"])
    fields = dict(SAMPLE[message_type])
    if message_type == "session.open":
        fields["label"] = world["label"].pk
    await client.send(type=message_type, **fields)
    await client.send(type="ping", seq=99)  # a marker: every reply to the message comes before its pong
    replies = []
    while not replies or replies[-1] != {"type": "pong", "seq": 99}:
        replies.append(await client.receive())
    forbidden = [r for r in replies if r.get("type") == "error" and r.get("code") == "forbidden"]
    if role in MESSAGE_ROLES[message_type]:
        assert not forbidden, replies
    else:
        assert len(forbidden) == 1, replies
    await client.close()


@pytest.mark.parametrize("who", ["anonymous", "outsider", "other_project_manager"])
async def test_non_members_cannot_connect(transactional_db, who):
    world = await sync_to_async(make_project_world)("alice")
    other = await sync_to_async(make_project_world)("charlie")
    headers = [(b"origin", b"http://localhost")]
    if who == "outsider":
        headers = await sync_to_async(session_headers)(await sync_to_async(make_user)("mallory"))
    elif who == "other_project_manager":
        headers = await sync_to_async(session_headers)(other["manager"])
    communicator = WebsocketCommunicator(application, f"/ws/scans/{world['scan'].pk}/", headers=headers)
    connected, code = await communicator.connect(timeout=10)
    assert not connected and code == (4401 if who == "anonymous" else 4404)


async def test_revoked_membership_closes_the_socket(transactional_db):
    world = await sync_to_async(make_project_world)("alice")
    client = await connect_client(world["annotator"], world["scan"])
    await sync_to_async(world["project"].memberships.filter(user=world["annotator"]).delete)()
    await client.send(type="ping", seq=1)
    reply = await client.receive()
    assert reply == {"type": "closed", "code": 4404}
