from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from backend.asgi import application
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan
from backend.interactive import protocol
from backend.projects.models import Label, LabelKind
from tests.base import make_project_world
from tests.foundation.test_websocket_auth import session_headers
from worker.phantoms import make_phantom, write_dicom_series


@pytest.fixture(scope="session")
def interactive_phantom():
    return make_phantom(seed=41, n_lesions=4)


@pytest.fixture(scope="session")
def interactive_dicom(interactive_phantom, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("interactive-dicom")
    write_dicom_series(interactive_phantom, folder, write_ct=False)
    return folder


@pytest.fixture
def phantom_world(transactional_db, interactive_dicom):
    world = make_project_world("alice")
    scan = ingest_dicom(Scan.objects.create(project=world["project"], name="interactive"),
                        sorted(interactive_dicom.rglob("*.dcm")))
    assert scan.status == "ready", scan.status_message
    lesion = Label.objects.create(project=world["project"], name="lesion", value=2, color="#ffff00",
                                  kind=LabelKind.LESION)
    return {**world, "pet_scan": scan, "lesion": lesion}


class Client:
    """A scan WebSocket client for tests: JSON and binary mask frames, skipping presence chatter."""

    def __init__(self, communicator: WebsocketCommunicator, shape: tuple[int, int, int]) -> None:
        self.communicator, self.shape = communicator, shape

    async def send(self, **message) -> None:
        await self.communicator.send_to(text_data=json.dumps(message))

    async def receive(self, timeout: float = 20, skip: tuple[str, ...] = ("presence",)):
        while True:
            frame = await self.communicator.receive_output(timeout=timeout)
            if frame["type"] == "websocket.close":
                return {"type": "closed", "code": frame.get("code")}
            if frame.get("bytes") is not None:
                header, payload = protocol.split_frame(frame["bytes"])
                return {**header, "mask": protocol.decode_mask(header, payload, self.shape)}
            message = json.loads(frame["text"])
            if message.get("type") not in skip:
                return message

    async def open_session(self, label_id: int, engine: str = "threshold") -> str:
        await self.send(type="session.open", label=label_id, engine=engine)
        opened = await self.receive()
        assert opened["type"] == "session.opened", opened
        return opened["session"]

    async def close(self) -> None:
        await self.communicator.disconnect()


async def connect_client(user, scan) -> Client:
    headers = await sync_to_async(session_headers)(user)
    communicator = WebsocketCommunicator(application, f"/ws/scans/{scan.pk}/", headers=headers)
    connected, code = await communicator.connect(timeout=10)
    assert connected, code
    shape = await sync_to_async(lambda: tuple(scan.pet.shape))()
    client = Client(communicator, shape)
    hello = await client.receive()
    assert hello["type"] == "hello"
    return client


def lesion_point(phantom, rank: int = 0) -> list[int]:
    lesion = sorted(phantom.lesions, key=lambda lesion: -lesion.diameter_mm)[rank]
    return [int(round(c)) for c in lesion.centre_index]


def lesion_truth(phantom, rank: int = 0) -> np.ndarray:
    lesion = sorted(phantom.lesions, key=lambda lesion: -lesion.diameter_mm)[rank]
    return phantom.lesion_labels == lesion.index
