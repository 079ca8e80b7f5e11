"""Options of a training run of the SegAnyPET demo model, and the constants every part of it shares.

See worker.seganypet.train for what a run does; the data, the click simulation and the periodic
evaluation read their settings from :class:`TrainOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from worker.seganypet.model import DEMO, Sam3DConfig

KIND_TOKENS: dict[str, int] = {"lesion": 1, "organ": 2}
GENERIC_TOKEN = 0
EVAL_SEEDS = (90001, 90002)
FINAL_EVAL_SEEDS = (90001, 90002, 90003, 90004)


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
