"""WebSocket endpoint of one open scan.

Close codes: 4401 not logged in, 4404 no such scan for this user (also for scans of
other projects, so nothing leaks).
"""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from backend.imaging.models import Scan
from backend.projects.access import membership_for

from .events import scan_group

MAX_MESSAGE_BYTES = 64 * 1024
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _load_scan_for(user, scan_id: int):
    scan = Scan.objects.filter(pk=scan_id).only("id", "project_id").first()
    if scan is None:
        return None, None
    try:
        return scan, membership_for(user, scan.project_id)
    except Exception:
        return None, None


class ScanConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.scan_id = int(self.scope["url_route"]["kwargs"]["scan_id"])
        scan, membership = await _load_scan_for(user, self.scan_id)
        if scan is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = scan_group(self.scan_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "scan": self.scan_id, "user": user.username, "roles": membership.roles})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else bytes_data or b""
        if len(raw) > MAX_MESSAGE_BYTES:
            await self.send_error("too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
            return
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            await self.send_error("malformed", "messages must be JSON objects")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send_error("malformed", "messages must be JSON objects with a string 'type'")
            return
        # Membership can be revoked while the socket is open: check on every message.
        _, membership = await _load_scan_for(self.scope["user"], self.scan_id)
        if membership is None:
            await self.send_error("forbidden", "you no longer have access to this scan")
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if message["type"] == "ping":
            await self.send_json({"type": "pong", "seq": message.get("seq")})
        else:
            await self.send_error("unknown_type", f"unknown message type {message['type'][:40]!r}")

    async def send_json(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload))

    async def send_error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})

    async def scan_event(self, event: dict) -> None:
        """Relay of group broadcasts (progress, presence, accepted masks) to this client."""
        await self.send_json(event["payload"])
