"""Dataset exports (the `cpu` queue)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="worker.tasks.exports.run_export", acks_late=True, ignore_result=True)
def run_export(job_id: int) -> str:
    from backend.exports.models import ExportJob
    from backend.exports.services import run_export_job

    job = ExportJob.objects.filter(pk=job_id).first()
    if job is None:  # deleted before a worker got to it
        return "missing"
    return run_export_job(job).status
