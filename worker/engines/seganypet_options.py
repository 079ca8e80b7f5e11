"""What a SegAnyPET checkpoint asks of the engine, and the engine's device and thread setup.

Kept apart from :mod:`worker.engines.seganypet_engine` (the crop, encode, decode, paste-back loop):
the switches a checkpoint's variant and metadata select, the rule that a negative click always
removes, and the kind-bound wrapper the click-simulation evaluation uses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from worker.engines.base import Engine, Point, Prompts, SegmentationResult

if TYPE_CHECKING:
    from worker.engines.seganypet_engine import SegAnyPETEngine

# Name of the first-click prior in checkpoint metadata → the engine that computes it.
CLASSICAL_PRIOR = "classical-41pct"
# The array axes a checkpoint was trained on: torchio's RAS-canonical arrays (the reference's, and the
# engine boundary's), or the [slice, row, col] arrays of our first demo training.
RAS_AXES = "ras"
LEGACY_AXES = "slice-row-col"
# The published network's variant name: it runs the reference pipeline without our additions.
OFFICIAL_VARIANT = "vit_b_ori"
# What a negative click removes at least, around itself, whatever the network says.
NEGATIVE_CLICK_RADIUS_MM = 4.0


class SegAnyPETUnavailableError(RuntimeError):
    """No usable SegAnyPET weights were configured."""


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _configure_cpu_threads(requested: int | None) -> None:
    # torch may see the host's cores inside a container; use the CPUs this process may actually run on.
    if hasattr(os, "sched_getaffinity"):
        available = len(os.sched_getaffinity(0))
    else:
        available = os.cpu_count() or 1
    threads = max(1, requested or available)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def honour_negative_click(
    mask: np.ndarray, previous_mask: np.ndarray, click: Point, spacing: Sequence[float]
) -> np.ndarray:
    """A negative click always removes: it never adds voxels, and what lies within
    NEGATIVE_CLICK_RADIUS_MM of it is gone even when the network kept it."""
    mask &= previous_mask
    radius = np.asarray([max(1, int(np.ceil(NEGATIVE_CLICK_RADIUS_MM / s))) for s in spacing])
    lower = np.maximum(np.asarray(click.index) - radius, 0)
    upper = np.minimum(np.asarray(click.index) + radius + 1, mask.shape)
    window = tuple(slice(int(lo), int(hi)) for lo, hi in zip(lower, upper, strict=True))
    offsets = np.meshgrid(*(
        (np.arange(lo, hi) - c) * s for lo, hi, c, s in zip(lower, upper, click.index, spacing, strict=True)
    ), indexing="ij")
    ball = sum(o**2 for o in offsets) <= NEGATIVE_CLICK_RADIUS_MM**2
    mask[window] &= ~ball
    return mask


def engine_options_from_metadata(metadata: dict[str, Any], variant: str = "custom") -> dict[str, Any]:
    """Engine keyword arguments for what a checkpoint says it was trained with.

    The official network (``vit_b_ori``) runs the reference pipeline exactly: one crop, token 0, no
    prior, the binary mask pasted back by nearest neighbour. Our additions are switches its metadata
    would have to ask for. Demo checkpoints trained before the RAS convention (no ``array_axes`` in their
    metadata) saw [slice, row, col] crops of head-first axial phantoms, and say so.
    """
    options: dict[str, Any] = {}
    if variant == OFFICIAL_VARIANT:
        options.update(max_crops=1, paste="nearest")
    axes = metadata.get("array_axes") or (LEGACY_AXES if variant == "demo" else RAS_AXES)
    if axes not in (RAS_AXES, LEGACY_AXES):
        raise SegAnyPETUnavailableError(f"the checkpoint was trained on unknown array axes {axes!r}")
    options["array_axes"] = axes
    if variant == "demo":
        # Measured on an adult-size phantom (liver 3 L, kidneys 208 ml): organs 0.43 -> 0.88 Dice at one
        # click (model card). Not for official weights until a measurement says so.
        options["auto_zoom"] = (1.0, 2.0, 4.0)
    tokens = metadata.get("kind_tokens")
    if isinstance(tokens, dict):
        options["kind_tokens"] = {str(k): int(v) for k, v in tokens.items()}
    prior = metadata.get("first_click_prior")
    if prior == CLASSICAL_PRIOR:
        options["first_click_prior"] = make_classical_prior()
    elif prior:
        raise SegAnyPETUnavailableError(f"the checkpoint needs an unknown first-click prior {prior!r}")
    return options


def make_classical_prior() -> Engine:
    """The first-click prior the demo model is trained with: the 41 % SUVmax engine, default settings."""
    from worker.engines.classical import ClassicalPETEngine

    return ClassicalPETEngine()


class KindBoundEngine:
    """A SegAnyPET engine with a fixed object kind, for code that calls the plain Engine interface
    (e.g. the click-simulation evaluation)."""

    def __init__(self, engine: SegAnyPETEngine, kind: str | None) -> None:
        self.engine = engine
        self.kind = kind
        self.name = engine.name
        self.capabilities = engine.capabilities

    def segment(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        prompts: Prompts,
        previous_mask: np.ndarray | None = None,
        session_key: str | None = None,
        *,
        kind: str | None = None,
    ) -> SegmentationResult:
        return self.engine.segment(volume, spacing, prompts, previous_mask, session_key, kind=kind or self.kind)
