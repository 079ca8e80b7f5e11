"""The array convention at the engine boundary: RAS-canonical, as the reference pipeline feeds its network.

The app stores volumes as ``[slice, row, col]`` with an affine from those indices to LPS mm (DICOM's
order). The reference SegAnyPET/SAM-Med3D code trains and infers on torchio's ``ToCanonical`` arrays:
RAS+ (axis 0 = x towards the patient's right, axis 1 = y towards anterior, axis 2 = z towards
superior), so the slice axis of an axial series comes last. :class:`Canonical` converts between the
two with axis permutations and flips only (views, no resampling), from the affine alone, using
nibabel's orientation code (what torchio's ToCanonical uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel import orientations

from worker.engines.base import Box, Point, Prompts
from worker.nifti_layout import LPS_TO_RAS


@dataclass(frozen=True)
class Canonical:
    """How a stored array maps onto the RAS-canonical one: ``ras = stored.transpose(order)`` then a flip
    of every axis in ``flipped`` (axes of the transposed array)."""

    order: tuple[int, int, int]
    flipped: tuple[bool, bool, bool]
    stored_shape: tuple[int, int, int]
    stored_affine: np.ndarray  # stored index -> LPS mm

    @classmethod
    def from_lps_affine(cls, affine_lps: np.ndarray, shape: Sequence[int]) -> Canonical:
        affine_ras = LPS_TO_RAS @ np.asarray(affine_lps, dtype=np.float64)
        ornt = orientations.io_orientation(affine_ras)  # per stored axis: (world axis, direction)
        order = [0, 0, 0]
        flipped = [False, False, False]
        for stored_axis, (world_axis, direction) in enumerate(ornt):
            order[int(world_axis)] = stored_axis
            flipped[int(world_axis)] = direction < 0
        n0, n1, n2 = (int(n) for n in shape)
        return cls(tuple(order), tuple(flipped), (n0, n1, n2), np.asarray(affine_lps, dtype=np.float64))

    @property
    def shape(self) -> tuple[int, int, int]:
        a, b, c = (self.stored_shape[axis] for axis in self.order)
        return a, b, c

    def to_ras(self, array: np.ndarray) -> np.ndarray:
        """The RAS-canonical view of a stored-order array (no copy)."""
        view = array.transpose(self.order)
        return view[tuple(slice(None, None, -1) if flip else slice(None) for flip in self.flipped)]

    def from_ras(self, array: np.ndarray) -> np.ndarray:
        """A RAS-canonical array back in stored order (a view)."""
        unflipped = array[tuple(slice(None, None, -1) if flip else slice(None) for flip in self.flipped)]
        return unflipped.transpose(np.argsort(self.order))

    def spacing(self, stored_spacing: Sequence[float]) -> tuple[float, float, float]:
        a, b, c = (float(stored_spacing[axis]) for axis in self.order)
        return a, b, c

    def index_to_ras(self, index: Sequence[int]) -> tuple[int, int, int]:
        out = []
        for ras_axis, stored_axis in enumerate(self.order):
            value = int(index[stored_axis])
            out.append(self.stored_shape[stored_axis] - 1 - value if self.flipped[ras_axis] else value)
        a, b, c = out
        return a, b, c

    def box_to_ras(self, box: Box) -> Box:
        """A box (inclusive lower, exclusive upper) in RAS-canonical indices."""
        first = self.index_to_ras(box.lower)
        last = self.index_to_ras(tuple(u - 1 for u in box.upper))
        lower = tuple(min(a, b) for a, b in zip(first, last, strict=True))
        upper = tuple(max(a, b) + 1 for a, b in zip(first, last, strict=True))
        return Box(lower, upper)  # type: ignore[arg-type]

    def prompts_to_ras(self, prompts: Prompts) -> Prompts:
        points = tuple(Point(self.index_to_ras(p.index), p.positive) for p in prompts.points)
        return Prompts(points=points, box=self.box_to_ras(prompts.box) if prompts.box is not None else None)

    @property
    def ras_affine(self) -> np.ndarray:
        """RAS-canonical index -> RAS mm (the affine the reference sees after ToCanonical)."""
        affine_ras = LPS_TO_RAS @ self.stored_affine
        to_stored = np.zeros((4, 4))
        to_stored[3, 3] = 1.0
        for ras_axis, stored_axis in enumerate(self.order):
            n = self.stored_shape[stored_axis]
            if self.flipped[ras_axis]:
                to_stored[stored_axis, ras_axis] = -1.0
                to_stored[stored_axis, 3] = n - 1
            else:
                to_stored[stored_axis, ras_axis] = 1.0
        return affine_ras @ to_stored
