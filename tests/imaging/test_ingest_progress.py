"""Ingest progress reaches everyone who has the scan's WebSocket open."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from backend.asgi import application
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan
from tests.base import make_project_world
from tests.foundation.test_websocket_auth import receive_json, session_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def test_progress_is_broadcast_to_the_scan_group(phantom_dicom_dir: Path):
    world = await sync_to_async(make_project_world)("alice")
    scan = await Scan.objects.acreate(project=world["project"], name="incoming")
    headers = await sync_to_async(session_headers)(world["reviewer"])
    communicator = WebsocketCommunicator(application, f"/ws/scans/{scan.pk}/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await receive_json(communicator)  # hello
    await sync_to_async(ingest_dicom)(scan, sorted(p for p in phantom_dicom_dir.rglob("*") if p.is_file()))
    fractions = []
    while True:
        message = await receive_json(communicator)
        assert message["type"] == "progress" and message["task"] == "ingest"
        assert "error" not in message, message
        fractions.append(message["fraction"])
        if message["fraction"] >= 1.0:
            break
    assert fractions == sorted(fractions) and len(fractions) >= 4
    await communicator.disconnect()
