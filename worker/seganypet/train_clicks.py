"""One training step of the SegAnyPET demo model: SAM-style iterative click simulation and its loss.

Each object of a batch is decoded ``clicks`` times; after each decode the next click goes to the largest
error region of the prediction. The loss is BCE + soft Dice at crop resolution (around the object),
BCE on the low-resolution logits over the whole crop, and MSE of the IoU head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from worker.engines.seganypet_engine import decode_all_tokens
from worker.evaluation import region_centre
from worker.seganypet.model import Sam3D
from worker.seganypet.train_data import CropSample
from worker.seganypet.train_options import GENERIC_TOKEN, KIND_TOKENS, TrainOptions

LARGE_COMPONENT_VOXELS = 40**3


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
