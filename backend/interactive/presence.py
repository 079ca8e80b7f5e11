"""Who has which scan open. One row per WebSocket connection, so several tabs count once each."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from .models import ScanPresence

STALE_AFTER = timedelta(minutes=2)  # a connection that stopped pinging (server crash) drops out


def join(scan_id: int, user, channel_name: str) -> None:
    ScanPresence.objects.update_or_create(channel_name=channel_name, defaults={"scan_id": scan_id, "user": user})


def touch(channel_name: str, activity: str | None = None) -> None:
    fields = {"seen_at": timezone.now()}
    if activity is not None:
        fields["activity"] = activity
    ScanPresence.objects.filter(channel_name=channel_name).update(**fields)


def leave(channel_name: str) -> None:
    ScanPresence.objects.filter(channel_name=channel_name).delete()


def listing(scan_id: int) -> list[dict]:
    rows = ScanPresence.objects.filter(scan_id=scan_id, seen_at__gte=timezone.now() - STALE_AFTER).select_related(
        "user").order_by("since")
    users: dict[str, dict] = {}
    for row in rows:
        users.setdefault(row.user.username, {"user": row.user.username, "activity": row.activity,
                                             "since": row.since.isoformat()})
        if row.activity:
            users[row.user.username]["activity"] = row.activity
    return list(users.values())
