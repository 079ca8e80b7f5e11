"""Celery tasks of the PACS app: retrieve-and-ingest of a study, SEG push with backoff.

Both go to the default queue, `cpu` (backend/celery.py): network and ingest work, no model.
"""

from __future__ import annotations

from celery import shared_task


@shared_task(name="backend.pacs.tasks.import_study", acks_late=True)
def import_study(import_id: int) -> str:
    """Retrieve and ingest one study; a failure is recorded on the import (resumable when it was the PACS)."""
    from .models import PacsImport
    from .services import run_import

    record = PacsImport.objects.filter(pk=import_id).first()
    if record is None:  # its scan was deleted meanwhile
        return "gone"
    return run_import(record).status


@shared_task(name="backend.pacs.tasks.push_seg", acks_late=True)
def push_seg(push_id: int) -> str:
    """Send one SEG; when the PACS was unavailable, the next attempt is scheduled after the recorded delay.

    In the embedded mode tasks run in-process and there is no scheduler: the push stays failed with its
    message and is retried by hand (the API's retry action)."""
    from django.utils import timezone

    from backend.celery import app

    from .models import PushStatus, SegPush
    from .services import send_push

    push = SegPush.objects.filter(pk=push_id).first()
    if push is None:
        return "gone"
    push = send_push(push)
    if push.status == PushStatus.FAILED and push.next_attempt_at and not app.conf.task_always_eager:
        delay = max((push.next_attempt_at - timezone.now()).total_seconds(), 0)
        push_seg.apply_async((push.pk,), countdown=delay)
    return push.status
