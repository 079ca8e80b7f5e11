"""Ingest tasks (the `cpu` queue): a staged upload becomes a scan."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task

from .ingest import ingest_dicom, ingest_nifti
from .models import Scan
from .uploads import discard


@shared_task(acks_late=True)
def ingest_upload(scan_id: int, staging_dir: str, kind: str = "dicom", nifti: dict | None = None) -> str:
    """Ingest a staged upload into `scan_id`; the staging folder is removed whatever happens."""
    try:
        scan = Scan.objects.get(pk=scan_id)
        if kind == "nifti":
            options = nifti or {}
            staged = Path(staging_dir)
            scan = ingest_nifti(
                scan,
                staged / options["pet"],
                options["pet_units"],
                ct_path=staged / options["ct"] if options.get("ct") else None,
                labels_path=staged / options["labels"] if options.get("labels") else None,
            )
        else:
            scan = ingest_dicom(scan, sorted(p for p in Path(staging_dir).iterdir() if p.is_file()))
        return scan.status
    finally:
        discard(staging_dir)
        Scan.objects.filter(pk=scan_id, staging_dir=staging_dir).update(staging_dir="")  # recovery has nothing left

