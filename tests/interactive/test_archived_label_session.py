"""F3: an archived label is not offered for new objects: a segmentation session cannot be opened on it."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from backend.projects.models import Label
from tests.interactive.conftest import connect_client

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("eager_tasks")]


async def test_no_session_on_an_archived_label(phantom_world):
    lesion = phantom_world["lesion"]
    await sync_to_async(Label.objects.filter(pk=lesion.pk).update)(archived=True)
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    await client.send(type="session.open", label=lesion.pk, engine="threshold")
    refused = await client.receive()
    assert refused["type"] == "error" and refused["code"] == "label_archived", refused
    await sync_to_async(Label.objects.filter(pk=lesion.pk).update)(archived=False)
    await client.open_session(lesion.pk)  # the same label once restored
    await client.close()
