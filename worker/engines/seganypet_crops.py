"""Crops of the SegAnyPET engine: the virtual isotropic grid, crop sampling and z-scoring, low-resolution
logits moved between crops, and the per-session state of the crops an object spans.

Training builds its inputs with the same functions (crop_image, mask_to_prior_logits, decode_all_tokens),
so the model sees at inference what it saw in training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from worker.seganypet.model import Sam3D

TARGET_SPACING_MM = 1.5


# Crop origins are kept on multiples of the low-res cell (4 voxels) so logits can move between crops.
LOW_RES_STRIDE = 4


# A reused crop must keep every prompt at least this many voxels from its faces.
PROMPT_MARGIN = 8


# Mask voxels this close to a crop face mean the object continues beyond it.
BORDER_SLAB = 2


# Logit magnitude used when a previous mask comes from elsewhere (edited, other engine) rather than
# from our own cached logits.
MASK_PRIOR_LOGIT = 8.0


# An object is followed into a further crop only where it leaves the crop with at least this
# cross-section (about 28 × 28 mm): a large organ does, a thin leak from a lesion or a small organ does not.
MIN_CONTINUATION_MM2 = 800.0


Origin = tuple[int, int, int]


@dataclass(frozen=True)
class IsotropicGrid:
    """The virtual resampling of a volume to ``target_spacing`` mm voxels, on torchio's grid.

    As torchio's ``Resample`` builds it: ``floor(n · spacing / target)`` voxels per axis (singleton axes
    stay 1), centred on the original grid's centre, so the two grids share their centre point.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    target_spacing: float = TARGET_SPACING_MM

    @property
    def scale(self) -> np.ndarray:
        """Resampled voxels per original voxel, per axis."""
        return np.asarray(self.spacing, dtype=np.float64) / self.target_spacing

    @property
    def resampled_shape(self) -> tuple[int, int, int]:
        shape = np.asarray(self.shape)
        sizes = np.where(shape == 1, 1, np.floor(shape * self.scale + 1e-9))
        n0, n1, n2 = (int(n) for n in sizes)
        return n0, n1, n2

    @property
    def offset(self) -> np.ndarray:
        """Original index of resampled voxel 0, per axis (the shared centre, walked back)."""
        centre_old = (np.asarray(self.shape, dtype=np.float64) - 1) / 2
        centre_new = (np.asarray(self.resampled_shape, dtype=np.float64) - 1) / 2
        return centre_old - centre_new / self.scale

    def to_resampled(self, index: Sequence[float]) -> np.ndarray:
        return (np.asarray(index, dtype=np.float64) - self.offset) * self.scale

    def original_positions(self, axis: int, resampled: np.ndarray) -> np.ndarray:
        return self.offset[axis] + resampled / self.scale[axis]


def crop_positions(
    grid: IsotropicGrid, origin: Origin, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Original-grid positions of the crop's voxels, per axis."""
    p0, p1, p2 = (
        grid.original_positions(axis, origin[axis] + np.arange(size, dtype=np.float64)) for axis in range(3)
    )
    return p0, p1, p2


def sample_linear(array: np.ndarray, positions: Sequence[np.ndarray]) -> np.ndarray:
    """Trilinear samples of ``array`` at the outer product of per-axis positions; zero outside it."""
    block, local = _cut_block(array, positions)
    out = block.astype(np.float32, copy=False)
    for axis, pos in enumerate(local):
        out = _interpolate_axis(out, pos, axis)
    return out


def _cut_block(array: np.ndarray, positions: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    # Interpolating only the block the positions touch keeps a whole-body volume cheap.
    slices, local = [], []
    for n, pos in zip(array.shape, positions, strict=True):
        within = (pos >= -0.5) & (pos <= n - 0.5)
        inside = np.clip(pos[within], 0, n - 1)
        lo, hi = (
            (0, 1) if inside.size == 0 else (int(np.floor(inside.min())), int(np.floor(inside.max())) + 2)
        )
        hi = min(hi, n)
        slices.append(slice(lo, hi))
        local.append(np.where(within, np.clip(pos, 0, n - 1) - lo, -10.0))
    return array[tuple(slices)], local


def _interpolate_axis(array: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    n = array.shape[axis]
    # ITK's linear interpolator (torchio resamples with it) takes the edge value up to half a voxel
    # beyond the first and last centres, and the default value 0 further out.
    valid = (positions >= -0.5) & (positions <= n - 0.5)
    clipped = np.clip(positions, 0, n - 1)
    lower = np.minimum(np.floor(clipped).astype(np.intp), max(n - 2, 0))
    upper = np.minimum(lower + 1, n - 1)
    weight = np.where(valid, clipped - lower, 0.0).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = -1
    below = np.take(array, lower, axis=axis)
    above = np.take(array, upper, axis=axis)
    out = below + (above - below) * weight.reshape(shape)
    return out * valid.astype(np.float32).reshape(shape)


def zscore_positive(crop: np.ndarray) -> np.ndarray:
    """Z-score with mean/std of the voxels > 0 (torchio ZNormalization(masking x > 0), unbiased std)."""
    crop = np.nan_to_num(crop, nan=0.0, posinf=0.0, neginf=0.0)
    foreground = crop[crop > 0]
    if foreground.size < 2:
        return crop
    std = float(foreground.std(ddof=1))
    return (crop - float(foreground.mean())) / (std if std > 0 else 1.0)


def crop_image(volume: np.ndarray, grid: IsotropicGrid, origin: Origin, size: int) -> np.ndarray:
    """The network input for the crop at ``origin``: resampled, z-scored over voxels > 0, float32."""
    crop = sample_linear(volume, crop_positions(grid, origin, size))
    return np.ascontiguousarray(zscore_positive(crop).astype(np.float32, copy=False))


def mask_to_prior_logits(
    mask: np.ndarray, grid: IsotropicGrid, origin: Origin, size: int, stride: int = LOW_RES_STRIDE
) -> torch.Tensor:
    """Low-res logits (1, 1, size/stride, ...) standing for a mask given on the original grid."""
    # The bool mask goes in as is: only the block under the crop is converted to float.
    fraction = sample_linear(mask, crop_positions(grid, origin, size))
    pooled = F.avg_pool3d(torch.from_numpy(fraction)[None, None], stride)
    return (2 * pooled - 1) * MASK_PRIOR_LOGIT


def decode_all_tokens(
    model: Sam3D,
    image_embedding: torch.Tensor,
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    mask_logits: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of every mask token (B, M, 32, 32, 32) and their IoU estimates (B, M); token 0 is
    what :meth:`Sam3D.decode` returns."""
    sparse, dense = model.embed_prompts(image_embedding, point_coords, point_labels, mask_logits)
    return model.mask_decoder.predict_masks(
        image_embeddings=image_embedding,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
    )


def origin_for_centre(centre: Sequence[float], size: int, stride: int = LOW_RES_STRIDE) -> Origin:
    # Origins on the low-res lattice, so that logits of one crop shift exactly into another.
    o0, o1, o2 = (int(stride * round((c - size / 2) / stride)) for c in centre)
    return o0, o1, o2


def shift_logits(
    logits: torch.Tensor, source: Origin, target: Origin, stride: int = LOW_RES_STRIDE
) -> torch.Tensor:
    """Low-res logits of the crop at ``source`` seen from the crop at ``target`` (zeros where unseen)."""
    size = logits.shape[-1]
    out = torch.zeros_like(logits)
    src, dst = [], []
    for a in range(3):
        delta = (target[a] - source[a]) // stride
        lo, hi = max(0, -delta), min(size, size - delta)
        if lo >= hi:
            return out
        dst.append(slice(lo, hi))
        src.append(slice(lo + delta, hi + delta))
    out[..., dst[0], dst[1], dst[2]] = logits[..., src[0], src[1], src[2]]
    return out


@dataclass(frozen=True)
class Click:
    position: np.ndarray  # resampled voxel index (int)
    positive: bool


@dataclass
class SessionState:
    """What a session's next corrective click needs: the crops used and their logits."""

    primary_origin: Origin
    logits: dict[Origin, torch.Tensor]
    seeds: dict[Origin, list[Click]]  # extension crops' seed points, to decode them again alike
    # The mask returned (read-only): the next call's previous mask is usually this very array, which
    # is recognised without hashing 24 M voxels of a whole-body volume.
    mask: np.ndarray
    zoom: float = 1.0  # the zoom its object was found at; corrective clicks stay there

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.logits.values()) + self.mask.nbytes + 256

    def holds(self, previous_mask: np.ndarray) -> bool:
        if previous_mask is self.mask or _same_view(previous_mask, self.mask):
            return True
        return previous_mask.shape == self.mask.shape and bool(np.array_equal(previous_mask, self.mask))


@dataclass
class CropRun:
    origin: Origin
    logits: torch.Tensor  # (1, 1, 32, 32, 32) float32, on the model's device
    crop_logits: np.ndarray  # (size, size, size) float32
    iou: float
    seeds: list[Click] = field(default_factory=list)


@dataclass
class CropJob:
    origin: Origin
    seeds: list[Click] = field(default_factory=list)
    parent: CropRun | None = None


class PriorLogits:
    """Where the previous low-res logits of a crop come from."""

    def __init__(
        self,
        state: SessionState | None,
        previous_mask: np.ndarray | None,
        grid: IsotropicGrid,
        size: int,
        device: torch.device,
        stride: int = LOW_RES_STRIDE,
    ) -> None:
        self.state = state
        self.previous_mask = previous_mask
        self.grid = grid
        self.size = size
        self.device = device
        self.stride = stride

    def for_origin(self, origin: Origin) -> torch.Tensor | None:
        if self.state is not None:
            if origin in self.state.logits:
                return self.state.logits[origin]
            source = self.state.primary_origin
            return shift_logits(self.state.logits[source], source, origin, self.stride)
        if self.previous_mask is not None:
            return self._from_mask(origin)
        return None

    def _from_mask(self, origin: Origin) -> torch.Tensor:
        assert self.previous_mask is not None
        return mask_to_prior_logits(self.previous_mask, self.grid, origin, self.size, self.stride).to(
            self.device
        )


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """The same elements in the same memory: e.g. our own result after a round trip through transposed
    views (the app's stored order and back), recognised without comparing millions of voxels."""
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])
