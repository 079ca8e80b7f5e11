"""Click-simulation evaluation during training: held-out phantoms, mean Dice after 1, 3 and 5 clicks
(worker.evaluation's protocol) and the score that picks the best checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from worker.engines.seganypet_engine import KindBoundEngine, SegAnyPETEngine, make_classical_prior
from worker.evaluation import DEFAULT_ORGANS, Case, cases_from_phantom, simulate_clicks
from worker.seganypet.model import Sam3D
from worker.seganypet.train_data import eval_spec
from worker.seganypet.train_options import KIND_TOKENS

MIN_EVAL_LESION_MM = 10.0


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
        torch_threads=torch.get_num_threads(),  # the training's own setting, not the machine's CPU count
    )
