"""Train (or fine-tune) the SegAnyPET demo model on synthetic PET phantoms with simulated clicks.

    python -m worker.seganypet.train --out worker/seganypet/weights/demo.pt --minutes 112 --seed 1 \\
        [--steps N] [--init ckpt.pt] [--threads 2] [--dataset EXPORT_DIR [--train-phantoms 0]]

``--dataset`` fine-tunes on a project's approved masks: an unzipped export of the project made with the
nnU-Net format (its manifest says which labels are lesions and which organs).

What one step does (SAM-style iterative click simulation):

* ``batch_crops`` crops are drawn from a pool of phantoms generated once and kept in memory (training
  seeds only; the evaluation seeds are never drawn). Each crop is centred on the first click of a
  *primary* object (a lesion with probability ``lesion_fraction``, else an organ) exactly as the engine
  centres it; up to ``objects_per_crop - 1`` further objects that lie inside the crop share its
  embedding (one encoder pass serves several prompt sets, which is where CPU time goes).
* Inputs are built with the engine's own functions (:func:`crop_image`, :func:`mask_to_prior_logits`,
  :func:`decode_all_tokens`), so training sees what inference sees: the config's crop (64³ at 2 mm for the demo),
  z-score over voxels > 0, the threshold engine's region as the first-click prior logits, previous
  logits fed back on every further click.
* The first click is the object's distance-transform centre (the evaluation's rule) or, with
  probability ``random_first_click``, a random interior voxel. Each object is decoded ``clicks`` times;
  after each decode the next click goes to the largest error region of the current prediction (its
  centre or a random interior voxel), positive in a false negative, negative in a false positive.
* Mask tokens: token 0 is the kind-agnostic output (what ``Sam3D.decode`` returns), token 1 lesions,
  token 2 organs. Both the kind token and token 0 are supervised for every object; the token whose
  logits are fed back (and clicked on) is the kind token with probability ``kind_known_probability``,
  else token 0, as the engine does with and without ``kind``.
* Loss per decode and supervised token: BCE + soft Dice on the logits upsampled to the crop
  resolution (computed exactly, only in a box around the object to save time), BCE on the 32³ logits
  against the pooled target over the whole crop (false positives far from the object), and MSE of the
  IoU head against the IoU the token actually reached.
* Every ``eval_minutes`` the model is click-simulated by the engine on held-out phantoms (protocol of
  worker.evaluation) and the best checkpoint so far is written to ``--out`` (fp16 weights; loading
  converts to fp32).

Determinism: the data stream depends only on ``--seed`` (numpy Generator, ``torch.manual_seed``). With
``--steps`` the learning-rate schedule follows the step count; the ``--minutes`` budget stops the run
early if the machine is slower, and then the schedule follows the elapsed fraction of the budget
(whichever is further along), so a time-limited run is reproducible only up to where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from backend.imaging.nifti_io import read_nifti
from worker.engines.base import Point, Prompts
from worker.engines.seganypet_engine import (
    CLASSICAL_PRIOR,
    IsotropicGrid,
    KindBoundEngine,
    SegAnyPETEngine,
    crop_image,
    crop_positions,
    decode_all_tokens,
    make_classical_prior,
    mask_to_prior_logits,
    origin_for_centre,
    sample_linear,
)
from worker.evaluation import DEFAULT_ORGANS, Case, cases_from_phantom, region_centre, simulate_clicks
from worker.phantoms import LABEL_NAMES, LESION_LABEL, Phantom, make_phantom
from worker.seganypet.checkpoint import load_checkpoint, save_checkpoint
from worker.seganypet.model import DEMO, Sam3D, Sam3DConfig, count_parameters

KIND_TOKENS: dict[str, int] = {"lesion": 1, "organ": 2}
GENERIC_TOKEN = 0
ORGAN_NAMES = tuple(name for value, name in sorted(LABEL_NAMES.items()) if value != LESION_LABEL)
# Phantom geometries of the pool: clinical-like PET grids ([slice, row, col] shape, spacing in mm).
GEOMETRIES: tuple[tuple[tuple[int, int, int], tuple[float, float, float]], ...] = (
    ((80, 64, 64), (4.0, 4.0, 4.0)),
    ((100, 80, 80), (3.27, 3.6, 3.6)),
    ((64, 52, 52), (5.0, 5.0, 5.0)),
)
EVAL_SEEDS = (90001, 90002)
FINAL_EVAL_SEEDS = (90001, 90002, 90003, 90004)
MIN_TRAIN_LESION_MM = 7.0
MIN_EVAL_LESION_MM = 10.0
# Voxels around the object (crop resolution) where the full-resolution loss is computed.
ROI_MARGIN = 8
LARGE_COMPONENT_VOXELS = 40**3


# --------------------------------------------------------------------------- phantoms


@dataclass(frozen=True)
class PhantomSpec:
    seed: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    tracer: str
    feet_first: bool
    n_lesions: int
    psf_fwhm_mm: float
    noise_level: float

    def build(self) -> Phantom:
        return make_phantom(
            seed=self.seed,
            shape=self.shape,
            spacing=self.spacing,
            tracer=self.tracer,  # type: ignore[arg-type]
            n_lesions=self.n_lesions,
            feet_first=self.feet_first,
            psf_fwhm_mm=self.psf_fwhm_mm,
            noise_level=self.noise_level,
        )


def phantom_spec(seed: int) -> PhantomSpec:
    """Everything about a pool phantom follows from its seed."""
    rng = np.random.default_rng([seed, 17])
    shape, spacing = GEOMETRIES[int(rng.integers(len(GEOMETRIES)))]
    return PhantomSpec(
        seed=seed,
        shape=shape,
        spacing=spacing,
        tracer="FDG" if rng.random() < 0.6 else "PSMA",
        feet_first=bool(rng.random() < 0.25),
        n_lesions=int(rng.integers(6, 13)),
        psf_fwhm_mm=float(rng.uniform(5.0, 8.0)),
        noise_level=float(rng.uniform(0.05, 0.12)),
    )


def eval_spec(seed: int) -> PhantomSpec:
    """Held-out phantoms: default and realistic-ish grids, both tracers, one feet-first."""
    index = seed % 4
    shape, spacing = GEOMETRIES[index % 2]
    return PhantomSpec(
        seed=seed,
        shape=shape,
        spacing=spacing,
        tracer=("FDG", "PSMA", "PSMA", "FDG")[index],
        feet_first=index == 3,
        n_lesions=10,
        psf_fwhm_mm=6.0,
        noise_level=0.08,
    )


@dataclass
class TrainObject:
    kind: str  # "lesion" or "organ"
    name: str
    target: np.ndarray  # bool, original grid
    lower: np.ndarray  # bounding box on the original grid, inclusive
    upper: np.ndarray
    _centre: tuple[int, int, int] | None = None
    _interior: np.ndarray | None = None


@dataclass
class PoolPhantom:
    """One training volume: a generated phantom (``spec``) or a case of an exported dataset."""

    spec: PhantomSpec | None
    volume: np.ndarray
    spacing: tuple[float, float, float]
    grid: IsotropicGrid
    lesions: list[TrainObject]
    organs: list[TrainObject]
    case: str = ""

    @property
    def session_key(self) -> str:
        return f"train-{self.spec.seed}" if self.spec is not None else f"train-{self.case}"


def pool_phantom(spec: PhantomSpec, crop_spacing_mm: float) -> PoolPhantom:
    phantom = spec.build()
    spacing = tuple(float(s) for s in phantom.pet_spacing)
    lesions, organs = [], []
    for lesion in phantom.lesions:
        if lesion.diameter_mm < MIN_TRAIN_LESION_MM or lesion.voxel_count < 3:
            continue
        lesions.append(_object("lesion", f"lesion-{lesion.index}", phantom.lesion_labels == lesion.index))
    for value, name in sorted(phantom.label_names.items()):
        if value == LESION_LABEL:
            continue
        target = phantom.labels == value
        if int(target.sum()) >= 8:
            organs.append(_object("organ", name, target))
    grid = IsotropicGrid(phantom.suv.shape, spacing, crop_spacing_mm)  # type: ignore[arg-type]
    return PoolPhantom(spec, phantom.suv, spacing, grid, lesions, organs)  # type: ignore[arg-type]


class DatasetError(ValueError):
    """An export folder that cannot be used for training; the message says what is wrong."""


def dataset_pool(folder: Path, crop_spacing_mm: float) -> list[PoolPhantom]:
    """Training volumes from an unzipped SegAnyPET Studio export with its nnU-Net part: the PET (SUV)
    of every case with its approved label map. ``manifest.json`` says each label's kind: every
    connected component of a lesion label is a lesion, every organ label one organ."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DatasetError(f"{folder} has no manifest.json: unzip a SegAnyPET Studio export there")
    manifest = json.loads(manifest_path.read_text())
    kinds = {int(lb["nnunet_value"]): (lb["kind"], lb["name"]) for lb in manifest.get("labels", [])
             if lb.get("nnunet_value") is not None}
    roots = sorted(path.parent for path in folder.rglob("dataset.json"))
    if not roots:
        raise DatasetError(f"{folder} has no nnU-Net dataset (dataset.json); export with the nnU-Net format")
    pool = []
    structure = ndimage.generate_binary_structure(3, 1)
    for label_file in sorted(roots[0].glob("labelsTr/*.nii.gz")):
        case = label_file.name[: -len(".nii.gz")]
        image_file = roots[0] / "imagesTr" / f"{case}_0000.nii.gz"
        if not image_file.is_file():
            raise DatasetError(f"case {case}: {image_file.name} is missing")
        image, labels = read_nifti(image_file), read_nifti(label_file, kind="label")
        if image.shape != labels.shape:
            raise DatasetError(f"case {case}: image {image.shape} and labels {labels.shape} differ")
        lesions, organs = [], []
        for value in sorted(int(v) for v in np.unique(labels.array) if v):
            kind, name = kinds.get(value, ("other", f"label-{value}"))
            region = labels.array == value
            if kind == "lesion":
                components, count = ndimage.label(region, structure=structure)
                for index in range(1, count + 1):
                    component = components == index
                    if int(component.sum()) >= 3:
                        lesions.append(_object("lesion", f"{name}-{index}", component))
            elif kind == "organ" and int(region.sum()) >= 8:
                organs.append(_object("organ", name, region))
        grid = IsotropicGrid(image.shape, image.spacing, crop_spacing_mm)
        pool.append(PoolPhantom(None, image.array, image.spacing, grid, lesions, organs, case=case))
    if not any(p.lesions or p.organs for p in pool):
        raise DatasetError(f"{folder}: no lesion or organ objects in the nnU-Net labels")
    return pool


def _object(kind: str, name: str, target: np.ndarray) -> TrainObject:
    where = np.argwhere(target)
    return TrainObject(kind, name, target, where.min(axis=0), where.max(axis=0))


def first_click(
    obj: TrainObject, spacing: Sequence[float], rng: np.random.Generator, random_p: float
) -> Point:
    """The evaluation's first click (distance-transform centre) or a random interior voxel."""
    if obj._centre is None:
        obj._centre = region_centre(obj.target, tuple(spacing))  # type: ignore[arg-type]
    if rng.random() >= random_p:
        return Point(obj._centre, True)
    if obj._interior is None:
        distance = ndimage.distance_transform_edt(np.pad(obj.target, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
        obj._interior = np.argwhere(distance >= 0.5 * distance.max())
    i, j, k = (int(v) for v in obj._interior[int(rng.integers(len(obj._interior)))])
    return Point((i, j, k), True)


# --------------------------------------------------------------------------- samples


@dataclass
class ObjectSample:
    kind: str
    click: np.ndarray  # crop voxel index of the first click
    prior: torch.Tensor  # (1, 32, 32, 32) first-click prior logits (zeros when none)
    target: np.ndarray  # bool (128, 128, 128): the object at crop resolution
    roi: tuple[slice, slice, slice]  # where the full-resolution loss and the clicks are computed
    pooled: torch.Tensor  # (1, 32, 32, 32) fraction of each low-res cell inside the object
    feedback_token: int


@dataclass
class CropSample:
    image: torch.Tensor  # (1, 128, 128, 128)
    objects: list[ObjectSample]


class SampleFactory:
    """Draws training crops from the phantom pool; mirrors what the engine does on a first click."""

    def __init__(self, pool: list[PoolPhantom], options: TrainOptions, config: Sam3DConfig) -> None:
        self.pool = pool
        self.options = options
        self.size = config.img_size
        self.stride = config.img_size // config.low_res_size
        self.prior_engine = make_classical_prior() if options.threshold_prior else None

    def crop(self, rng: np.random.Generator) -> CropSample:
        while True:
            phantom = self.pool[int(rng.integers(len(self.pool)))]
            primary = self._pick(phantom, rng)
            if primary is None:
                continue
            click = first_click(primary, phantom.spacing, rng, self.options.random_first_click)
            position = np.rint(phantom.grid.to_resampled(click.index)).astype(int)
            origin = origin_for_centre(position, self.size, self.stride)
            first = self._object(phantom, primary, click, origin, rng)
            if first is None:
                continue
            objects = [first]
            for extra in self._neighbours(phantom, primary, origin, rng):
                extra_click = first_click(extra, phantom.spacing, rng, self.options.random_first_click)
                sample = self._object(phantom, extra, extra_click, origin, rng)
                if sample is not None:
                    objects.append(sample)
            image = torch.from_numpy(crop_image(phantom.volume, phantom.grid, origin, self.size))[None]
            return CropSample(image, objects)

    def _pick(self, phantom: PoolPhantom, rng: np.random.Generator) -> TrainObject | None:
        if phantom.lesions and rng.random() < self.options.lesion_fraction:
            return phantom.lesions[int(rng.integers(len(phantom.lesions)))]
        if not phantom.organs:
            return None
        main = [o for o in phantom.organs if o.name in DEFAULT_ORGANS]
        choices = main if main and rng.random() < 0.7 else phantom.organs
        return choices[int(rng.integers(len(choices)))]

    def _neighbours(
        self,
        phantom: PoolPhantom,
        primary: TrainObject,
        origin: tuple[int, int, int],
        rng: np.random.Generator,
    ) -> list[TrainObject]:
        lo = np.asarray(origin) + 8
        hi = np.asarray(origin) + self.size - 8
        inside = [
            o
            for o in phantom.lesions + phantom.organs
            if o is not primary
            and np.all(phantom.grid.to_resampled(o.lower) >= lo)
            and np.all(phantom.grid.to_resampled(o.upper) <= hi)
        ]
        wanted = self.options.objects_per_crop - 1
        if len(inside) <= wanted:
            return inside
        lesions = [o for o in inside if o.kind == "lesion"]
        organs = [o for o in inside if o.kind == "organ"]
        picked: list[TrainObject] = []
        for _ in range(wanted):
            source = lesions if lesions and (not organs or rng.random() < 0.5) else organs
            picked.append(source.pop(int(rng.integers(len(source)))))
        return picked

    def _object(
        self,
        phantom: PoolPhantom,
        obj: TrainObject,
        click: Point,
        origin: tuple[int, int, int],
        rng: np.random.Generator,
    ) -> ObjectSample | None:
        size = self.size
        position = np.rint(phantom.grid.to_resampled(click.index)).astype(int)
        local = position - np.asarray(origin)
        if np.any(local < 0) or np.any(local >= size):
            return None
        positions = crop_positions(phantom.grid, origin, size)
        target = sample_linear(obj.target, positions) >= 0.5
        if not target.any():
            return None
        low = size // self.stride
        prior = torch.zeros((1, low, low, low))
        if self.prior_engine is not None:
            # Exactly the engine's first-click prior: the threshold engine's region as low-res logits.
            region = self.prior_engine.segment(
                phantom.volume, phantom.spacing, Prompts(points=(click,)), None, phantom.session_key
            ).mask
            if region.any():
                prior = mask_to_prior_logits(region, phantom.grid, origin, size, self.stride)[0]
        where = np.argwhere(target)
        lower = np.maximum(where.min(axis=0) - ROI_MARGIN, 0)
        upper = np.minimum(where.max(axis=0) + ROI_MARGIN + 1, size)
        roi = (slice(lower[0], upper[0]), slice(lower[1], upper[1]), slice(lower[2], upper[2]))
        pooled = F.avg_pool3d(torch.from_numpy(target.astype(np.float32))[None, None], self.stride)[0]
        known = rng.random() < self.options.kind_known_probability
        token = KIND_TOKENS[obj.kind] if known else GENERIC_TOKEN
        return ObjectSample(obj.kind, local, prior, target, roi, pooled, token)


# --------------------------------------------------------------------------- loss and clicks


def upsample_roi(low_res: torch.Tensor, roi: tuple[slice, slice, slice], stride: int) -> torch.Tensor:
    """Trilinear ×stride upsampling of (C, 32, 32, 32) logits, evaluated only inside ``roi``.

    Equal to ``F.interpolate(low_res, scale_factor=stride)[roi]`` (align_corners=False, what the engine does):
    one low-res cell of context on each side makes the block's border voxels exact.
    """
    cells = low_res.shape[-1]
    starts, stops = [], []
    for part in roi:
        first = max(0, part.start // stride - 1)
        last = min(cells, (part.stop - 1) // stride + 2)
        starts.append(first)
        stops.append(last)
    block = low_res[:, starts[0] : stops[0], starts[1] : stops[1], starts[2] : stops[2]]
    up = F.interpolate(block[None], scale_factor=stride, mode="trilinear", align_corners=False)[0]
    return up[
        :,
        roi[0].start - stride * starts[0] : roi[0].stop - stride * starts[0],
        roi[1].start - stride * starts[1] : roi[1].stop - stride * starts[1],
        roi[2].start - stride * starts[2] : roi[2].stop - stride * starts[2],
    ]


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice per channel of (C, ...) logits against a (...) target."""
    probability = logits.sigmoid().flatten(1)
    flat = target.flatten()[None]
    overlap = (probability * flat).sum(1)
    return 1 - (2 * overlap + 1) / (probability.sum(1) + flat.sum(1) + 1)


def next_training_click(
    target: np.ndarray, prediction: np.ndarray, rng: np.random.Generator, random_p: float
) -> tuple[np.ndarray, bool] | None:
    """A corrective click (ROI-local index, positive?) in the largest error region, or None."""
    structure = ndimage.generate_binary_structure(3, 1)
    best: tuple[int, np.ndarray, bool] | None = None
    for region, positive in ((target & ~prediction, True), (prediction & ~target, False)):
        labels, count = ndimage.label(region, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        index = int(np.argmax(sizes))
        if best is None or sizes[index] > best[0]:
            best = (int(sizes[index]), labels == index + 1, positive)
    if best is None:
        return None
    _, component, positive = best
    # Distance transforms dominate the step time: work on the component's box, halved when large.
    where = np.argwhere(component)
    lower = where.min(axis=0)
    box = component[tuple(slice(lo, hi + 1) for lo, hi in zip(lower, where.max(axis=0), strict=True))]
    stride = 2 if box.size > LARGE_COMPONENT_VOXELS else 1
    if stride > 1:
        box = box[::stride, ::stride, ::stride]
        if not box.any():
            box, stride = component[tuple(slice(lo, lo + 1) for lo in lower)], 1
    if rng.random() >= random_p:
        return lower + stride * np.asarray(region_centre(box)), positive
    distance = ndimage.distance_transform_edt(np.pad(box, 1))[1:-1, 1:-1, 1:-1]
    inner = np.argwhere(distance >= 0.5 * distance.max())
    return lower + stride * inner[int(rng.integers(len(inner)))], positive


@dataclass
class StepResult:
    loss: float
    dice_first: float  # mean Dice (crop resolution, ROI) of the fed-back token after the first click
    dice_last: float


def training_step(
    model: Sam3D, crops: list[CropSample], options: TrainOptions, rng: np.random.Generator
) -> tuple[torch.Tensor, StepResult]:
    images = torch.stack([c.image for c in crops])
    stride = model.config.img_size // model.config.low_res_size
    embeddings = model.encode_image(images)
    owners = [i for i, crop in enumerate(crops) for _ in crop.objects]
    objects = [o for crop in crops for o in crop.objects]
    embedding = embeddings[torch.as_tensor(owners)]
    clicks: list[list[np.ndarray]] = [[o.click] for o in objects]
    labels: list[list[int]] = [[1] for _ in objects]
    previous = torch.stack([o.prior for o in objects])
    targets_roi = [torch.from_numpy(o.target[o.roi].astype(np.float32)) for o in objects]
    pooled = torch.stack([o.pooled for o in objects])
    total = torch.zeros(())
    dices: list[list[float]] = []
    for _ in range(options.clicks):
        coords = torch.as_tensor(np.asarray(clicks, dtype=np.float32))
        point_labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        masks, iou = decode_all_tokens(model, embedding, coords, point_labels, previous)
        loss = torch.zeros(())
        feedback = []
        step_dice = []
        for n, obj in enumerate(objects):
            tokens = [GENERIC_TOKEN, KIND_TOKENS[obj.kind]]
            up = upsample_roi(masks[n, tokens], obj.roi, stride)
            target = targets_roi[n]
            bce = F.binary_cross_entropy_with_logits(up, target.expand_as(up), reduction="none").flatten(1)
            dice = soft_dice_loss(up, target)
            low_bce = F.binary_cross_entropy_with_logits(
                masks[n, tokens], pooled[n].expand(len(tokens), -1, -1, -1), reduction="none"
            ).flatten(1)
            with torch.no_grad():
                hard = up > 0
                truth = target.bool()
                inter = (hard & truth).flatten(1).sum(1).float()
                union = (hard | truth).flatten(1).sum(1).float().clamp(min=1)
                reached = inter / union
            iou_loss = (iou[n, tokens] - reached) ** 2
            loss = loss + (bce.mean(1) + dice + options.low_res_weight * low_bce.mean(1) + iou_loss).sum()
            chosen = tokens.index(obj.feedback_token) if obj.feedback_token in tokens else 0
            prediction = hard[chosen].numpy()
            truth_np = obj.target[obj.roi]
            step_dice.append(
                float(2 * (prediction & truth_np).sum() / max(1, prediction.sum() + truth_np.sum()))
            )
            feedback.append(masks[n, obj.feedback_token])
            corrective = next_training_click(truth_np, prediction, rng, options.random_next_click)
            if corrective is None:  # perfect: repeat the last click, which changes nothing
                clicks[n].append(clicks[n][-1])
                labels[n].append(labels[n][-1])
            else:
                local, positive = corrective
                roi_origin = np.asarray([s.start for s in obj.roi])
                clicks[n].append(local + roi_origin)
                labels[n].append(int(positive))
        dices.append(step_dice)
        total = total + loss / len(objects)
        previous = torch.stack(feedback)[:, None].detach()
    total = total / options.clicks
    return total, StepResult(float(total.detach()), float(np.mean(dices[0])), float(np.mean(dices[-1])))


# --------------------------------------------------------------------------- evaluation


def evaluation_cases(seeds: Sequence[int], max_lesions: int | None = None) -> list[Case]:
    """Organs of worker.evaluation's default list and lesions ≥ 10 mm of held-out phantoms."""
    cases: list[Case] = []
    for seed in seeds:
        phantom = eval_spec(seed).build()
        diameters = {lesion.index: lesion.diameter_mm for lesion in phantom.lesions}
        found = cases_from_phantom(phantom, organs=DEFAULT_ORGANS, include_lesions=True)
        lesions = [
            c
            for c in found
            if c.label == "lesion" and diameters[int(c.case_id.rsplit("-", 1)[1])] >= MIN_EVAL_LESION_MM
        ]
        if max_lesions is not None:
            lesions = lesions[:max_lesions]
        cases.extend(c for c in found if c.label != "lesion")
        cases.extend(lesions)
    return cases


def kind_of(case: Case) -> str:
    return "lesion" if case.label == "lesion" else "organ"


def click_dice(
    engine: Any, cases: Sequence[Case], n_clicks: int = 5, use_kind: bool = True
) -> dict[str, Any]:
    """Mean Dice after 1, 3, 5 clicks for lesions and organs (worker.evaluation's protocol)."""
    per_group: dict[str, list[list[float]]] = {"lesion": [], "organ": []}
    latencies: dict[str, list[float]] = {"first": [], "next": []}
    for case in cases:
        bound = (
            KindBoundEngine(engine, kind_of(case))
            if use_kind and isinstance(engine, SegAnyPETEngine)
            else engine
        )
        result = simulate_clicks(bound, case, n_clicks)
        per_group[kind_of(case)].append(result.dice)
        if result.latency_ms:
            latencies["first"].append(result.latency_ms[0])
            latencies["next"].extend(result.latency_ms[1:])
    summary: dict[str, Any] = {}
    for group, rows in per_group.items():
        if rows:
            array = np.asarray(rows)
            summary[group] = {k: float(array[:, k - 1].mean()) for k in (1, 3, 5) if k <= n_clicks}
            summary[f"{group}_cases"] = len(rows)
    summary["latency_ms"] = {k: float(np.median(v)) if v else float("nan") for k, v in latencies.items()}
    return summary


def quick_score(summary: dict[str, Any]) -> float:
    """One number to pick the best checkpoint: lesions and organs weighted equally, clicks 1, 3, 5."""
    parts = [np.mean(list(summary[g].values())) for g in ("lesion", "organ") if g in summary]
    return float(np.mean(parts)) if parts else 0.0


def engine_for(model: Sam3D, threshold_prior: bool) -> SegAnyPETEngine:
    return SegAnyPETEngine(
        copy.deepcopy(model).eval(),
        device="cpu",
        kind_tokens=dict(KIND_TOKENS),
        first_click_prior=make_classical_prior() if threshold_prior else None,
        variant="demo",
    )


# --------------------------------------------------------------------------- the run


@dataclass
class TrainOptions:
    out: Path
    minutes: float = 70.0
    steps: int | None = None
    seed: int = 0
    init: Path | None = None
    threads: int = 2
    batch_crops: int = 2
    objects_per_crop: int = 3
    clicks: int = 5
    lr: float = 4e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    train_phantoms: int = 64
    first_train_seed: int = 1000
    lesion_fraction: float = 0.5
    kind_known_probability: float = 0.8
    random_first_click: float = 0.4
    random_next_click: float = 0.5
    low_res_weight: float = 0.5
    threshold_prior: bool = True
    eval_minutes: float = 10.0
    eval_seeds: tuple[int, ...] = EVAL_SEEDS
    eval_max_lesions: int | None = 3
    log_file: Path | None = None
    config: Sam3DConfig = field(default_factory=lambda: DEMO)
    fp16: bool = True
    dataset: Path | None = None


@dataclass
class TrainReport:
    steps: int
    minutes: float
    losses: list[float]
    best_score: float
    best_step: int
    evaluations: list[dict[str, Any]]
    out: Path


class Logger:
    def __init__(self, path: Path | None) -> None:
        self.stream: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.stream = path.open("a", encoding="utf-8")

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()


def build_pool(options: TrainOptions, crop_spacing_mm: float) -> list[PoolPhantom]:
    seeds = range(options.first_train_seed, options.first_train_seed + options.train_phantoms)
    overlap = set(seeds) & set(options.eval_seeds) | set(seeds) & set(FINAL_EVAL_SEEDS)
    if overlap:
        raise ValueError(f"training and evaluation seeds overlap: {sorted(overlap)}")
    pool = [pool_phantom(phantom_spec(seed), crop_spacing_mm) for seed in seeds]
    if options.dataset is not None:
        pool += dataset_pool(options.dataset, crop_spacing_mm)
    if not pool:
        raise ValueError("nothing to train on: give --train-phantoms > 0 or --dataset")
    return pool


def learning_rate(options: TrainOptions, step: int, elapsed_fraction: float) -> float:
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    progress = elapsed_fraction
    if options.steps:
        progress = max(progress, step / options.steps)
    progress = min(1.0, progress)
    return options.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_fp16(model: Sam3D, path: Path, metadata: dict[str, Any], fp16: bool) -> None:
    stored = copy.deepcopy(model)
    if fp16:
        stored = stored.half()  # halves the file; load_checkpoint converts back to float32
    save_checkpoint(stored, path, metadata=metadata)


def train(options: TrainOptions) -> TrainReport:
    started = time.perf_counter()
    budget_s = options.minutes * 60.0
    torch.set_num_threads(options.threads)
    # The engine sets its own thread count from this variable (used by the periodic evaluation).
    os.environ["SEGANYPET_TORCH_THREADS"] = str(options.threads)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    log = Logger(options.log_file)

    if options.init is not None:
        model = load_checkpoint(options.init).model
        log(f"initialised from {options.init}")
    else:
        model = Sam3D(options.config)
    model.train()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    log(f"model: {count_parameters(model):,} parameters, config {model.config.to_dict()}")

    pool = build_pool(options, model.config.crop_spacing_mm)
    n_lesions = sum(len(p.lesions) for p in pool)
    n_organs = sum(len(p.organs) for p in pool)
    log(
        f"pool: {len(pool)} phantoms, {n_lesions} lesions, {n_organs} organs ({time.perf_counter() - started:.0f} s)"
    )
    factory = SampleFactory(pool, options, model.config)
    cases = evaluation_cases(options.eval_seeds, options.eval_max_lesions) if options.eval_minutes > 0 else []

    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if parameter.ndim <= 1 or "rel_pos" in name or "pos_embed" in name else decay).append(
            parameter
        )
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=options.lr,
    )
    metadata_base: dict[str, Any] = {
        "kind_tokens": dict(KIND_TOKENS),
        "first_click_prior": CLASSICAL_PRIOR if options.threshold_prior else None,
        "description": (
            ("SegAnyPET demo model (SAM-Med3D layout, DEMO config) trained from scratch"
             if options.init is None else f"SegAnyPET model fine-tuned from {options.init}")
            + " on synthetic phantoms (worker.phantoms)"
            + (f" and the exported dataset {options.dataset}" if options.dataset is not None else "")
            + " with simulated clicks by worker.seganypet.train. NOT FOR CLINICAL USE."
        ),
        "training": {
            "command": " ".join(sys.argv) if sys.argv and "train" in sys.argv[0] else "train()",
            "options": _jsonable(asdict(options)),
            "train_phantom_seeds": [p.spec.seed for p in pool if p.spec is not None],
            "train_phantom_specs": [_jsonable(asdict(p.spec)) for p in pool if p.spec is not None],
            "dataset": str(options.dataset) if options.dataset is not None else None,
            "dataset_cases": [p.case for p in pool if p.spec is None],
            "eval_seeds": list(options.eval_seeds),
            "held_out_seeds": sorted(set(options.eval_seeds) | set(FINAL_EVAL_SEEDS)),
            # str(): torch.__version__ is a TorchVersion, which the safe (weights-only) loader refuses.
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
    }

    reserve_s = 30.0
    last_eval = time.perf_counter()
    losses: list[float] = []
    evaluations: list[dict[str, Any]] = []
    best_score, best_step = -1.0, -1
    step = 0
    window: list[StepResult] = []
    while True:
        elapsed = time.perf_counter() - started
        if options.steps is not None and step >= options.steps:
            break
        if elapsed > budget_s - reserve_s:
            log(f"time budget reached at step {step}")
            break
        lr = learning_rate(options, step, elapsed / budget_s)
        for group in optimiser.param_groups:
            group["lr"] = lr
        crops = [factory.crop(rng) for _ in range(options.batch_crops)]
        loss, result = training_step(model, crops, options, rng)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        step += 1
        losses.append(result.loss)
        window.append(result)
        if step % 10 == 0 or step <= 3:
            log(
                f"step {step} loss {np.mean([r.loss for r in window]):.4f} "
                f"train-dice first {np.mean([r.dice_first for r in window]):.3f} "
                f"last {np.mean([r.dice_last for r in window]):.3f} lr {lr:.2e} "
                f"elapsed {(time.perf_counter() - started) / 60:.1f} min"
            )
            window = []
        due = cases and time.perf_counter() - last_eval >= options.eval_minutes * 60
        if due:
            best_score, best_step = _evaluate_and_keep(
                model, cases, options, step, started, metadata_base, evaluations, best_score, best_step, log
            )
            last_eval = time.perf_counter()
            model.train()

    if cases:
        best_score, best_step = _evaluate_and_keep(
            model, cases, options, step, started, metadata_base, evaluations, best_score, best_step, log
        )
    else:
        _save(model, options.out, metadata_base, step, started, None, options.fp16)
        best_step = step
    last = options.out.with_name(options.out.stem + ".last.pt") if cases else options.out
    if cases:
        _save(
            model, last, metadata_base, step, started, evaluations[-1] if evaluations else None, options.fp16
        )
    minutes = (time.perf_counter() - started) / 60
    log(f"done: {step} steps in {minutes:.1f} min; best quick score {best_score:.3f} at step {best_step}")
    return TrainReport(step, minutes, losses, best_score, best_step, evaluations, options.out)


def _evaluate_and_keep(
    model: Sam3D,
    cases: list[Case],
    options: TrainOptions,
    step: int,
    started: float,
    metadata_base: dict[str, Any],
    evaluations: list[dict[str, Any]],
    best_score: float,
    best_step: int,
    log: Logger,
) -> tuple[float, int]:
    eval_started = time.perf_counter()
    summary = click_dice(engine_for(model, options.threshold_prior), cases)
    torch.set_num_threads(options.threads)
    score = quick_score(summary)
    summary.update({"step": step, "score": score, "seconds": time.perf_counter() - eval_started})
    evaluations.append(summary)
    log(f"eval step {step}: {json.dumps(summary)}")
    if score > best_score:
        _save(model, options.out, metadata_base, step, started, summary, options.fp16)
        log(f"new best {score:.3f} (was {best_score:.3f}): saved {options.out}")
        return score, step
    return best_score, best_step


def _save(
    model: Sam3D,
    path: Path,
    metadata_base: dict[str, Any],
    step: int,
    started: float,
    evaluation: dict[str, Any] | None,
    fp16: bool,
) -> None:
    metadata = copy.deepcopy(metadata_base)
    metadata["training"]["steps"] = step
    metadata["training"]["minutes"] = round((time.perf_counter() - started) / 60, 2)
    metadata["quick_evaluation"] = evaluation
    save_fp16(model, path, _jsonable(metadata), fp16)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def parse_args(argv: Sequence[str] | None = None) -> TrainOptions:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint to write (best quick evaluation)")
    parser.add_argument("--minutes", type=float, default=70.0, help="wall-time budget, evaluations included")
    parser.add_argument("--steps", type=int, default=None, help="planned steps (learning-rate schedule)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, default=None, help="checkpoint to fine-tune")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--batch-crops", type=int, default=2)
    parser.add_argument("--objects-per-crop", type=int, default=3)
    parser.add_argument("--train-phantoms", type=int, default=64, help="0: only --dataset")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="an unzipped export with its nnU-Net part: fine-tune on a project's approved masks")
    parser.add_argument("--eval-minutes", type=float, default=10.0, help="0 disables the periodic evaluation")
    parser.add_argument(
        "--no-threshold-prior", action="store_true", help="train without the first-click prior"
    )
    parser.add_argument("--fp32", action="store_true", help="store fp32 weights (default fp16)")
    parser.add_argument("--log-file", type=Path, default=None, help="default: --out with .log")
    args = parser.parse_args(argv)
    return TrainOptions(
        out=args.out,
        minutes=args.minutes,
        steps=args.steps,
        seed=args.seed,
        init=args.init,
        threads=args.threads,
        lr=args.lr,
        batch_crops=args.batch_crops,
        objects_per_crop=args.objects_per_crop,
        train_phantoms=args.train_phantoms,
        dataset=args.dataset,
        eval_minutes=args.eval_minutes,
        threshold_prior=not args.no_threshold_prior,
        fp16=not args.fp32,
        log_file=args.log_file or args.out.with_suffix(".log"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
