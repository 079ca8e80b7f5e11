"""F12: the WebSocket Origin must match the page's scheme, host and port exactly; a session id that
is not a UUID is a protocol error, and the socket stays open."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from tests.base import make_project_world
from tests.foundation.test_websocket_auth import connect, receive_json, session_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest.fixture
def world(db):
    return make_project_world("alice")


async def opened(world, host: str, origin: str, scheme: str = "ws") -> bool:
    headers = await sync_to_async(session_headers)(world["annotator"])
    headers = [h for h in headers if h[0] != b"origin"] + [(b"host", host.encode()), (b"origin", origin.encode())]
    from channels.testing import WebsocketCommunicator

    from backend.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/scans/{world['scan'].pk}/", headers=headers)
    communicator.scope["scheme"] = scheme
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected


@override_settings(CSRF_TRUSTED_ORIGINS=[])
async def test_only_the_exact_page_origin_opens_a_socket(world):
    assert await opened(world, "localhost:8000", "http://localhost:8000")
    assert not await opened(world, "localhost:8000", "http://localhost:9000")  # another port
    assert not await opened(world, "localhost:8000", "https://localhost:8000")  # another scheme
    assert not await opened(world, "localhost:8000", "http://evil.example:8000")
    assert not await opened(world, "evil.example", "http://evil.example")  # a host not in ALLOWED_HOSTS
    assert await opened(world, "localhost", "https://localhost", scheme="wss")  # 443 either way
    assert not await opened(world, "localhost", "https://localhost:8443", scheme="wss")


@override_settings(CSRF_TRUSTED_ORIGINS=["https://studio.example.org"])
async def test_a_trusted_origin_opens_a_socket(world):
    assert await opened(world, "localhost:8000", "https://studio.example.org")
    assert not await opened(world, "localhost:8000", "https://studio.example.org:444")
    assert not await opened(world, "localhost:8000", "http://studio.example.org")


async def test_a_session_id_that_is_not_a_uuid_is_a_protocol_error(world):
    headers = await sync_to_async(session_headers)(world["annotator"])
    communicator, connected, _ = await connect(f"/ws/scans/{world['scan'].pk}/", headers)
    assert connected
    await receive_json(communicator)  # hello
    await communicator.send_to(text_data=json.dumps({"type": "session.close", "session": "not-a-uuid"}))
    error = await receive_json(communicator)
    assert error["type"] == "error" and error["code"] == "malformed", error
    await communicator.send_to(text_data=json.dumps({"type": "ping", "seq": 2}))
    assert await receive_json(communicator) == {"type": "pong", "seq": 2}  # still open
    await communicator.disconnect()
