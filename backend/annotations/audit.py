from __future__ import annotations

from django.db import models

from .models import AuditEvent


def record(project_id: int, actor, action: str, target: models.Model, **data) -> AuditEvent:
    """Append one audit event; call inside the transaction of the change it records."""
    return AuditEvent.objects.create(
        project_id=project_id,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        target_type=target._meta.model_name,
        target_id=target.pk,
        data=data,
    )
