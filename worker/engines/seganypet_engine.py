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
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from worker.engines.base import (
    KINDS,
    Box,
    Capabilities,
    Engine,
    PromptError,
    Prompts,
    SegmentationResult,
    check_kind,
)
from worker.engines.cache import LRUByteCache
from worker.engines.orientation import Canonical
from worker.engines.seganypet_crops import (  # noqa: F401  (re-exported: training and tests use them)
    BORDER_SLAB,
    LOW_RES_STRIDE,
    MASK_PRIOR_LOGIT,
    MIN_CONTINUATION_MM2,
    PROMPT_MARGIN,
    TARGET_SPACING_MM,
    Click,
    CropJob,
    CropRun,
    IsotropicGrid,
    Origin,
    PriorLogits,
    SessionState,
    crop_image,
    crop_positions,
    decode_all_tokens,
    mask_to_prior_logits,
    origin_for_centre,
    sample_linear,
    shift_logits,
    zscore_positive,
)
from worker.engines.seganypet_options import (  # noqa: F401  (re-exported: the registry, training and tests use them)
    CLASSICAL_PRIOR,
    LEGACY_AXES,
    NEGATIVE_CLICK_RADIUS_MM,
    OFFICIAL_VARIANT,
    RAS_AXES,
    KindBoundEngine,
    SegAnyPETUnavailableError,
    _configure_cpu_threads,
    _default_device,
    engine_options_from_metadata,
    honour_negative_click,
    make_classical_prior,
)
from worker.seganypet.checkpoint import load_checkpoint
from worker.seganypet.model import Sam3D, count_parameters

DEFAULT_CACHE_BYTES = 512 * 2**20


DEFAULT_MAX_CROPS = 4




class SegAnyPETEngine:
    name = "seganypet"
    capabilities = Capabilities(uses_kind=True, accepts_box=True, prefers_gpu=True, caches_per_session=True)

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
        torch_threads: int | None = None,
        paste: str = "logits",
        array_axes: str = RAS_AXES,
        auto_zoom: Sequence[float] = (),
    ) -> None:
        if paste not in ("logits", "nearest"):
            raise ValueError(f"paste must be 'logits' or 'nearest', got {paste!r}")
        if array_axes not in (RAS_AXES, LEGACY_AXES):
            raise ValueError(f"unknown array axes {array_axes!r}")
        # "nearest": the reference's paste-back (binary crop mask, nearest neighbour); "logits": linear
        # interpolation of the logits, then the threshold (smoother at coarse PET voxels).
        self.paste = paste
        self.array_axes = array_axes
        # Zoom factors tried in turn for an object that leaves the crop (empty: no AutoZoom), e.g. (1, 2, 4).
        self.auto_zoom = tuple(float(z) for z in auto_zoom)
        self.last_zoom = 1.0
        self.device = torch.device(device) if device is not None else _default_device()
        if self.device.type == "cpu":
            _configure_cpu_threads(torch_threads)
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
        options = engine_options_from_metadata(loaded.metadata, loaded.variant)
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
        """Segment one object in a RAS-canonical volume; ``kind`` (``"lesion"``/``"organ"``/``None``) picks
        the mask token when the checkpoint has one for it (see the module docstring)."""
        if self.array_axes == RAS_AXES:
            return self._segment(volume, spacing, prompts, previous_mask, session_key, kind)
        # A checkpoint trained on [slice, row, col] arrays of head-first axial scans: give it those (views).
        legacy = Canonical((2, 1, 0), (False, True, True), volume.shape, np.eye(4))
        result = self._segment(legacy.to_ras(volume), legacy.spacing(spacing), legacy.prompts_to_ras(prompts),
                               legacy.to_ras(previous_mask) if previous_mask is not None else None,
                               session_key, kind)
        result.mask = legacy.from_ras(result.mask)
        return result

    def _segment(
        self,
        volume: np.ndarray,
        spacing: tuple[float, float, float],
        prompts: Prompts,
        previous_mask: np.ndarray | None,
        session_key: str | None,
        kind: str | None,
    ) -> SegmentationResult:
        started = time.perf_counter()
        self._grid(volume, spacing)  # checks the inputs
        prompts.validate(volume.shape)
        check_kind(kind)
        if previous_mask is not None and previous_mask.shape != volume.shape:
            raise PromptError(f"previous mask {previous_mask.shape} does not match the volume {volume.shape}")
        timings = {"prepare": 0.0, "encode": 0.0, "decode": 0.0, "paste": 0.0}
        with self._lock, torch.inference_mode():
            # Read by _decode; set under the lock because the engine is shared between threads.
            self._mask_token = self.kind_tokens.get(kind, 0) if kind is not None else 0
            state, mask_prior = self._session_prior(session_key, volume.shape, spacing, previous_mask)
            # Only a new object (no previous mask at all) starts from the prior: after an empty result the
            # same prior would only repeat the same mistake, click after click.
            if previous_mask is None and self.first_click_prior is not None:
                prior_started = time.perf_counter()
                mask_prior = self._first_click_prior(volume, spacing, prompts, session_key)
                timings["prior"] = _ms(prior_started)
            # AutoZoom (after nnInteractive): an organ is first looked for in a zoomed-out crop (our demo
            # learned organs of a few hundred ml: a 2.5 L liver at half the scale looks like one), zoomed out
            # further while it leaves the crop, and refined at a finer zoom when it fits there. A lesion, and
            # a corrective click (at the zoom its object was found at), use one zoom.
            if state is not None:
                # With AutoZoom, only the widest zoom follows an object into further crops.
                follow = not self.auto_zoom or state.zoom >= max(self.auto_zoom)
                grid, runs = self._attempt(volume, spacing, state.zoom, follow, prompts, state, mask_prior, kind,
                                           session_key, timings)
            elif kind == "lesion" or not self.auto_zoom:
                grid, runs = self._attempt(volume, spacing, 1.0, True, prompts, None, mask_prior, kind,
                                           session_key, timings)
            else:
                grid, runs = self._auto_zoom(volume, spacing, prompts, mask_prior, kind, session_key, timings)
            zoom = grid.target_spacing / self.target_spacing
            paste_started = time.perf_counter()
            mask = self._paste(runs, grid, prompts.box)
            if previous_mask is not None and prompts.points and not prompts.points[-1].positive:
                mask = honour_negative_click(mask, previous_mask, prompts.points[-1], spacing)
            timings["paste"] = _ms(paste_started)
            self._remember(session_key, grid, runs, mask, zoom)
        self.last_zoom = zoom
        self.last_crop_origins = [run.origin for run in runs]
        timings["total"] = _ms(started)
        return SegmentationResult(mask=mask, score=float(np.clip(runs[0].iou, 0.0, 1.0)), timings_ms=timings)

    def _attempt(
        self,
        volume: np.ndarray,
        spacing: Sequence[float],
        zoom: float,
        allow_continuation: bool,
        prompts: Prompts,
        state: SessionState | None,
        mask_prior: np.ndarray | None,
        kind: str | None,
        session_key: str | None,
        timings: dict[str, float],
    ) -> tuple[IsotropicGrid, list[CropRun]]:
        grid = self._grid(volume, spacing, zoom)
        runs = self._segment_on(volume, grid, prompts, state, mask_prior, kind, allow_continuation, session_key,
                                timings)
        return grid, runs

    def _leaves_crop(self, run: CropRun, grid: IsotropicGrid, prompts: Prompts) -> bool:
        return any(True for _ in self._continuations(run, grid, self._box_of(prompts, grid), [run]))

    def _auto_zoom(
        self,
        volume: np.ndarray,
        spacing: Sequence[float],
        prompts: Prompts,
        mask_prior: np.ndarray | None,
        kind: str | None,
        session_key: str | None,
        timings: dict[str, float],
    ) -> tuple[IsotropicGrid, list[CropRun]]:
        zooms = sorted(self.auto_zoom)
        level = zooms.index(2.0) if 2.0 in zooms else 0
        grid, runs = self._attempt(volume, spacing, zooms[level], False, prompts, None, mask_prior, kind, session_key,
                                   timings)
        while level < len(zooms) - 1 and self._leaves_crop(runs[0], grid, prompts):
            level += 1
            grid, runs = self._attempt(volume, spacing, zooms[level], level == len(zooms) - 1, prompts, None,
                                       mask_prior, kind, session_key, timings)
        if level == 0 or self._leaves_crop(runs[0], grid, prompts):
            return grid, runs
        coarse = runs[0].crop_logits > 0
        if not coarse.any():
            return grid, runs
        extent = np.ptp(np.argwhere(coarse), axis=0) + 1
        finer = zooms[level - 1]
        if np.any(extent * zooms[level] / finer > self.crop_size - 2 * PROMPT_MARGIN):
            return grid, runs
        # It fits a finer crop: refine there, starting from the coarse result.
        coarse_mask = self._paste(runs, grid, prompts.box)
        fine_grid, fine_runs = self._attempt(volume, spacing, finer, False, prompts, None, coarse_mask, kind,
                                             session_key, timings)
        fine = fine_runs[0].crop_logits > 0
        fine_volume = fine.sum() * fine_grid.target_spacing**3
        coarse_volume = coarse.sum() * grid.target_spacing**3
        if self._leaves_crop(fine_runs[0], fine_grid, prompts) or fine_volume < 0.5 * coarse_volume:
            return grid, runs  # the finer crop lost the object: keep what the coarse one found
        return fine_grid, fine_runs

    def _box_of(self, prompts: Prompts, grid: IsotropicGrid) -> tuple[np.ndarray, np.ndarray] | None:
        return self._box_in_resampled(prompts.box, grid) if prompts.box is not None else None

    def _segment_on(
        self,
        volume: np.ndarray,
        grid: IsotropicGrid,
        prompts: Prompts,
        state: SessionState | None,
        mask_prior: np.ndarray | None,
        kind: str | None,
        last_zoom: bool,
        session_key: str | None,
        timings: dict[str, float],
    ) -> list[CropRun]:
        """The crops of one attempt at one zoom: the primary crop, the crops the object already spans,
        and (at the last zoom only) continuation crops where the object goes on."""
        box = self._box_of(prompts, grid)
        clicks = self._clicks(prompts, grid, box)
        # A lesion fits one crop (128 mm even for the demo); extension crops would only grow leaks.
        single = (kind == "lesion" and self.single_crop_lesions) or not last_zoom
        self._crop_limit = 1 if single else self.max_crops
        prior = PriorLogits(state, mask_prior, grid, self.crop_size, self.device, self.low_res_stride)
        primary = self._primary_origin(clicks, box, state)
        jobs = [CropJob(primary, seeds=list(state.seeds.get(primary, [])) if state else [])]
        if state is not None:
            # A corrective click decodes again every crop the object already spans (embeddings are
            # cached): moving the primary crop to the click must not drop what other crops found.
            jobs += [CropJob(origin, seeds=list(state.seeds.get(origin, [])))
                     for origin in state.logits if origin != primary]
        return self._run_crops(volume, grid, clicks, box, jobs, prior, session_key, timings)

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

    def _grid(self, volume: np.ndarray, spacing: Sequence[float], zoom: float = 1.0) -> IsotropicGrid:
        if volume.ndim != 3:
            raise PromptError(f"expected a 3D volume, got shape {volume.shape}")
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise PromptError(f"voxel spacing must be three positive numbers, got {tuple(spacing)}")
        s0, s1, s2 = (float(s) for s in spacing)
        n0, n1, n2 = volume.shape
        return IsotropicGrid((n0, n1, n2), (s0, s1, s2), self.target_spacing * zoom)

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
                cross_section_mm2 = len(border) / BORDER_SLAB * grid.target_spacing**2
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
            ("embedding", session_key, grid.shape, grid.spacing, grid.target_spacing, origin)
            if session_key is not None else None
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
            if self.paste == "nearest":
                nearest = [np.clip(np.rint(p).astype(np.intp), 0, self.crop_size - 1) for p in positions]
                mask[region] |= (run.crop_logits > 0)[np.ix_(*nearest)]
            else:
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
            ends = np.asarray([origin[axis], origin[axis] + self.crop_size - 1], dtype=np.float64)
            start, end = grid.original_positions(axis, ends)
            first = max(0, int(np.ceil(start - 1e-6)))
            last = min(grid.shape[axis] - 1, int(np.floor(end + 1e-6)))
            if first > last:
                return None
            indices = np.arange(first, last + 1, dtype=np.float64)
            region.append(slice(first, last + 1))
            resampled = (indices - grid.offset[axis]) * grid.scale[axis]
            positions.append(np.clip(resampled - origin[axis], 0, self.crop_size - 1))
        return tuple(region), positions

    def _session_prior(
        self, session_key: str | None, shape: Sequence[int], spacing: Sequence[float], previous_mask: np.ndarray | None
    ) -> tuple[SessionState | None, np.ndarray | None]:
        """Cached state when ``previous_mask`` is our own last result, else the mask itself (or nothing)."""
        key = self._session_cache_key(session_key, shape, spacing)
        if previous_mask is None:
            if key is not None:
                self.cache.discard(key)  # a new object: its predecessor's logits must not leak in
            return None, None
        state = self.cache.get(key) if key is not None else None
        if isinstance(state, SessionState) and state.holds(previous_mask):
            return state, None  # our own last result, even an empty one: its logits carry on
        return None, previous_mask if previous_mask.any() else None

    def _remember(
        self, session_key: str | None, grid: IsotropicGrid, runs: list[CropRun], mask: np.ndarray, zoom: float
    ) -> None:
        key = self._session_cache_key(session_key, grid.shape, grid.spacing)
        if key is None:
            return
        mask.setflags(write=False)  # callers edit copies; the cached state stays what was returned
        state = SessionState(
            primary_origin=runs[0].origin,
            logits={run.origin: run.logits for run in runs},
            seeds={run.origin: run.seeds for run in runs if run.seeds},
            mask=mask,
            zoom=zoom,
        )
        self.cache.put(key, state, state.nbytes)

    @staticmethod
    def _session_cache_key(
        session_key: str | None, shape: Sequence[int], spacing: Sequence[float]
    ) -> tuple[Any, ...] | None:
        return None if session_key is None else ("session", session_key, tuple(shape), tuple(float(s) for s in spacing))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def create_seganypet_engine(
    checkpoint: str | Path | None,
    *,
    device: str | torch.device | None = None,
    trust_checkpoint: bool = False,
    cache_bytes: int | None = None,
    torch_threads: int | None = None,
) -> SegAnyPETEngine:
    """The engine with real weights from ``checkpoint``; never falls back to random weights.

    The caller passes its configuration (the registry takes it from Django settings): ``trust_checkpoint``
    allows full unpickling (only for files the operator trusts), ``device`` (``cuda``/``cpu``, default:
    CUDA when present), ``cache_bytes`` (embedding cache budget), ``torch_threads`` (CPU threads).
    """
    if not checkpoint:
        raise SegAnyPETUnavailableError(
            "no SegAnyPET weights: set SEGANYPET_CHECKPOINT to an official checkpoint "
            "(e.g. seganypet_v2.pth) or train the demo model; the engine never runs with random weights"
        )
    if not Path(checkpoint).is_file():
        raise SegAnyPETUnavailableError(f"SegAnyPET weights not found: {checkpoint} is not a file")
    return SegAnyPETEngine.from_checkpoint(
        checkpoint, trust_pickle=trust_checkpoint, device=device or None,
        cache_bytes=DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes, torch_threads=torch_threads)
