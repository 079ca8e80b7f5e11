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

Parts: ``train_options`` (TrainOptions, shared constants), ``train_data`` (the pool, exported datasets,
crops), ``train_clicks`` (one step: click simulation and loss), ``train_eval`` (the periodic
evaluation); this module runs the loop, keeps the best checkpoint and holds the command line.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from worker.engines.seganypet_engine import CLASSICAL_PRIOR, LEGACY_AXES
from worker.evaluation import Case
from worker.seganypet.checkpoint import load_checkpoint, save_checkpoint
from worker.seganypet.model import Sam3D, count_parameters
from worker.seganypet.train_clicks import StepResult, training_step
from worker.seganypet.train_data import PoolPhantom, SampleFactory, dataset_pool, phantom_spec, pool_phantom
from worker.seganypet.train_eval import click_dice, engine_for, evaluation_cases, quick_score
from worker.seganypet.train_options import FINAL_EVAL_SEEDS, KIND_TOKENS, TrainOptions


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
        # Training crops come from the phantoms' [slice, row, col] arrays; the engine converts its RAS
        # input to them (worker.engines.seganypet_engine.LEGACY_AXES) until training moves to RAS.
        "array_axes": LEGACY_AXES,
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
