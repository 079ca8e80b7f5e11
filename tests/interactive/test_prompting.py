"""Prompting over the scan WebSocket in the embedded mode (in-process tasks, in-memory layer)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from asgiref.sync import sync_to_async

from backend.annotations.services import read_mask
from backend.interactive import protocol
from backend.interactive.models import InteractiveSession, PromptLog
from tests.interactive.conftest import connect_client, lesion_point, lesion_truth

# The in-process task path (as in the embedded mode); with REDIS_URL set it runs over the Redis layer.
pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("eager_tasks")]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


async def test_click_gives_a_mask_then_undo_redo_reset_and_accept(phantom_world, interactive_phantom):
    scan, user = phantom_world["pet_scan"], phantom_world["annotator"]
    client = await connect_client(user, scan)
    session = await client.open_session(phantom_world["lesion"].pk)

    await client.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    first = await client.receive()
    assert first["type"] == "mask" and first["seq"] == 1 and first["engine"] == "threshold"
    assert dice(first["mask"], lesion_truth(interactive_phantom)) > 0.5
    assert first["timings"]["engine"] >= 0 and first["voxels"] == int(first["mask"].sum())

    await client.send(type="prompt", session=session, seq=2,
                      point={"index": lesion_point(interactive_phantom, 1), "positive": True})
    second = await client.receive()
    assert second["seq"] == 2 and second["voxels"] > first["voxels"]

    await client.send(type="undo", session=session, seq=3)
    undone = await client.receive()
    assert undone["seq"] == 3 and np.array_equal(undone["mask"], first["mask"])
    await client.send(type="redo", session=session, seq=4)
    redone = await client.receive()
    assert np.array_equal(redone["mask"], second["mask"])
    await client.send(type="undo", session=session, seq=5)
    await client.receive()

    await client.send(type="accept", session=session, seq=6)
    accepted = await client.receive()
    assert accepted["type"] == "accepted" and accepted["number"] == 1
    broadcast = await client.receive()
    assert broadcast["type"] == "mask.accepted" and broadcast["user"] == "alice_annotator"
    saved = await sync_to_async(lambda: read_mask(scan.annotations.get(annotator=user).current_version))()
    assert np.array_equal(saved > 0, first["mask"])

    await client.send(type="reset", session=session, seq=7)
    reset = await client.receive()
    assert reset["bbox"] is None and not reset["mask"].any()
    actions = await sync_to_async(lambda: list(PromptLog.objects.filter(session_id=session).values_list("action", flat=True)))()
    assert actions == ["prompt", "mask", "prompt", "mask", "undo", "redo", "undo", "accept", "reset"]
    await client.close()


async def test_accepting_a_corrected_mask(phantom_world, interactive_phantom):
    scan, user = phantom_world["pet_scan"], phantom_world["annotator"]
    client = await connect_client(user, scan)
    session = await client.open_session(phantom_world["lesion"].pk)
    await client.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    engine_mask = (await client.receive())["mask"]
    corrected = engine_mask.copy()
    corrected[tuple(lesion_point(interactive_phantom))] = False  # the reader erased one voxel
    frame = protocol.encode_mask(corrected, {"type": "accept", "session": session, "seq": 2})
    await client.communicator.send_to(bytes_data=frame)
    accepted = await client.receive()
    assert accepted["type"] == "accepted", accepted
    version = await sync_to_async(lambda: scan.annotations.get(annotator=user).current_version)()
    saved = await sync_to_async(read_mask)(version)
    assert np.array_equal(saved > 0, corrected) and version.source == "threshold+edited"
    await client.close()


async def test_others_see_presence_and_accepted_masks(phantom_world, interactive_phantom):
    scan = phantom_world["pet_scan"]
    watcher = await connect_client(phantom_world["reviewer"], scan)
    reader = await connect_client(phantom_world["annotator"], scan)
    presence = await watcher.receive(skip=())
    while presence["type"] != "presence" or len(presence["users"]) < 2:
        presence = await watcher.receive(skip=())
    assert {u["user"] for u in presence["users"]} == {"alice_reviewer", "alice_annotator"}
    await reader.send(type="activity", activity="segmenting a lesion")
    update = await watcher.receive(skip=())
    assert any(u["activity"] == "segmenting a lesion" for u in update["users"])
    session = await reader.open_session(phantom_world["lesion"].pk)
    await reader.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    await reader.receive()
    await reader.send(type="accept", session=session, seq=2)
    seen = await watcher.receive()
    assert seen["type"] == "mask.accepted" and seen["user"] == "alice_annotator"
    await reader.close()
    left = await watcher.receive(skip=())
    assert [u["user"] for u in left["users"]] == ["alice_reviewer"]
    await watcher.close()


async def test_a_session_resumes_after_the_tab_closes(phantom_world, interactive_phantom):
    scan, user = phantom_world["pet_scan"], phantom_world["annotator"]
    client = await connect_client(user, scan)
    session = await client.open_session(phantom_world["lesion"].pk)
    await client.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    before = await client.receive()
    await client.close()
    again = await connect_client(user, scan)
    await again.send(type="session.open", label=phantom_world["lesion"].pk, engine="threshold")
    opened = await again.receive()
    assert opened["resumed"] and opened["session"] == session and len(opened["prompts"]) == 1
    restored = await again.receive()
    assert restored["type"] == "mask" and np.array_equal(restored["mask"], before["mask"])
    await again.close()


async def test_a_newer_prompt_supersedes_a_waiting_one(phantom_world, interactive_phantom, monkeypatch):
    from worker.engines.classical import ClassicalPETEngine

    original = ClassicalPETEngine.segment

    def slow(self, *args, **kwargs):
        import time

        time.sleep(0.3)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClassicalPETEngine, "segment", slow)
    scan, user = phantom_world["pet_scan"], phantom_world["annotator"]
    client = await connect_client(user, scan)
    session = await client.open_session(phantom_world["lesion"].pk)
    for seq in (1, 2, 3):
        await client.send(type="prompt", session=session, seq=seq,
                          point={"index": lesion_point(interactive_phantom, seq - 1), "positive": True})
    replies = [await client.receive() for _ in range(3)]
    kinds = {r["seq"]: r["type"] for r in replies}
    assert kinds[3] == "mask", replies
    assert kinds[1] == "superseded" and kinds[2] == "superseded"
    # Each is superseded by a newer prompt: 3, or 2 when prompt 1 was dropped before 3 was recorded.
    assert all(r["seq"] < r["by"] <= 3 for r in replies if r["type"] == "superseded"), replies
    await client.close()


async def test_a_prompt_that_takes_too_long_is_reported(phantom_world, interactive_phantom, settings, monkeypatch):
    from worker.engines.classical import ClassicalPETEngine

    settings.PROMPT_TIMEOUT_S = 0.5
    monkeypatch.setattr(ClassicalPETEngine, "segment", lambda *a, **k: __import__("time").sleep(3))
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk)
    await client.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    reply = await client.receive(timeout=5)
    assert reply == {**reply, "type": "error", "code": "worker_timeout", "seq": 1}
    await client.send(type="ping", seq=9)
    assert (await client.receive())["type"] == "pong"  # the socket stays usable
    await asyncio.sleep(3)  # let the slow engine thread finish before the database goes away
    await client.close()


async def test_engine_failures_and_bad_prompts_are_errors_not_hangs(phantom_world, interactive_phantom, monkeypatch):
    from worker.engines.classical import ClassicalPETEngine

    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk)
    await client.send(type="prompt", session=session, seq=1, point={"index": [9999, 0, 0], "positive": True})
    assert (await client.receive())["code"] == "invalid_prompt"
    await client.send(type="prompt", session=session, seq=1, point={"index": [1, 1, 1], "positive": True})
    await client.receive()
    await client.send(type="prompt", session=session, seq=1, point={"index": [1, 1, 1], "positive": True})
    assert (await client.receive())["code"] == "malformed"  # seq must increase
    await client.send(type="prompt", session="00000000-0000-4000-8000-000000000000", seq=5,
                      point={"index": [1, 1, 1], "positive": True})
    assert (await client.receive())["code"] == "not_found"
    await client.send(type="prompt", session="not-a-session", seq=6, point={"index": [1, 1, 1], "positive": True})
    assert (await client.receive())["code"] == "malformed"  # not a session id at all
    await client.send(type="session.open", label=999999)
    assert (await client.receive())["code"] == "not_found"
    await client.send(type="session.open", label=phantom_world["lesion"].pk, engine="nope")
    assert (await client.receive())["code"] == "engine_unavailable"

    def explode(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ClassicalPETEngine, "segment", explode)
    await client.send(type="prompt", session=session, seq=7, point={"index": lesion_point(interactive_phantom), "positive": True})
    failed = await client.receive()
    assert failed["code"] == "engine_failed" and failed["seq"] == 7 and "out of memory" not in failed["detail"]
    await client.close()


async def test_disconnecting_cancels_pending_prompts(phantom_world, interactive_phantom):
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk)
    await client.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    await client.close()
    state = await sync_to_async(InteractiveSession.objects.get)(pk=session)
    assert state.cancelled_through_seq == 1
    from backend.interactive.sessions import compute

    outcome = await sync_to_async(compute)(session, 1)
    assert outcome.frame is None and outcome.superseded_by == 1


async def test_sessions_of_other_users_are_not_reachable(phantom_world, interactive_phantom):
    mine = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await mine.open_session(phantom_world["lesion"].pk)
    from backend.projects.models import Membership

    await sync_to_async(Membership.objects.filter(user=phantom_world["reviewer"]).update)(is_annotator=True)
    other = await connect_client(phantom_world["reviewer"], phantom_world["pet_scan"])
    await other.send(type="prompt", session=session, seq=1, point={"index": [1, 1, 1], "positive": True})
    assert (await other.receive())["code"] == "not_found"
    await mine.close()
    await other.close()


async def test_the_log_replays_a_session(phantom_world, interactive_phantom):
    from io import StringIO

    from django.core.management import call_command

    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk)
    steps = [("prompt", {"point": {"index": lesion_point(interactive_phantom), "positive": True}}),
             ("prompt", {"point": {"index": lesion_point(interactive_phantom, 1), "positive": True}}),
             ("undo", {}), ("prompt", {"point": {"index": lesion_point(interactive_phantom, 2), "positive": True}}),
             ("accept", {})]
    for seq, (kind, fields) in enumerate(steps, start=1):
        await client.send(type=kind, session=session, seq=seq, **fields)
        await client.receive()
    await client.close()
    out = StringIO()
    await sync_to_async(call_command)("replay_session", session, stdout=out)
    assert out.getvalue().count(" same ") == 3 and "every mask matches" in out.getvalue()


async def test_refused_prompts_name_their_seq_and_session(phantom_world, interactive_phantom):
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk)
    await client.send(type="prompt", session=session, seq=4, point={"index": [9999, 1, 1], "positive": True})
    reply = await client.receive()
    assert reply == {**reply, "type": "error", "code": "invalid_prompt", "seq": 4, "session": session}
    await client.close()


async def test_the_demo_network_answers_prompts_with_the_label_kind(phantom_world, interactive_phantom, monkeypatch):
    from worker.engines.registry import available_engines
    from worker.engines.seganypet_engine import SegAnyPETEngine

    assert {e["name"]: e for e in available_engines()}["seganypet-demo"]["available"]
    kinds = []
    original = SegAnyPETEngine.segment

    def spy(self, *args, **kwargs):
        kinds.append(kwargs.get("kind"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SegAnyPETEngine, "segment", spy)
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk, engine="seganypet-demo")
    await client.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    reply = await client.receive(timeout=120)
    assert reply["type"] == "mask" and reply["engine"] == "seganypet-demo" and reply["voxels"] > 0
    assert kinds == ["lesion"]
    await client.close()

