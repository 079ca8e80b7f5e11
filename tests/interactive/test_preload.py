"""Prompt workers (Celery processes, or the server itself in the embedded mode) load their engines at start."""

from __future__ import annotations


def test_a_prompt_worker_preloads_the_engines_it_is_told_to(engine_settings):
    from worker.engines import registry
    from worker.engines.registry import preload_engines

    engine_settings(checkpoint="")
    registry.clear_engine_cache()
    loaded = preload_engines(["seganypet-demo", "seganypet", "no-such-engine"])
    assert loaded == ["seganypet-demo"]  # no official checkpoint here; an unknown name is skipped too
    assert any(key[0] == "seganypet-demo" for key in registry._cache)


def test_the_embedded_server_preloads_its_engines_in_the_background(settings, eager_tasks):
    import threading

    from backend.interactive.dispatch import preload_in_process
    from worker.engines import registry

    settings.PRELOAD_ENGINES = ["seganypet-demo"]
    registry.clear_engine_cache()
    preload_in_process()
    loader = next(t for t in threading.enumerate() if t.name == "preload-engines")
    loader.join(timeout=120)
    assert any(key[0] == "seganypet-demo" for key in registry._cache)
