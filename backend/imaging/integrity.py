"""What happens when a stored volume fails its checksum: the scan becomes "damaged", and stays usable for
nothing that reads its voxels (segmentation, statistics, exports) until the file is restored or re-ingested."""

from __future__ import annotations

import logging

from django.db.models import Q

from . import storage
from .models import Scan, ScanStatus, Series

log = logging.getLogger(__name__)


class ScanDamaged(RuntimeError):
    """Raised before reading voxels of a scan marked damaged; the message is for users."""


def mark_damaged(relative: str, message: str) -> list[int]:
    """Mark every scan whose PET or CT volume is `relative` as damaged; returns their ids."""
    scan_ids = sorted(set(Series.objects.filter(volume_file=relative).values_list("scan_id", flat=True)))
    if scan_ids:
        log.error("checksum mismatch on %s (scans %s)", relative, scan_ids)
        Scan.objects.filter(pk__in=scan_ids).update(status=ScanStatus.DAMAGED, status_message=message[:4000])
    return scan_ids


def _on_volume_damaged(sender, relative: str, message: str, **kwargs) -> None:
    mark_damaged(relative, message)


def check_usable(scan: Scan) -> None:
    """Refuse a scan already known to be damaged, and verify its volumes' checksums (once per process)."""
    current = Scan.objects.filter(pk=scan.pk).values_list("status", "status_message").first()
    if current and current[0] == ScanStatus.DAMAGED:
        raise ScanDamaged(f"Scan {scan.pk} is damaged: {current[1]}")
    for series in Series.objects.filter(Q(scan=scan) & ~Q(volume_file="") & ~Q(sha256="")):
        try:
            storage.verify_file(series.volume_file, series.sha256)
        except storage.VolumeDamaged as error:
            raise ScanDamaged(f"Scan {scan.pk} is damaged: {error}") from None


def connect() -> None:
    storage.volume_damaged.connect(_on_volume_damaged, dispatch_uid="imaging.mark_damaged")
