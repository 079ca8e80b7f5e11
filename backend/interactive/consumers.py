"""WebSocket endpoint of one open scan (protocol: docs/protocol.md).

Close codes: 4401 not logged in, 4404 no such scan for this user (also for scans of
other projects, so nothing leaks). Malformed messages get an error frame; the socket stays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from backend.annotations.services import WorkflowError
from backend.health.observability import PROMPT_ROUND_TRIP
from backend.imaging.models import Scan
from backend.projects.access import membership_for
from backend.projects.api_base import ANY_MEMBER
from backend.projects.models import Role

from . import dispatch, presence, protocol, sessions
from .events import member_group, scan_group

log = logging.getLogger(__name__)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
MAX_MESSAGES_PER_SECOND = 20
MEMBERSHIP_RECHECK_S = 2.0

_EDITORS = frozenset({Role.ANNOTATOR.value, Role.MANAGER.value})
# Which project roles may send each client message type (every type must be listed; the
# permission-matrix test walks protocol.CLIENT_TYPES). Segmenting writes into the sender's own
# annotation, so it is for annotators and managers; everyone on the scan may ping and show activity.
MESSAGE_ROLES: dict[str, frozenset[str]] = {
    "ping": ANY_MEMBER,
    "activity": ANY_MEMBER,
    "session.open": _EDITORS,
    "prompt": _EDITORS,
    "undo": _EDITORS,
    "redo": _EDITORS,
    "reset": _EDITORS,
    "accept": _EDITORS,
    "session.close": _EDITORS,
}


@database_sync_to_async
def _load_scan_for(user, scan_id: int):
    scan = Scan.objects.filter(pk=scan_id).prefetch_related("series").select_related("project").first()
    if scan is None:
        return None, None
    try:
        return scan, membership_for(user, scan.project_id)
    except Exception:
        return None, None


class ScanConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.pending: dict[tuple[str, int], tuple[str, asyncio.Task]] = {}
        self.dispatched_at: dict[tuple[str, int], tuple[float, str]] = {}
        self.membership, self.membership_checked_at = None, 0.0
        self.sessions_used: set[str] = set()
        self.worker: str | None = None
        self.recent: list[float] = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.scan_id = int(self.scope["url_route"]["kwargs"]["scan_id"])
        scan, membership = await _load_scan_for(user, self.scan_id)
        if scan is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.scan = scan
        self.volume_shape = tuple(scan.pet.shape) if scan.pet else (0, 0, 0)
        self.group = scan_group(self.scan_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        # Revoking this user's membership closes the socket at once (not at their next message).
        self.member_group = member_group(scan.project_id, user.pk)
        await self.channel_layer.group_add(self.member_group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "scan": self.scan_id, "user": user.username,
                              "roles": membership.roles, "protocol": protocol.PROTOCOL_VERSION})
        await database_sync_to_async(presence.join)(self.scan_id, user, self.channel_name)
        await self.broadcast_presence()

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "group"):
            return
        await self.channel_layer.group_discard(self.group, self.channel_name)
        if hasattr(self, "member_group"):
            await self.channel_layer.group_discard(self.member_group, self.channel_name)
        for _task_id, timer in self.pending.values():
            timer.cancel()
        if self.pending:
            await sync_to_async(dispatch.revoke)([task_id for task_id, _ in self.pending.values()])
        if self.sessions_used:
            await database_sync_to_async(sessions.cancel_pending)(list(self.sessions_used))
        await database_sync_to_async(presence.leave)(self.channel_name)
        await self.broadcast_presence()

    # --- receiving ----------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message: protocol.Message | None = None
        try:
            if text_data is not None:
                message = protocol.parse_text(text_data)
            else:
                message = protocol.parse_binary(bytes_data or b"", self.volume_shape)
            self._rate_limit()
            membership = await self._check_membership()
            allowed = MESSAGE_ROLES.get(message.type, frozenset())
            if not membership.has_any(set(allowed)):
                raise protocol.ProtocolError(
                    "forbidden", f"'{message.type}' needs one of the roles: {', '.join(sorted(allowed))}", message.seq)
            await self.handle(message)
        except protocol.ProtocolError as error:
            await self.send_error(error.code, error.detail, seq=error.seq)
        except sessions.SessionError as error:
            # With the prompt's seq and session, so the client can clear that prompt's spinner.
            await self.send_error(error.code, error.detail, seq=message.seq if message else None,
                                  session=message.session if message else None)
        except WorkflowError as error:
            await self.send_error(error.code, error.message, seq=message.seq if message else None,
                                  session=message.session if message else None)

    def _rate_limit(self) -> None:
        now = time.monotonic()
        self.recent = [t for t in self.recent if now - t < 1.0] + [now]
        if len(self.recent) > MAX_MESSAGES_PER_SECOND:
            raise protocol.ProtocolError("rate_limited", f"at most {MAX_MESSAGES_PER_SECOND} messages per second")

    async def _check_membership(self):
        # Membership (and roles) can change while the socket is open: looked up again at most
        # every MEMBERSHIP_RECHECK_S, so a burst of prompts does not cost a query each.
        now = time.monotonic()
        if self.membership is not None and now - self.membership_checked_at < MEMBERSHIP_RECHECK_S:
            return self.membership
        _, membership = await _load_scan_for(self.scope["user"], self.scan_id)
        self.membership, self.membership_checked_at = membership, now
        if membership is None:
            await self.close(code=CLOSE_NOT_FOUND)
            raise protocol.ProtocolError("forbidden", "you no longer have access to this scan")
        return membership

    async def handle(self, message: protocol.Message) -> None:
        user = self.scope["user"]
        kind = message.type
        if kind == "ping":
            await database_sync_to_async(presence.touch)(self.channel_name)
            await self.send_json({"type": "pong", "seq": message.seq})
        elif kind == "activity":
            await database_sync_to_async(presence.touch)(self.channel_name, message.data["activity"])
            await self.broadcast_presence()
        elif kind == "session.open":
            await self.open_session(message)
        elif kind == "prompt":
            queued_at = time.time()
            session, submitted = await database_sync_to_async(self._record_and_submit)(message, user, queued_at)
            await self.dispatch_prompt(str(session.pk), message.seq, session.engine, submitted, queued_at)
        elif kind in ("undo", "redo", "reset"):
            session, frame = await database_sync_to_async(sessions.step_history)(message.session, user, message.seq,
                                                                                  kind)
            self.sessions_used.add(str(session.pk))
            if frame is not None:
                await self.send(bytes_data=frame)
            else:
                await self.dispatch_prompt(str(session.pk), message.seq, session.engine)
        elif kind == "accept":
            await self.accept_mask(message)
        elif kind == "session.close":
            await database_sync_to_async(sessions.close)(message.session, user)
            await self.send_json({"type": "session.closed", "session": message.session})

    async def open_session(self, message: protocol.Message) -> None:
        session, resumed = await database_sync_to_async(sessions.open_session)(
            self.scan, self.scope["user"], message.data["label"], message.data["engine"], message.data["annotation"])
        self.sessions_used.add(str(session.pk))
        frame = await database_sync_to_async(sessions.current_frame)(session) if resumed else None
        await self.send_json({
            "type": "session.opened", "session": str(session.pk), "label": session.label_id,
            "engine": session.engine, "annotation": session.annotation_id, "resumed": resumed,
            "prompts": session.prompts[: session.active_count], "latest_seq": session.latest_seq})
        if frame is not None:
            await self.send(bytes_data=frame)

    async def accept_mask(self, message: protocol.Message) -> None:
        annotation, version = await database_sync_to_async(sessions.accept)(
            message.session, self.scope["user"], message.seq, message.mask)
        new_object = version.segments[-1]
        reply = {"type": "accepted", "session": message.session, "seq": message.seq, "annotation": annotation.pk,
                 "version": version.pk, "number": version.number, "object": new_object["id"],
                 "label": new_object["label"]}
        await self.send_json(reply)
        event = {"type": "mask.accepted", "user": self.scope["user"].username, "annotation": annotation.pk,
                 "version": version.pk, "label": new_object["label"], "object": new_object["id"]}
        if self.scan.project.blinded_double_read:
            # Blinded readers must not learn (and then fetch) each other's annotations: only who and what.
            event = {key: event[key] for key in ("type", "user", "label")}
        await self.channel_layer.group_send(self.group, {"type": "scan.event", "payload": event})

    # --- prompts to workers and back ---------------------------------------------------------------

    def _record_and_submit(self, message: protocol.Message, user, queued_at: float):
        """One hop off the event loop for a prompt: record it, then publish it (unless in-process)."""
        session = sessions.add_prompt(message.session, user, message.seq, message.data, self.volume_shape)
        if dispatch.runs_in_process():
            return session, None
        return session, dispatch.submit(str(session.pk), message.seq, self.channel_name, queued_at, self.worker,
                                        session.engine)

    async def dispatch_prompt(self, session_id: str, seq: int, engine: str,
                              submitted: dispatch.Submitted | None = None, queued_at: float | None = None) -> None:
        self.sessions_used.add(session_id)
        queued_at = queued_at or time.time()
        timer = asyncio.ensure_future(self._timeout(session_id, seq))
        self.dispatched_at[(session_id, seq)] = (time.perf_counter(), engine)
        log.info("prompt dispatched", extra={"session": session_id, "seq": seq, "engine": engine, "scan": self.scan_id})
        if dispatch.runs_in_process():
            # In-process: run in a worker thread so this socket keeps receiving (newer prompts supersede).
            self.pending[(session_id, seq)] = ("", timer)
            asyncio.ensure_future(sync_to_async(dispatch.run_in_process, thread_sensitive=False)(
                session_id, seq, self.channel_name, queued_at))
        else:
            if submitted is None:  # undo/redo that needs the engine
                submitted = await database_sync_to_async(dispatch.submit)(session_id, seq, self.channel_name,
                                                                           queued_at, self.worker, engine)
            self.pending[(session_id, seq)] = (submitted.task_id, timer)
            if submitted.waiting:
                await self.send_json({"type": "queued", "session": session_id, "seq": seq,
                                      "position": submitted.waiting, "expected_wait_ms": submitted.expected_wait_ms})

    async def _timeout(self, session_id: str, seq: int) -> None:
        await asyncio.sleep(dispatch.prompt_timeout_s())
        self.dispatched_at.pop((session_id, seq), None)
        if self.pending.pop((session_id, seq), None) is not None:
            self.worker = None  # that worker may be gone: the next prompt goes to any worker
            await self.send_error("worker_timeout", f"No worker answered within {dispatch.prompt_timeout_s():.0f} s; "
                                  "try the prompt again.", seq=seq, session=session_id)

    def _settle(self, event: dict) -> bool:
        entry = self.pending.pop((event["session"], event["seq"]), None)
        dispatched = self.dispatched_at.pop((event["session"], event["seq"]), None)
        if entry is None:
            return False  # already timed out (or not ours): never deliver late or foreign replies
        if dispatched is not None and event["type"] == "prompt.result":
            PROMPT_ROUND_TRIP.labels(dispatched[1]).observe(time.perf_counter() - dispatched[0])
        entry[1].cancel()
        if event.get("worker"):
            self.worker = event["worker"]
        return True

    async def prompt_result(self, event: dict) -> None:
        if self._settle(event):
            await self.send(bytes_data=event["frame"])

    async def prompt_superseded(self, event: dict) -> None:
        if self._settle(event):
            await self.send_json({"type": "superseded", "session": event["session"], "seq": event["seq"],
                                  "by": event["by"]})

    async def prompt_failed(self, event: dict) -> None:
        if self._settle(event):
            await self.send_error(event["code"], event["detail"], seq=event["seq"], session=event["session"])

    # --- broadcasting --------------------------------------------------------------------------------

    async def broadcast_presence(self) -> None:
        users = await database_sync_to_async(presence.listing)(self.scan_id)
        await self.channel_layer.group_send(self.group, {"type": "scan.event",
                                                         "payload": {"type": "presence", "users": users}})

    async def membership_revoked(self, event: dict) -> None:
        """The user was removed from the project: nothing more reaches them on this socket."""
        self.membership = None
        await self.send_error("forbidden", "you no longer have access to this scan")
        await self.close(code=CLOSE_NOT_FOUND)

    async def scan_event(self, event: dict) -> None:
        """Relay of group broadcasts (progress, presence, notifications, accepted masks) to this client."""
        await self.send_json(event["payload"])

    async def send_json(self, payload: dict) -> None:
        await self.send(text_data=json.dumps(payload))

    async def send_error(self, code: str, detail: str, **extra) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail,
                              **{k: v for k, v in extra.items() if v is not None}})
