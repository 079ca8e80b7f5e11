"""A scan whose PET file no longer matches its checksum is never segmented: opening a session or
computing a prompt on it gives a clear "damaged" error."""

from __future__ import annotations

import pytest

from backend.imaging import storage
from backend.imaging.models import ScanStatus
from backend.interactive import sessions


def _flip_a_byte(relative: str) -> None:
    path = storage.media_path(relative)
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    path.write_bytes(bytes(payload))
    storage.clear_volume_cache()


def test_a_session_on_a_damaged_scan_is_refused(phantom_world):
    scan = phantom_world["pet_scan"]
    _flip_a_byte(scan.pet.volume_file)
    with pytest.raises(sessions.SessionError) as raised:
        sessions.open_session(scan, phantom_world["annotator"], phantom_world["lesion"].pk, "threshold", None)
    assert raised.value.code == "damaged" and "damaged" in raised.value.detail
    scan.refresh_from_db()
    assert scan.status == ScanStatus.DAMAGED
