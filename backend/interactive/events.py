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


def member_group(project_id: int, user_id: int) -> str:
    """Every socket one user has open on scans of one project."""
    return f"member.{project_id}.{user_id}"


def close_member_sockets(project_id: int, user_id: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(member_group(project_id, user_id), {"type": "membership.revoked"})


def membership_removed(sender, instance, **kwargs) -> None:
    """post_delete of a Membership, however it is removed (API, admin, the user deleted): the member's
    open sockets on the project close once the deletion is committed."""
    from django.db import transaction

    project_id, user_id = instance.project_id, instance.user_id
    transaction.on_commit(lambda: close_member_sockets(project_id, user_id))
