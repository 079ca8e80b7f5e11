"""Statistics of a saved annotation version (the `cpu` queue)."""

from __future__ import annotations

from celery import shared_task

from backend.annotations.models import AnnotationVersion

from .services import compute_for_version


@shared_task(acks_late=True, ignore_result=True)
def compute_version_statistics(version_id: int) -> str:
    version = AnnotationVersion.objects.filter(pk=version_id).first()
    if version is None:  # deleted with its annotation before the worker got to it
        return "missing"
    return compute_for_version(version).status
