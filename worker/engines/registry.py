"""Which segmentation engines exist, whether they can run here, and one cached instance of each.

Names: ``threshold`` (the classical PET engine; no weights, always available), ``seganypet`` (the
SAM-style network with official weights: ``SEGANYPET_CHECKPOINT`` must point at a file) and
``seganypet-demo`` (the same network with our demo weights, ``SEGANYPET_DEMO_CHECKPOINT``, default
``worker/seganypet/weights/demo.pt`` in the repository).

PyTorch is imported only when a SegAnyPET engine is built, never by importing this module. The
environment is read when asked, not at import time, so tests and operators can change it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.engines.base import Engine

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DEMO_CHECKPOINT = REPO_ROOT / "worker" / "seganypet" / "weights" / "demo.pt"


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


# ---------------------------------------------------------------------- classical


def _classical_availability() -> Availability:
    return Availability(True)


def _build_classical(**options: Any) -> Engine:
    from worker.engines.classical import ClassicalPETEngine

    return ClassicalPETEngine(**options)


# ---------------------------------------------------------------------- SegAnyPET


def demo_checkpoint_path() -> Path:
    """Where the demo checkpoint is looked for (``SEGANYPET_DEMO_CHECKPOINT``, relative to the repo)."""
    configured = os.environ.get("SEGANYPET_DEMO_CHECKPOINT", "").strip()
    if not configured:
        return DEFAULT_DEMO_CHECKPOINT
    path = Path(configured).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def seganypet_availability() -> Availability:
    """The official network: only with SEGANYPET_CHECKPOINT pointing at a file."""
    configured = os.environ.get("SEGANYPET_CHECKPOINT", "").strip()
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
        return create_seganypet_engine(None, **options)
    except SegAnyPETUnavailableError as error:
        raise EngineUnavailableError(str(error)) from error


def _build_seganypet_demo(**options: Any) -> Engine:
    availability = demo_availability()
    if not availability.available:
        raise EngineUnavailableError(availability.reason)
    from worker.engines.seganypet_engine import SegAnyPETEngine  # torch

    engine = SegAnyPETEngine.from_checkpoint(demo_checkpoint_path(), **options)
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
        ),
        _EngineSpec(
            "seganypet",
            "SegAnyPET promptable 3D network (SAM-Med3D layout) with the official checkpoint; GPU recommended",
            True,
            seganypet_availability,
            _build_seganypet,
        ),
        _EngineSpec(
            "seganypet-demo",
            "The same network, small, trained on synthetic phantoms by worker/seganypet/train.py; NOT for "
            "clinical use",
            True,
            demo_availability,
            _build_seganypet_demo,
        ),
    )
}

_cache: dict[tuple[str, str], Engine] = {}
_cache_lock = threading.Lock()


def engine_names() -> list[str]:
    return list(_SPECS)


def available_engines() -> list[dict[str, Any]]:
    """Every known engine: name, description, needs_weights, available, reason (when not), weights."""
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
