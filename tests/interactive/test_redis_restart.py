"""Redis restarted during a session: the server keeps working without its own restart, and the
client's session resumes where it was after it reconnects."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
from channels.layers import channel_layers

from tests.interactive.conftest import connect_client, lesion_point

pytestmark = [pytest.mark.usefixtures("eager_tasks"), pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, so it can be killed and restarted."""

    def __init__(self, tmp_path) -> None:
        self.port, self.dir = free_port(), tmp_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path, settings):
    redis = PrivateRedis(tmp_path)
    redis.start()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [f"redis://127.0.0.1:{redis.port}/0"]}}}
    channel_layers.backends.clear()
    yield redis
    redis.stop()
    channel_layers.backends.clear()


async def test_a_session_survives_a_redis_restart(phantom_world, interactive_phantom, private_redis):
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    session = await client.open_session(phantom_world["lesion"].pk)
    await client.send(type="prompt", session=session, seq=1, point={"index": lesion_point(interactive_phantom), "positive": True})
    before = await client.receive()
    assert before["type"] == "mask"

    private_redis.stop()
    private_redis.start()  # same port, empty: every group and channel is gone

    # The open socket may be closed by the server when its Redis subscription breaks; a client
    # reconnects (the viewer does so automatically) and continues its session.
    await client.close()
    client = await connect_client(phantom_world["annotator"], phantom_world["pet_scan"])
    await client.send(type="session.open", label=phantom_world["lesion"].pk, engine="threshold")
    opened = await client.receive()
    assert opened["resumed"] and opened["session"] == session
    restored = await client.receive()
    assert np.array_equal(restored["mask"], before["mask"])
    await client.send(type="prompt", session=session, seq=2,
                      point={"index": lesion_point(interactive_phantom, 1), "positive": True})
    after = await client.receive()
    assert after["type"] == "mask" and after["seq"] == 2 and after["voxels"] > before["voxels"]
    await client.close()
