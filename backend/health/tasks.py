from __future__ import annotations

from celery import shared_task


@shared_task(name="backend.health.tasks.recover_stale")
def recover_stale() -> dict:
    """Periodic (CELERY_BEAT_SCHEDULE): fail ingests and exports whose process died; remove their staging."""
    from .recovery import recover_stale as run

    return run()
