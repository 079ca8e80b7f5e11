"""Engines are configured from Django settings (never from os.environ inside worker/), and every
engine declares what it does with the common inputs, so callers never branch on an engine's name."""

from __future__ import annotations

import inspect

import pytest

from backend.interactive.engines import configure_engines
from worker.engines import registry


@pytest.fixture
def restore_registry():
    previous = registry.current_settings()
    yield
    registry.configure(previous)


def test_settings_reach_the_registry(settings, tmp_path, restore_registry):
    official = tmp_path / "official.pth"
    official.write_bytes(b"not read until the engine is built")
    settings.SEGANYPET_CHECKPOINT = str(official)
    settings.SEGANYPET_DEVICE = "cpu"
    settings.SEGANYPET_CACHE_MB = 64.0
    settings.SEGANYPET_TORCH_THREADS = 2
    configured = configure_engines()
    assert (configured.checkpoint, configured.device, configured.cache_mb, configured.torch_threads) == (
        str(official), "cpu", 64.0, 2)
    listing = {e["name"]: e for e in registry.available_engines()}
    assert listing["seganypet"]["available"] and listing["seganypet"]["weights"] == str(official)


def test_an_unset_checkpoint_makes_the_official_engine_unavailable_with_a_reason(settings, restore_registry):
    settings.SEGANYPET_CHECKPOINT = ""
    configure_engines()
    listing = {e["name"]: e for e in registry.available_engines()}
    assert not listing["seganypet"]["available"] and "SEGANYPET_CHECKPOINT" in listing["seganypet"]["reason"]


def test_the_registry_reads_no_environment(monkeypatch, tmp_path, restore_registry):
    registry.configure(registry.EngineSettings())
    monkeypatch.setenv("SEGANYPET_CHECKPOINT", str(tmp_path))  # would make it "available" if read
    assert not {e["name"]: e for e in registry.available_engines()}["seganypet"]["available"]
    import worker.engines.registry as module
    import worker.engines.seganypet_engine as engine_module

    for source in (inspect.getsource(module), inspect.getsource(engine_module)):
        assert "os.environ" not in source


def test_every_engine_takes_the_same_inputs_and_declares_its_capabilities():
    from worker.engines.classical import ClassicalPETEngine
    from worker.engines.seganypet_engine import KindBoundEngine, SegAnyPETEngine

    expected = ["self", "volume", "spacing", "prompts", "previous_mask", "session_key", "kind"]
    for engine_class in (ClassicalPETEngine, SegAnyPETEngine, KindBoundEngine):
        assert list(inspect.signature(engine_class.segment).parameters) == expected, engine_class
    for entry in registry.available_engines():
        capabilities = registry.capabilities_of(entry["name"])
        assert entry["capabilities"] == {
            "uses_kind": capabilities.uses_kind, "accepts_box": capabilities.accepts_box,
            "prefers_gpu": capabilities.prefers_gpu, "caches_per_session": capabilities.caches_per_session}
    assert ClassicalPETEngine.capabilities == registry.capabilities_of("threshold")
    assert SegAnyPETEngine.capabilities == registry.capabilities_of("seganypet")


def test_an_unknown_kind_is_refused_by_every_engine():
    import numpy as np

    from worker.engines.base import Point, PromptError, Prompts
    from worker.engines.classical import ClassicalPETEngine

    volume = np.zeros((8, 8, 8), dtype=np.float32)
    with pytest.raises(PromptError, match="unknown object kind"):
        ClassicalPETEngine().segment(volume, (2.0, 2.0, 2.0), Prompts(points=(Point((4, 4, 4)),)), kind="tumour")
