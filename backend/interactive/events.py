"""Send events to everyone who has a scan open (progress, presence, accepted masks)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def scan_group(scan_id: int) -> str:
    return f"scan.{scan_id}"


def broadcast_to_scan(scan_id: int, payload: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(scan_group(scan_id), {"type": "scan.event", "payload": payload})
