"""Exports whose worker died are failed by their stopped heartbeat (services.fail_stale_jobs), and
the staging folders they left under media/exports/ are removed, as are those of deleted jobs.
Run with the ingest recovery by `manage.py recover_stale` and the Celery beat entry."""

from __future__ import annotations

import re
import shutil
import time
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from backend.imaging import storage

from .models import ExportJob, ExportStatus
from .services import STAGING_PREFIX, fail_stale_jobs, stale_after_s

_JOB_ID = re.compile(re.escape(STAGING_PREFIX) + r"(\d+)-")


def recover_stale_exports(stale_after: float | None = None) -> tuple[list[int], list[Path]]:
    """(ids of the jobs failed, staging folders removed)."""
    seconds = stale_after_s() if stale_after is None else stale_after
    cutoff = timezone.now() - timedelta(seconds=seconds)
    stale = ExportJob.objects.filter(status=ExportStatus.RUNNING, heartbeat_at__lt=cutoff)
    failed = list(stale.values_list("pk", flat=True))
    fail_stale_jobs(ExportJob.objects.filter(pk__in=failed), stale_after=seconds)
    exports_dir = storage.media_path("exports")
    if not exports_dir.is_dir():
        return failed, []
    running = set(ExportJob.objects.filter(status=ExportStatus.RUNNING, heartbeat_at__gte=cutoff)
                  .values_list("pk", flat=True))
    removed = []
    for folder in exports_dir.glob(f"{STAGING_PREFIX}*"):
        match = _JOB_ID.match(folder.name)
        if match:
            keep = int(match.group(1)) in running
        else:  # a folder from before staging was named after its job: by age alone
            keep = folder.stat().st_mtime >= time.time() - seconds
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return failed, removed
