"""Dataset exports (the `cpu` queue)."""

from __future__ import annotations

from celery import shared_task

from .models import ExportJob
from .services import run_export_job


@shared_task(acks_late=True, ignore_result=True)
def run_export(job_id: int) -> str:
    job = ExportJob.objects.filter(pk=job_id).first()
    if job is None:  # deleted before a worker got to it
        return "missing"
    return run_export_job(job).status
