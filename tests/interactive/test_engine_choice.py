"""The engine a reader picks for a session must be one the project allows."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from tests.interactive.conftest import connect_client, lesion_point

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("eager_tasks")]


async def test_an_allowed_engine_answers_the_prompts(phantom_world, interactive_phantom):
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    await client.send(type="session.open", label=phantom_world["lesion"].pk, engine="threshold")
    opened = await client.receive()
    assert opened["type"] == "session.opened" and opened["engine"] == "threshold"
    await client.send(type="prompt", session=opened["session"], seq=1,
                      point={"index": lesion_point(interactive_phantom), "positive": True})
    mask = await client.receive()
    assert mask["engine"] == "threshold" and mask["mask"].sum() > 0
    await client.close()


async def test_an_engine_the_project_does_not_allow_is_refused(phantom_world, interactive_phantom):
    project = phantom_world["project"]
    project.allowed_engines = ["threshold"]
    await sync_to_async(project.save)()
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    await client.send(type="session.open", label=phantom_world["lesion"].pk, engine="seganypet-demo")
    refused = await client.receive()
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert "does not allow" in refused["detail"] and "threshold" in refused["detail"]
    # once allowed, the same request opens a session
    project.allowed_engines = ["threshold", "seganypet-demo"]
    await sync_to_async(project.save)()
    await client.send(type="session.open", label=phantom_world["lesion"].pk, engine="seganypet-demo")
    reply = await client.receive()
    assert reply["type"] in ("session.opened", "error")
    if reply["type"] == "error":  # no demo weights on this machine: the registry says so, not the project
        assert reply["code"] == "engine_unavailable"
    else:
        assert reply["engine"] == "seganypet-demo"
    await client.close()
