"""The one interface every segmentation engine implements.

Every engine takes the same inputs: the PET volume (SUV, float32) as the app stores it, its voxel
spacing in mm in the same axis order, the prompts, the object's previous mask (or None for a new
object), a session key for engines that cache per image, and the object's kind (``"lesion"``,
``"organ"`` or None). What an engine does with them is declared in its :class:`Capabilities`, so
callers pass everything and never branch on an engine's name.

Coordinates are voxel indices into the volume array (axis order of the NumPy array), never world
millimetres: the browser converts clicks to PET voxel indices before sending them. The array
convention at this boundary is written down once, in ``docs/architecture.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class PromptError(ValueError):
    """A prompt that cannot be segmented (outside the volume, empty, malformed)."""


@dataclass(frozen=True)
class Point:
    index: tuple[int, int, int]
    positive: bool = True


@dataclass(frozen=True)
class Box:
    """Inclusive lower corner, exclusive upper corner, in voxel indices."""

    lower: tuple[int, int, int]
    upper: tuple[int, int, int]


@dataclass(frozen=True)
class Prompts:
    points: tuple[Point, ...] = ()
    box: Box | None = None

    def validate(self, shape: tuple[int, ...]) -> None:
        if not self.points and self.box is None:
            raise PromptError("at least one point or a box is required")
        for point in self.points:
            if len(point.index) != 3 or not all(0 <= c < s for c, s in zip(point.index, shape, strict=True)):
                raise PromptError(f"point {point.index} is outside the volume {tuple(shape)}")
        if self.box is not None:
            lo, hi = self.box.lower, self.box.upper
            if not all(0 <= a < b <= s for a, b, s in zip(lo, hi, shape, strict=True)):
                raise PromptError(f"box {lo}-{hi} is empty or outside the volume {tuple(shape)}")


@dataclass
class SegmentationResult:
    mask: np.ndarray  # bool, same shape as the volume
    score: float  # engine's confidence in [0, 1]
    timings_ms: dict[str, float] = field(default_factory=dict)


KINDS = ("lesion", "organ")


@dataclass(frozen=True)
class Capabilities:
    """What an engine does with the common inputs, and what it needs to run well."""

    uses_kind: bool = False  # the object kind changes the result (e.g. a mask token per kind)
    accepts_box: bool = True  # a box prompt limits the result
    prefers_gpu: bool = False  # runs a network; a CPU works, a GPU is faster
    caches_per_session: bool = False  # keeps per-image state (embeddings) under session_key


def check_kind(kind: str | None) -> None:
    if kind is not None and kind not in KINDS:
        raise PromptError(f"unknown object kind {kind!r}; expected one of {KINDS} or none")


class Engine(Protocol):
    name: str
    capabilities: Capabilities

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
        """Segment one object in ``volume`` (SUV, float32) from ``prompts``.

        ``previous_mask`` is the current mask of the object being refined (bool, same
        shape), ``session_key`` identifies the volume for engines that cache per image,
        ``kind`` is the object's kind (engines that do not use it ignore it).
        """
        ...
