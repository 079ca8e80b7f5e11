"""The scan WebSocket refuses anonymous users and non-members, and accepts members with their session."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from backend.asgi import application
from tests.base import make_project_world, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    return [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()), (b"origin", b"http://localhost")]


async def receive_json(communicator: WebsocketCommunicator, skip: tuple[str, ...] = ("presence",)) -> dict:
    """The next JSON message, skipping broadcasts (presence) that interleave with replies."""
    while True:
        message = json.loads(await communicator.receive_from(timeout=10))
        if message.get("type") not in skip:
            return message


async def connect(path: str, headers: list[tuple[bytes, bytes]]):
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


@pytest.fixture
def world(db):
    return make_project_world("alice")


async def test_it_refuses_anonymous(world):
    communicator, connected, code = await connect(f"/ws/scans/{world['scan'].pk}/", [(b"origin", b"http://localhost")])
    assert not connected
    assert code == 4401


async def test_it_accepts_a_member_with_session(world):
    from asgiref.sync import sync_to_async

    headers = await sync_to_async(session_headers)(world["annotator"])
    communicator, connected, _ = await connect(f"/ws/scans/{world['scan'].pk}/", headers)
    assert connected
    hello = await receive_json(communicator)
    assert hello == {"type": "hello", "scan": world["scan"].pk, "user": "alice_annotator", "roles": ["annotator"],
                     "protocol": 1}
    await communicator.send_to(text_data=json.dumps({"type": "ping", "seq": 7}))
    assert await receive_json(communicator) == {"type": "pong", "seq": 7}
    await communicator.disconnect()


async def test_it_checks_membership(world):
    from asgiref.sync import sync_to_async

    outsider = await sync_to_async(make_user)("mallory")
    headers = await sync_to_async(session_headers)(outsider)
    communicator, connected, code = await connect(f"/ws/scans/{world['scan'].pk}/", headers)
    assert not connected
    assert code == 4404
    _, connected, code = await connect("/ws/scans/999999/", headers)
    assert (connected, code) == (False, 4404)


async def test_foreign_origin_is_refused(world):
    from asgiref.sync import sync_to_async

    headers = await sync_to_async(session_headers)(world["annotator"])
    headers = [h for h in headers if h[0] != b"origin"] + [(b"origin", b"https://evil.example")]
    _, connected, _ = await connect(f"/ws/scans/{world['scan'].pk}/", headers)
    assert not connected


async def test_malformed_messages_get_an_error_and_the_socket_stays_usable(world):
    from asgiref.sync import sync_to_async

    headers = await sync_to_async(session_headers)(world["reviewer"])
    communicator, connected, _ = await connect(f"/ws/scans/{world['scan'].pk}/", headers)
    assert connected
    await receive_json(communicator)  # hello
    for bad, code in [("not json", "malformed"), ("[1,2]", "malformed"), ('{"type": 3}', "malformed"),
                      ('{"type": "launch"}', "unknown_type"), ("x" * 70000, "too_large")]:
        await communicator.send_to(text_data=bad)
        reply = await receive_json(communicator)
        assert reply["type"] == "error" and reply["code"] == code, (bad[:20], reply)
    await communicator.send_to(text_data='{"type": "ping"}')
    assert (await receive_json(communicator))["type"] == "pong"
    await communicator.disconnect()
