"""Which segmentation engines exist, whether they can run here, and one cached instance of each.

Names: ``threshold`` (the classical PET engine; no weights, always available), ``seganypet`` (the
SAM-style network with official weights: the configured ``checkpoint`` must be a file) and
``seganypet-demo`` (the same network with our demo weights, default
``worker/seganypet/weights/demo.pt`` in the repository).

Configuration (checkpoint paths, device, cache size, threads) is an :class:`EngineSettings` passed in by
the host: the Django app sets it from its settings (``SEGANYPET_*``) when it starts, a script or a test
calls :func:`configure`. This module reads no environment variables and imports neither Django nor
PyTorch; PyTorch is imported only when a SegAnyPET engine is built.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from worker.engines.base import Capabilities, Engine

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEMO_CHECKPOINT = REPO_ROOT / "worker" / "seganypet" / "weights" / "demo.pt"


@dataclass(frozen=True)
class EngineSettings:
    """How engines are built here. Empty strings and None mean "the default"."""

    checkpoint: str = ""  # the official SegAnyPET checkpoint; empty: the `seganypet` engine is unavailable
    demo_checkpoint: str = ""  # empty: DEFAULT_DEMO_CHECKPOINT; relative paths are relative to the repository
    device: str = ""  # "cuda", "cpu" or empty (CUDA when present)
    trust_checkpoint: bool = False  # allow full unpickling of the official checkpoint (trusted files only)
    cache_mb: float | None = None  # embedding cache budget per engine
    torch_threads: int | None = None  # CPU threads; default: the CPUs this process may run on


_settings = EngineSettings()


def configure(settings: EngineSettings | None = None, **changes: Any) -> EngineSettings:
    """Set how engines are built (whole, or by field); cached engines built otherwise are forgotten."""
    global _settings
    new = replace(settings or _settings, **changes)
    if new != _settings:
        _settings = new
        clear_engine_cache()
    return _settings


def current_settings() -> EngineSettings:
    return _settings


def _seganypet_options(**options: Any) -> dict[str, Any]:
    built = {"device": _settings.device or None, "torch_threads": _settings.torch_threads}
    if _settings.cache_mb is not None:
        built["cache_bytes"] = int(_settings.cache_mb * 2**20)
    return {**built, **options}


class EngineUnavailableError(RuntimeError):
    """A known engine that cannot run here (for SegAnyPET: no weights configured)."""


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""
    weights: str | None = None


@dataclass(frozen=True)
class _EngineSpec:
    name: str
    description: str
    needs_weights: bool
    availability: Callable[[], Availability]
    build: Callable[..., Engine]
    capabilities: Capabilities


# ---------------------------------------------------------------------- classical


def _classical_availability() -> Availability:
    return Availability(True)


def _build_classical(**options: Any) -> Engine:
    from worker.engines.classical import ClassicalPETEngine

    return ClassicalPETEngine(**options)


# ---------------------------------------------------------------------- SegAnyPET


def demo_checkpoint_path() -> Path:
    """Where the demo checkpoint is looked for (``demo_checkpoint``, relative to the repository)."""
    configured = _settings.demo_checkpoint.strip()
    if not configured:
        return DEFAULT_DEMO_CHECKPOINT
    path = Path(configured).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def seganypet_availability() -> Availability:
    """The official network: only with a configured checkpoint that is a file."""
    configured = _settings.checkpoint.strip()
    if not configured:
        return Availability(False, "set SEGANYPET_CHECKPOINT to an official SegAnyPET checkpoint (e.g. seganypet_v2.pth)")
    path = Path(configured).expanduser()
    if path.is_file():
        return Availability(True, weights=str(path))
    return Availability(False, f"SEGANYPET_CHECKPOINT points to {path}, which is not a file")


def demo_availability() -> Availability:
    demo = demo_checkpoint_path()
    if demo.is_file():
        return Availability(True, weights=str(demo))
    return Availability(False, f"the demo checkpoint is missing at {demo} (python -m worker.seganypet.train)")


def _build_seganypet(**options: Any) -> Engine:
    availability = seganypet_availability()
    if not availability.available:
        raise EngineUnavailableError(availability.reason)
    from worker.engines.seganypet_engine import SegAnyPETUnavailableError, create_seganypet_engine  # torch

    try:
        return create_seganypet_engine(availability.weights, trust_checkpoint=_settings.trust_checkpoint,
                                       **_seganypet_options(**options))
    except SegAnyPETUnavailableError as error:
        raise EngineUnavailableError(str(error)) from error


def _build_seganypet_demo(**options: Any) -> Engine:
    availability = demo_availability()
    if not availability.available:
        raise EngineUnavailableError(availability.reason)
    from worker.engines.seganypet_engine import SegAnyPETEngine  # torch

    engine = SegAnyPETEngine.from_checkpoint(demo_checkpoint_path(), **_seganypet_options(**options))
    engine.name = "seganypet-demo"  # this instance's name, so logs and masks say which weights answered
    return engine


# ---------------------------------------------------------------------- registry

_SPECS: dict[str, _EngineSpec] = {
    spec.name: spec
    for spec in (
        _EngineSpec(
            "threshold",
            "EANM 41 % SUVmax isocontour grown from clicks; no weights, CPU, milliseconds per click",
            False,
            _classical_availability,
            _build_classical,
            Capabilities(uses_kind=False, accepts_box=True, prefers_gpu=False, caches_per_session=False),
        ),
        _EngineSpec(
            "seganypet",
            "SegAnyPET promptable 3D network (SAM-Med3D layout) with the official checkpoint; GPU recommended",
            True,
            seganypet_availability,
            _build_seganypet,
            Capabilities(uses_kind=True, accepts_box=True, prefers_gpu=True, caches_per_session=True),
        ),
        _EngineSpec(
            "seganypet-demo",
            "The same network, small, trained on synthetic phantoms by worker/seganypet/train.py; NOT for "
            "clinical use",
            True,
            demo_availability,
            _build_seganypet_demo,
            Capabilities(uses_kind=True, accepts_box=True, prefers_gpu=True, caches_per_session=True),
        ),
    )
}

_cache: dict[tuple[str, str], Engine] = {}
_cache_lock = threading.Lock()


def engine_names() -> list[str]:
    return list(_SPECS)


def available_engines() -> list[dict[str, Any]]:
    """Every known engine: name, description, needs_weights, available, reason (when not), weights,
    capabilities."""
    listing = []
    for spec in _SPECS.values():
        availability = spec.availability()
        listing.append(
            {
                "name": spec.name,
                "description": spec.description,
                "needs_weights": spec.needs_weights,
                "available": availability.available,
                "reason": availability.reason,
                "weights": availability.weights,
                "capabilities": asdict(spec.capabilities),
            }
        )
    return listing


def _options_key(options: dict[str, Any]) -> str:
    return repr(sorted(options.items()))


def get_engine(name: str, **options: Any) -> Engine:
    """The engine called ``name`` built with ``options``; one shared instance per (name, options).

    Raises ``ValueError`` for an unknown name and :class:`EngineUnavailableError` for a known engine that
    cannot run here (no weights).
    """
    spec = _SPECS.get(name)
    if spec is None:
        available = [e["name"] for e in available_engines() if e["available"]]
        raise ValueError(
            f"unknown segmentation engine {name!r}; available engines: {', '.join(available) or 'none'} "
            f"(known: {', '.join(_SPECS)})"
        )
    key = (name, _options_key(options))
    with _cache_lock:
        engine = _cache.get(key)
        if engine is None:
            engine = spec.build(**options)
            _cache[key] = engine
        return engine


def clear_engine_cache() -> None:
    """Forget the cached instances (tests; after weights change)."""
    with _cache_lock:
        _cache.clear()


def capabilities_of(name: str) -> Capabilities:
    spec = _SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown segmentation engine {name!r}")
    return spec.capabilities


def preload_engines(names: list[str]) -> list[str]:
    """Build the named engines now (weights loaded, model on its device); returns those loaded. An engine
    that cannot run here (e.g. no checkpoint configured) is skipped with a log line, not an error."""
    loaded = []
    for name in names:
        try:
            get_engine(name)
        except Exception as error:
            log.warning("engine %s not preloaded: %s", name, error)
        else:
            loaded.append(name)
    if loaded:
        log.info("engines preloaded: %s", ", ".join(loaded))
    return loaded
