"""SegAnyPET engine: promptable 3D segmentation of PET with the SAM-Med3D-style network.

What one ``segment`` call does, following the reference inference (SegAnyPET/SAM-Med3D
``infer_utils``) where it exists:

1. The volume is (virtually) resampled to isotropic voxels of the config's ``crop_spacing_mm`` (1.5 mm
   for the published network, 2 mm for the demo), linear for the image. Voxel centre 0 stays where it
   is: resampled index r lies at original index r · 1.5 / spacing. Only the crop that is needed (128³
   published, 64³ demo) is sampled; positions outside the volume are zero (zero padding at borders).
2. The crop is centred on the prompts (kept where it was for corrective clicks on the same object, so
   the cached embedding and the previous logits stay valid) and z-scored over its voxels > 0.
3. The image embedding is computed once per (session_key, crop origin) and kept in an LRU cache
   bounded by a byte budget; further clicks in the same crop only run the prompt encoder and decoder.
4. Points become crop voxel indices in array-axis order (the prompt encoder adds 0.5, as the
   reference does). The previous low-resolution logits (1, 1, 32, 32, 32) are fed back; they are
   kept per session_key. ``previous_mask=None`` means a new object: start from zeros.
5. The 32³ logits are upsampled trilinearly to the crop size; sigmoid > 0.5 (logit > 0) is the mask. It is
   resampled back onto the original grid (linear interpolation of the logits, then the threshold) and
   pasted into a full-volume mask.
6. Objects larger than one crop: when the mask reaches a crop face that is not the volume border,
   another crop is run, centred on where the mask leaves the crop (50 % overlap, as the paper's sliding
   window), seeded with a positive point inside the first result and with the first result's logits
   as previous mask. Results are merged by union, up to ``max_crops`` crops.

Object kind and first-click prior (optional, for checkpoints trained for them; official weights use
neither): ``segment(..., kind="lesion" | "organ")`` selects the decoder's mask token for that kind
(``kind_tokens``, e.g. ``{"lesion": 1, "organ": 2}``; token 0, the single-mask output, otherwise),
because one click on a lesion is ambiguous between the lesion and its host organ. With a
``first_click_prior`` engine (the 41 % SUVmax threshold engine for the demo model), the first click of
a new object starts from that engine's region, fed in as the previous low-resolution logits, instead
of zeros. A checkpoint's metadata says which of the two it was trained with (``kind_tokens``,
``first_click_prior``); :meth:`SegAnyPETEngine.from_checkpoint` applies them. Training builds its
inputs with the same functions (:func:`crop_image`, :func:`mask_to_prior_logits`,
:func:`decode_all_tokens`), so the model sees at inference what it saw in training.

Boxes: the published box path of the prompt encoder cannot run (it adds point embeddings 2 and 3,
which the checkpoints do not have) and was never trained. A box is therefore used as a crop centre
and limit (nothing outside it is returned, no crop is extended beyond it) and as a positive point at
its centre when no positive click lies inside it.

Orientation: the engine does not reorient. The model was trained on torchio's canonical RAS arrays
(axis 0 = x, 1 = y, 2 = z); the caller passes volumes in that array orientation.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from worker.engines.base import Box, Engine, PromptError, Prompts, SegmentationResult
from worker.engines.cache import LRUByteCache
from worker.seganypet.checkpoint import load_checkpoint
from worker.seganypet.model import Sam3D, count_parameters

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
DEFAULT_CACHE_BYTES = 512 * 2**20
DEFAULT_MAX_CROPS = 4
KINDS = ("lesion", "organ")
# Name of the first-click prior in checkpoint metadata → the engine that computes it.
CLASSICAL_PRIOR = "classical-41pct"

Origin = tuple[int, int, int]


class SegAnyPETUnavailableError(RuntimeError):
    """No usable SegAnyPET weights were configured."""


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class IsotropicGrid:
    """The virtual resampling of a volume to ``target_spacing`` mm voxels."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    target_spacing: float = TARGET_SPACING_MM

    @property
    def scale(self) -> np.ndarray:
        """Resampled voxels per original voxel, per axis."""
        return np.asarray(self.spacing, dtype=np.float64) / self.target_spacing

    @property
    def resampled_shape(self) -> tuple[int, int, int]:
        extent = (np.asarray(self.shape) - 1) * self.scale
        n0, n1, n2 = (int(n) for n in np.floor(extent + 1e-6) + 1)
        return n0, n1, n2

    def to_resampled(self, index: Sequence[float]) -> np.ndarray:
        return np.asarray(index, dtype=np.float64) * self.scale

    def original_positions(self, axis: int, resampled: np.ndarray) -> np.ndarray:
        return resampled / self.scale[axis]


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
        inside = pos[(pos >= 0) & (pos <= n - 1)]
        lo, hi = (
            (0, 1) if inside.size == 0 else (int(np.floor(inside.min())), int(np.floor(inside.max())) + 2)
        )
        hi = min(hi, n)
        slices.append(slice(lo, hi))
        local.append(np.where((pos >= 0) & (pos <= n - 1), pos - lo, -1.0))
    return array[tuple(slices)], local


def _interpolate_axis(array: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    n = array.shape[axis]
    valid = (positions >= 0) & (positions <= n - 1)
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


# --------------------------------------------------------------------------- engine state


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

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.logits.values()) + self.mask.nbytes + 256

    def holds(self, previous_mask: np.ndarray) -> bool:
        if previous_mask is self.mask:
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


# --------------------------------------------------------------------------- the engine


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _configure_cpu_threads() -> None:
    # torch may see the host's cores inside a container; use the CPUs this process may actually run on.
    requested = os.environ.get("SEGANYPET_TORCH_THREADS", "").strip()
    if hasattr(os, "sched_getaffinity"):
        available = len(os.sched_getaffinity(0))
    else:
        available = os.cpu_count() or 1
    threads = max(1, int(requested) if requested else available)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class SegAnyPETEngine:
    name = "seganypet"

    def __init__(
        self,
        model: Sam3D,
        *,
        device: str | torch.device | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        target_spacing: float | None = None,
        max_crops: int = DEFAULT_MAX_CROPS,
        amp: bool = True,
        variant: str = "custom",
        checkpoint: str = "",
        kind_tokens: dict[str, int] | None = None,
        first_click_prior: Engine | None = None,
        single_crop_lesions: bool = True,
        min_continuation_mm2: float = MIN_CONTINUATION_MM2,
    ) -> None:
        self.device = torch.device(device) if device is not None else _default_device()
        if self.device.type == "cpu":
            _configure_cpu_threads()
        self.model = model.to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.crop_size = model.config.img_size
        self.low_res_stride = model.config.img_size // model.config.low_res_size
        self.target_spacing = target_spacing or model.config.crop_spacing_mm
        self.max_crops = max(1, max_crops)
        self._crop_limit = self.max_crops
        self.single_crop_lesions = single_crop_lesions
        self.min_continuation_mm2 = min_continuation_mm2
        self.amp_dtype = self._amp_dtype() if amp else None
        self.cache = LRUByteCache(cache_bytes)
        self.variant = variant
        self.checkpoint = checkpoint
        self.kind_tokens = dict(kind_tokens or {})
        for kind, token in self.kind_tokens.items():
            if kind not in KINDS or not 0 <= token < model.mask_decoder.num_mask_tokens:
                raise ValueError(f"invalid kind token {kind!r} → {token}")
        self.first_click_prior = first_click_prior
        self._mask_token = 0
        self.stats = {"encoder_runs": 0, "decoder_runs": 0, "embedding_hits": 0, "crops": 0}
        self.last_crop_origins: list[Origin] = []
        self._lock = threading.RLock()

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, trust_pickle: bool = False, **kwargs: Any
    ) -> SegAnyPETEngine:
        loaded = load_checkpoint(path, trust_pickle=trust_pickle)
        options = engine_options_from_metadata(loaded.metadata)
        options.update(kwargs)
        return cls(loaded.model, variant=loaded.variant, checkpoint=str(path), **options)

    @property
    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "variant": self.variant,
            "demo": self.variant != "vit_b_ori",
            "checkpoint": self.checkpoint,
            "device": str(self.device),
            "parameters": count_parameters(self.model),
            "kind_tokens": dict(self.kind_tokens),
            "first_click_prior": getattr(self.first_click_prior, "name", None),
        }

    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda":
            return None  # CPU bf16 is slower than fp32 without AMX and changes results
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ----------------------------------------------------------------- public API

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
        """Segment one object; ``kind`` (``"lesion"``/``"organ"``/``None``) picks the mask token when
        the checkpoint has one for it (see the module docstring)."""
        started = time.perf_counter()
        grid = self._grid(volume, spacing)
        prompts.validate(volume.shape)
        if kind is not None and kind not in KINDS:
            raise PromptError(f"unknown object kind {kind!r}; expected one of {KINDS} or none")
        if previous_mask is not None and previous_mask.shape != volume.shape:
            raise PromptError(f"previous mask {previous_mask.shape} does not match the volume {volume.shape}")
        box = self._box_in_resampled(prompts.box, grid) if prompts.box is not None else None
        clicks = self._clicks(prompts, grid, box)
        timings = {"prepare": 0.0, "encode": 0.0, "decode": 0.0, "paste": 0.0}
        with self._lock, torch.inference_mode():
            # Read by _decode; set under the lock because the engine is shared between threads.
            self._mask_token = self.kind_tokens.get(kind, 0) if kind is not None else 0
            # A lesion fits one crop (128 mm even for the demo); extension crops would only grow leaks.
            self._crop_limit = 1 if kind == "lesion" and self.single_crop_lesions else self.max_crops
            state, mask_prior = self._session_prior(session_key, grid, previous_mask)
            if state is None and mask_prior is None and self.first_click_prior is not None:
                prior_started = time.perf_counter()
                mask_prior = self._first_click_prior(volume, spacing, prompts, session_key)
                timings["prior"] = _ms(prior_started)
            prior = PriorLogits(state, mask_prior, grid, self.crop_size, self.device, self.low_res_stride)
            primary = self._primary_origin(clicks, box, state)
            jobs = [CropJob(primary, seeds=list(state.seeds.get(primary, [])) if state else [])]
            if state is not None:
                # A corrective click decodes again every crop the object already spans (embeddings are
                # cached): moving the primary crop to the click must not drop what other crops found.
                jobs += [CropJob(origin, seeds=list(state.seeds.get(origin, [])))
                         for origin in state.logits if origin != primary]
            runs = self._run_crops(volume, grid, clicks, box, jobs, prior, session_key, timings)
            paste_started = time.perf_counter()
            mask = self._paste(runs, grid, prompts.box)
            timings["paste"] = _ms(paste_started)
            self._remember(session_key, grid, runs, mask)
        self.last_crop_origins = [run.origin for run in runs]
        timings["total"] = _ms(started)
        return SegmentationResult(mask=mask, score=float(np.clip(runs[0].iou, 0.0, 1.0)), timings_ms=timings)

    def _first_click_prior(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        prompts: Prompts,
        session_key: str | None,
    ) -> np.ndarray | None:
        """The prior engine's region for a new object (None when it finds nothing)."""
        assert self.first_click_prior is not None
        result = self.first_click_prior.segment(volume, spacing, prompts, None, session_key)
        return result.mask if result.mask.any() else None

    def clear_session(self, session_key: str) -> None:
        """Forget a session's embeddings and logits (e.g. when its scan is closed)."""
        with self._lock:
            self.cache.discard_where(
                lambda key: isinstance(key, tuple) and len(key) > 1 and key[1] == session_key
            )

    # ----------------------------------------------------------------- prompts and crops

    def _grid(self, volume: np.ndarray, spacing: Sequence[float]) -> IsotropicGrid:
        if volume.ndim != 3:
            raise PromptError(f"expected a 3D volume, got shape {volume.shape}")
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise PromptError(f"voxel spacing must be three positive numbers, got {tuple(spacing)}")
        s0, s1, s2 = (float(s) for s in spacing)
        n0, n1, n2 = volume.shape
        return IsotropicGrid((n0, n1, n2), (s0, s1, s2), self.target_spacing)

    @staticmethod
    def _box_in_resampled(box: Box, grid: IsotropicGrid) -> tuple[np.ndarray, np.ndarray]:
        lower = grid.to_resampled(box.lower)
        upper = grid.to_resampled(np.asarray(box.upper) - 1)  # inclusive last voxel
        return lower, upper

    @staticmethod
    def _clicks(
        prompts: Prompts, grid: IsotropicGrid, box: tuple[np.ndarray, np.ndarray] | None
    ) -> list[Click]:
        clicks = [Click(np.rint(grid.to_resampled(p.index)).astype(int), p.positive) for p in prompts.points]
        if box is not None:
            lower, upper = box
            inside = [
                c
                for c in clicks
                if c.positive and np.all(c.position >= lower) and np.all(c.position <= upper)
            ]
            if not inside:
                clicks.append(Click(np.rint((lower + upper) / 2).astype(int), True))
        return clicks

    def _primary_origin(
        self, clicks: list[Click], box: tuple[np.ndarray, np.ndarray] | None, state: SessionState | None
    ) -> Origin:
        size = self.crop_size
        required = [c.position for c in clicks] + (list(box) if box is not None else [])
        if state is not None and self._holds(state.primary_origin, required):
            return state.primary_origin
        positives = [c.position for c in clicks if c.positive]
        for group in (required, positives, [clicks[-1].position]):
            if group and np.all(np.ptp(np.stack(group), axis=0) <= size - 2 * PROMPT_MARGIN):
                stacked = np.stack(group)
                return origin_for_centre((stacked.min(axis=0) + stacked.max(axis=0)) / 2, size, self.low_res_stride)
        return origin_for_centre(clicks[-1].position, size, self.low_res_stride)

    def _holds(self, origin: Origin, positions: list[np.ndarray]) -> bool:
        lo = np.asarray(origin) + PROMPT_MARGIN
        hi = np.asarray(origin) + self.crop_size - 1 - PROMPT_MARGIN
        return all(np.all(p >= lo) and np.all(p <= hi) for p in positions)

    def _clicks_in_crop(self, clicks: list[Click], origin: Origin) -> list[Click]:
        lo = np.asarray(origin)
        return [c for c in clicks if np.all(c.position >= lo) and np.all(c.position < lo + self.crop_size)]

    def _run_crops(
        self,
        volume: np.ndarray,
        grid: IsotropicGrid,
        clicks: list[Click],
        box: tuple[np.ndarray, np.ndarray] | None,
        jobs: list[CropJob],
        prior: PriorLogits,
        session_key: str | None,
        timings: dict[str, float],
    ) -> list[CropRun]:
        queue: deque[CropJob] = deque(jobs)
        runs: list[CropRun] = []
        # Crops the object already spans are kept even past the limit (a click adds at most the limit).
        limit = self._crop_limit if self._crop_limit == 1 else min(len(jobs) + self._crop_limit - 1,
                                                                    2 * self._crop_limit)
        while queue and len(runs) < limit:
            job = queue.popleft()
            if any(run.origin == job.origin for run in runs):
                continue
            previous = self._prior_for(job, prior, bool(runs))
            points = self._clicks_in_crop(clicks, job.origin) + job.seeds
            embedding = self._embedding(volume, grid, job.origin, session_key, timings)
            run = self._decode(embedding, job.origin, points, previous, timings)
            run.seeds = job.seeds
            runs.append(run)
            queue.extend(self._continuations(run, grid, box, runs))
        self.stats["crops"] += len(runs)
        return runs

    @staticmethod
    def _prior_for(job: CropJob, prior: PriorLogits, is_extension: bool) -> torch.Tensor | None:
        if not is_extension:
            return prior.for_origin(job.origin)
        # An extension crop prefers its own logits from the previous click, else this call's result.
        if prior.state is not None and job.origin in prior.state.logits:
            return prior.state.logits[job.origin]
        if job.parent is not None:
            return shift_logits(job.parent.logits, job.parent.origin, job.origin, prior.stride)
        return None

    def _continuations(
        self,
        run: CropRun,
        grid: IsotropicGrid,
        box: tuple[np.ndarray, np.ndarray] | None,
        runs: list[CropRun],
    ) -> Iterator[CropJob]:
        """Crops that continue the object where it leaves ``run``'s crop through an inner face."""
        size = self.crop_size
        mask = run.crop_logits > 0
        origin = np.asarray(run.origin)
        for axis in range(3):
            for high in (False, True):
                if not self._face_is_open(run.origin, axis, high, grid, box):
                    continue
                index = [slice(None)] * 3
                index[axis] = slice(size - BORDER_SLAB, size) if high else slice(0, BORDER_SLAB)
                border = np.argwhere(mask[tuple(index)])
                # A thin leak through a face is not an organ that goes on: it needs a real cross-section.
                cross_section_mm2 = len(border) / BORDER_SLAB * self.target_spacing**2
                if border.size == 0 or cross_section_mm2 < self.min_continuation_mm2:
                    continue
                if high:
                    border[:, axis] += size - BORDER_SLAB
                centroid = border.mean(axis=0)
                seed = border[np.argmin(np.abs(border - centroid).sum(axis=1))]
                centre = origin + centroid
                centre[axis] = origin[axis] + (size - 1 if high else 0)
                if self._is_covered(centre, runs):
                    continue
                yield CropJob(origin_for_centre(centre, size, self.low_res_stride), seeds=[Click(origin + seed, True)], parent=run)

    def _face_is_open(
        self,
        origin: Origin,
        axis: int,
        high: bool,
        grid: IsotropicGrid,
        box: tuple[np.ndarray, np.ndarray] | None,
    ) -> bool:
        # A face on the volume border (or the box limit) cuts nothing: the object cannot go on there.
        if high:
            last = origin[axis] + self.crop_size - 1
            limit = (
                grid.resampled_shape[axis] - 1
                if box is None
                else min(grid.resampled_shape[axis] - 1, box[1][axis])
            )
            return last < limit
        limit = 0.0 if box is None else max(0.0, box[0][axis])
        return origin[axis] > limit

    def _is_covered(self, centre: np.ndarray, runs: list[CropRun]) -> bool:
        quarter = self.crop_size / 4
        for run in runs:
            lo = np.asarray(run.origin) + quarter
            if np.all(centre >= lo) and np.all(centre < lo + 2 * quarter):
                return True
        return False

    # ----------------------------------------------------------------- network

    def _embedding(
        self,
        volume: np.ndarray,
        grid: IsotropicGrid,
        origin: Origin,
        session_key: str | None,
        timings: dict[str, float],
    ) -> torch.Tensor:
        key = (
            ("embedding", session_key, grid.shape, grid.spacing, origin) if session_key is not None else None
        )
        if key is not None:
            cached = self.cache.get(key)
            if cached is not None:
                self.stats["embedding_hits"] += 1
                return cached
        started = time.perf_counter()
        image = self._crop_image(volume, grid, origin)
        timings["prepare"] += _ms(started)
        started = time.perf_counter()
        with self._autocast():
            embedding = self.model.encode_image(image)
        self._synchronise()
        timings["encode"] += _ms(started)
        self.stats["encoder_runs"] += 1
        if key is not None:
            self.cache.put(key, embedding, embedding.numel() * embedding.element_size())
        return embedding

    def _crop_image(self, volume: np.ndarray, grid: IsotropicGrid, origin: Origin) -> torch.Tensor:
        return torch.from_numpy(crop_image(volume, grid, origin, self.crop_size))[None, None].to(self.device)

    def _decode(
        self,
        embedding: torch.Tensor,
        origin: Origin,
        points: list[Click],
        previous: torch.Tensor | None,
        timings: dict[str, float],
    ) -> CropRun:
        started = time.perf_counter()
        coords = labels = None
        if points:
            local = np.stack([c.position - np.asarray(origin) for c in points])
            coords = torch.as_tensor(local, dtype=torch.float32, device=self.device)[None]
            labels = torch.as_tensor([int(c.positive) for c in points], dtype=torch.long, device=self.device)[
                None
            ]
        token = self._mask_token
        with self._autocast():
            if token == 0:
                logits, iou = self.model.decode(embedding, coords, labels, previous)
            else:
                all_logits, all_iou = decode_all_tokens(self.model, embedding, coords, labels, previous)
                logits, iou = all_logits[:, token : token + 1], all_iou[:, token : token + 1]
        logits = logits.float()
        upsampled = F.interpolate(logits, size=(self.crop_size,) * 3, mode="trilinear", align_corners=False)
        crop_logits = upsampled[0, 0].cpu().numpy()
        timings["decode"] += _ms(started)
        self.stats["decoder_runs"] += 1
        return CropRun(
            origin=origin, logits=logits, crop_logits=crop_logits, iou=float(iou.float().flatten()[0])
        )

    def _synchronise(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ----------------------------------------------------------------- results and sessions

    def _paste(self, runs: list[CropRun], grid: IsotropicGrid, box: Box | None) -> np.ndarray:
        mask = np.zeros(grid.shape, dtype=bool)
        for run in runs:
            placed = self._crop_region_on_original(run.origin, grid)
            if placed is None:
                continue
            region, positions = placed
            mask[region] |= sample_linear(run.crop_logits, positions) > 0
        if box is not None:
            limited = np.zeros_like(mask)
            window = tuple(slice(lo, hi) for lo, hi in zip(box.lower, box.upper, strict=True))
            limited[window] = mask[window]
            mask = limited
        return mask

    def _crop_region_on_original(
        self, origin: Origin, grid: IsotropicGrid
    ) -> tuple[tuple[slice, ...], list[np.ndarray]] | None:
        """Original voxels inside the crop and their (fractional) crop coordinates."""
        region, positions = [], []
        for axis in range(3):
            scale = grid.scale[axis]
            first = max(0, int(np.ceil(origin[axis] / scale - 1e-6)))
            last = min(
                grid.shape[axis] - 1, int(np.floor((origin[axis] + self.crop_size - 1) / scale + 1e-6))
            )
            if first > last:
                return None
            indices = np.arange(first, last + 1, dtype=np.float64)
            region.append(slice(first, last + 1))
            positions.append(np.clip(indices * scale - origin[axis], 0, self.crop_size - 1))
        return tuple(region), positions

    def _session_prior(
        self, session_key: str | None, grid: IsotropicGrid, previous_mask: np.ndarray | None
    ) -> tuple[SessionState | None, np.ndarray | None]:
        """Cached state when ``previous_mask`` is our own last result, else the mask itself (or nothing)."""
        key = self._session_cache_key(session_key, grid)
        if previous_mask is None or not previous_mask.any():
            if key is not None:
                self.cache.discard(key)  # a new object: its predecessor's logits must not leak in
            return None, None
        state = self.cache.get(key) if key is not None else None
        if isinstance(state, SessionState) and state.holds(previous_mask):
            return state, None
        return None, previous_mask

    def _remember(
        self, session_key: str | None, grid: IsotropicGrid, runs: list[CropRun], mask: np.ndarray
    ) -> None:
        key = self._session_cache_key(session_key, grid)
        if key is None:
            return
        mask.setflags(write=False)  # callers edit copies; the cached state stays what was returned
        state = SessionState(
            primary_origin=runs[0].origin,
            logits={run.origin: run.logits for run in runs},
            seeds={run.origin: run.seeds for run in runs if run.seeds},
            mask=mask,
        )
        self.cache.put(key, state, state.nbytes)

    @staticmethod
    def _session_cache_key(session_key: str | None, grid: IsotropicGrid) -> tuple[Any, ...] | None:
        return None if session_key is None else ("session", session_key, grid.shape, grid.spacing)


class KindBoundEngine:
    """A SegAnyPET engine with a fixed object kind, for code that calls the plain Engine interface
    (e.g. the click-simulation evaluation)."""

    def __init__(self, engine: SegAnyPETEngine, kind: str | None) -> None:
        self.engine = engine
        self.kind = kind
        self.name = engine.name

    def segment(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        prompts: Prompts,
        previous_mask: np.ndarray | None = None,
        session_key: str | None = None,
    ) -> SegmentationResult:
        return self.engine.segment(volume, spacing, prompts, previous_mask, session_key, kind=self.kind)


def engine_options_from_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Engine keyword arguments for what a checkpoint says it was trained with."""
    options: dict[str, Any] = {}
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


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def create_seganypet_engine(
    demo_checkpoint: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    trust_checkpoint: bool | None = None,
    cache_bytes: int | None = None,
) -> SegAnyPETEngine:
    """The engine with real weights: ``SEGANYPET_CHECKPOINT`` (official) if set, else ``demo_checkpoint``.

    Environment: ``SEGANYPET_TRUST_CHECKPOINT=1`` allows full unpickling of the checkpoint file (only
    for files the operator trusts), ``SEGANYPET_DEVICE`` (``cuda``/``cpu``), ``SEGANYPET_CACHE_MB``
    (embedding cache budget), ``SEGANYPET_TORCH_THREADS`` (CPU threads).
    Never falls back to random weights.
    """
    configured = os.environ.get("SEGANYPET_CHECKPOINT", "").strip()
    path = configured or (str(demo_checkpoint) if demo_checkpoint else "")
    if not path:
        raise SegAnyPETUnavailableError(
            "no SegAnyPET weights: set SEGANYPET_CHECKPOINT to an official checkpoint "
            "(e.g. seganypet_v2.pth) or train the demo model; the engine never runs with random weights"
        )
    if not Path(path).is_file():
        source = "SEGANYPET_CHECKPOINT" if configured else "the demo checkpoint path"
        raise SegAnyPETUnavailableError(
            f"SegAnyPET weights not found: {source} points to {path}, which is not a file"
        )
    trust = _env_flag("SEGANYPET_TRUST_CHECKPOINT") if trust_checkpoint is None else trust_checkpoint
    if cache_bytes is None:
        cache_mb = os.environ.get("SEGANYPET_CACHE_MB", "").strip()
        cache_bytes = int(float(cache_mb) * 2**20) if cache_mb else DEFAULT_CACHE_BYTES
    device = device or os.environ.get("SEGANYPET_DEVICE", "").strip() or None
    return SegAnyPETEngine.from_checkpoint(path, trust_pickle=trust, device=device, cache_bytes=cache_bytes)
