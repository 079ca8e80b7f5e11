"""Push on approval: when an annotation becomes approved and its scan came from a source that asks for it."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from backend.annotations.models import Annotation, AnnotationState


@receiver(post_save, sender=Annotation, dispatch_uid="pacs-push-on-approval")
def push_approved_annotation(sender, instance: Annotation, created: bool, **kwargs) -> None:
    if created or instance.state != AnnotationState.APPROVED or instance.current_version_id is None:
        return
    from .models import PacsImport, SegPush
    from .tasks import push_seg

    record = PacsImport.objects.filter(scan_id=instance.scan_id).select_related("source").first()
    if record is None or not record.source.push_on_approval or not record.source.stow_url:
        return
    # Recorded in the approval's own transaction, sent after it commits.
    push, made = SegPush.objects.get_or_create(
        version_id=instance.current_version_id, source=record.source,
        defaults={"project_id": instance.project_id, "annotation": instance})
    if made:
        transaction.on_commit(lambda: push_seg.delay(push.pk))


@receiver(post_delete, sender="pacs.PacsImport", dispatch_uid="pacs-import-staging-cleanup")
def discard_staging(sender, instance, **kwargs) -> None:
    """A deleted import (its scan was deleted) leaves no staged instances behind."""
    if instance.staging_dir:
        from backend.imaging.uploads import discard

        staging = instance.staging_dir
        transaction.on_commit(lambda: discard(staging))
