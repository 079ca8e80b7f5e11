"""Ingests whose process died (killed, machine lost) are found by their stopped heartbeat and failed
with a clear message; their half-written files and staging folders are removed. Run at start-up
(`manage.py recover_stale`, which the web container runs before serving) and periodically (Celery beat,
CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from backend.interactive.events import broadcast_to_scan

from . import storage
from .models import Scan, ScanStatus, Series
from .uploads import discard, staging_root

log = logging.getLogger(__name__)
STALE_MESSAGE = ("The server stopped while this scan was being ingested; nothing was imported. "
                 "Upload it again.")


def stale_after_s() -> float:
    return float(settings.INGEST_STALE_S)


def fail_stale_ingests(stale_after: float | None = None) -> list[int]:
    """Fail every 'ingesting' scan without a heartbeat for `stale_after` seconds; returns their ids."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_s() if stale_after is None else stale_after)
    stale = Q(ingest_heartbeat_at__lt=cutoff) | Q(ingest_heartbeat_at__isnull=True, created_at__lt=cutoff)
    failed = []
    for scan in Scan.objects.filter(stale, status=ScanStatus.INGESTING):
        with transaction.atomic():
            # Claimed by this update only if nothing touched it since it was read (no race with a live ingest).
            claimed = Scan.objects.filter(pk=scan.pk, status=ScanStatus.INGESTING,
                                          ingest_heartbeat_at=scan.ingest_heartbeat_at).update(
                status=ScanStatus.FAILED, status_message=STALE_MESSAGE, ingest_progress=0, staging_dir="")
            if not claimed:
                continue
            Series.objects.filter(scan_id=scan.pk).delete()
        storage.remove_tree(storage.scan_dir_relative(scan.pk))
        if scan.staging_dir:
            discard(scan.staging_dir)
        broadcast_to_scan(scan.pk, {"type": "progress", "task": "ingest", "scan": scan.pk, "fraction": 0,
                                    "error": STALE_MESSAGE})
        log.warning("failed stale ingest of scan %s (last heartbeat %s)", scan.pk, scan.ingest_heartbeat_at)
        failed.append(scan.pk)
    return failed


def remove_orphan_staging(stale_after: float | None = None) -> list[Path]:
    """Staging folders older than `stale_after` that no waiting or running ingest holds."""
    root = staging_root()
    if not root.is_dir():
        return []
    cutoff = time.time() - (stale_after_s() if stale_after is None else stale_after)
    held = {Path(p).resolve() for p in Scan.objects.filter(
        status__in=[ScanStatus.PENDING, ScanStatus.INGESTING]).exclude(staging_dir="").values_list(
        "staging_dir", flat=True)}
    removed = []
    for folder in root.iterdir():
        if folder.is_dir() and folder.resolve() not in held and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
