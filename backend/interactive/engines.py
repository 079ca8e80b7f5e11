"""The segmentation engines as this deployment configures them: Django settings in, the worker
registry's EngineSettings out. Called once when the app starts (web and worker processes alike)."""

from __future__ import annotations

from django.conf import settings

from worker.engines import registry


def engine_settings() -> registry.EngineSettings:
    return registry.EngineSettings(
        checkpoint=settings.SEGANYPET_CHECKPOINT,
        demo_checkpoint=settings.SEGANYPET_DEMO_CHECKPOINT,
        device=settings.SEGANYPET_DEVICE,
        trust_checkpoint=settings.SEGANYPET_TRUST_CHECKPOINT,
        cache_mb=settings.SEGANYPET_CACHE_MB,
        torch_threads=settings.SEGANYPET_TORCH_THREADS or None,
    )


def configure_engines() -> registry.EngineSettings:
    return registry.configure(engine_settings())


def configured_preload() -> list[str]:
    return [name for name in getattr(settings, "PRELOAD_ENGINES", []) if name]
