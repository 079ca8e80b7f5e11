"""Click-simulation benchmark of the segmentation engines on synthetic whole-body FDG phantoms.

    .venv/bin/python bench/bench_engines.py                 # 3 clinical-size phantoms, all objects
    .venv/bin/python bench/bench_engines.py --quick         # same phantoms; SegAnyPET on 3 objects only
    .venv/bin/python bench/bench_engines.py --size small    # 80×64×64 at 4 mm (squashed anatomy), seconds

For every organ (liver, spleen, kidneys, heart) and every lesion of each phantom, clicks are simulated
with worker.evaluation (first click at the object's centre, then at the centre of the largest error
region: deterministic, where the released SegAnyPET code samples at random), prompts accumulate and the
previous mask is fed back. Reported: mean Dice after 1/3/5 clicks per label, latency per click (median,
p95) and the engine's own timing split (e.g. SegAnyPET encode vs decode) when it reports one.

SegAnyPET runs only when the registry finds weights (SEGANYPET_CHECKPOINT or the demo checkpoint); with
--quick it is limited to 3 objects (``--seganypet-cases``, taken from the phantoms in turn) so that a
CPU-only run stays within a few minutes. The classical engine always runs on every object.
Results: bench/results/engines.md and bench/results/engines.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from worker.engines.registry import available_engines, get_engine  # noqa: E402
from worker.evaluation import (  # noqa: E402
    CLICK_RULE,
    Case,
    CaseResult,
    EngineSummary,
    cases_from_phantom,
    simulate_clicks,
    summarise,
)
from worker.phantoms import REALISTIC_SIZE, TEST_SIZE, make_phantom  # noqa: E402

RESULTS_DIR = REPO_ROOT / "bench" / "results"
TABLE_GROUPS = ("liver", "kidneys", "spleen", "heart", "lesions")
REPORT_CLICKS = (1, 3, 5)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="SegAnyPET on 3 objects only (CPU-friendly)")
    parser.add_argument(
        "--size",
        choices=("clinical", "small"),
        default="clinical",
        help="clinical: 300×200×200 at 3.27×3.5×3.5 mm; small: 80×64×64 at 4 mm",
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="phantom seeds (default 0 1 2)"
    )
    parser.add_argument("--lesions", type=int, default=5, help="lesions per phantom")
    parser.add_argument("--clicks", type=int, default=5, help="clicks per object")
    parser.add_argument("--engines", nargs="+", default=None, help="engine names (default: all available)")
    parser.add_argument(
        "--seganypet-cases",
        type=int,
        default=None,
        help="at most this many objects for seganypet, across phantoms (default: 3 with --quick)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    return parser.parse_args(argv)


def build_cases(seeds: list[int], size_name: str, lesions: int) -> tuple[list[Case], dict[str, Any]]:
    size = TEST_SIZE if size_name == "small" else REALISTIC_SIZE
    cases: list[Case] = []
    started = time.perf_counter()
    for seed in seeds:
        phantom = make_phantom(seed=seed, tracer="FDG", n_lesions=lesions, **size)
        cases.extend(cases_from_phantom(phantom))
    setup = {
        "phantom_shape": list(size["shape"]),
        "phantom_spacing_mm": list(size["spacing"]),
        "tracer": "FDG",
        "seeds": seeds,
        "lesions_per_phantom": lesions,
        "phantom_build_s": round(time.perf_counter() - started, 2),
    }
    return cases, setup


def limited_cases(cases: list[Case], total: int | None) -> list[Case]:
    """At most ``total`` cases, taken from the phantoms in turn, alternating organs and lesions."""
    if total is None:
        return cases
    queues: list[list[Case]] = []
    for number, session in enumerate(dict.fromkeys(c.session_key for c in cases)):
        organs = [c for c in cases if c.session_key == session and c.group != "lesions"]
        lesions = [c for c in cases if c.session_key == session and c.group == "lesions"]
        mixed = [c for pair in zip(organs, lesions, strict=False) for c in pair]
        mixed += organs[len(lesions) :] + lesions[len(organs) :]
        queues.append(mixed[number % max(1, len(mixed)) :] + mixed[: number % max(1, len(mixed))])
    chosen: list[Case] = []
    while len(chosen) < total and any(queues):
        for queue in queues:
            if queue and len(chosen) < total:
                chosen.append(queue.pop(0))
    return chosen


def engines_to_run(requested: list[str] | None) -> tuple[list[str], dict[str, str]]:
    listing = {e["name"]: e for e in available_engines()}
    names = requested or list(listing)
    skipped = {}
    runnable = []
    for name in names:
        entry = listing.get(name)
        if entry is None:
            skipped[name] = "unknown engine"
        elif not entry["available"]:
            skipped[name] = entry["reason"]
        else:
            runnable.append(name)
    return runnable, skipped


def run_engine(name: str, cases: list[Case], clicks: int) -> tuple[list[CaseResult], dict[str, Any]]:
    started = time.perf_counter()
    engine = get_engine(name)
    load_s = time.perf_counter() - started
    results = []
    for number, case in enumerate(cases, start=1):
        result = simulate_clicks(engine, case, clicks)
        results.append(result)
        dice = " ".join(f"{d:.3f}" for d in result.dice)
        print(f"  [{name}] {number}/{len(cases)} {case.case_id}: Dice {dice}", flush=True)
    info = dict(getattr(engine, "info", {}) or {})
    info.update(
        {
            "load_s": round(load_s, 2),
            "run_s": round(time.perf_counter() - started - load_s, 2),
            "cases": len(cases),
        }
    )
    return results, info


def _cell(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.3f}"


def markdown_report(
    summaries: list[EngineSummary],
    setup: dict[str, Any],
    engine_info: dict[str, Any],
    skipped: dict[str, str],
) -> str:
    shown = tuple(k for k in REPORT_CLICKS if k <= setup["clicks"])
    lines = [
        "# Engine benchmark: click simulation on synthetic FDG phantoms",
        "",
        f"Phantoms: seeds {setup['seeds']}, shape {setup['phantom_shape']}, spacing "
        f"{setup['phantom_spacing_mm']} mm, {setup['lesions_per_phantom']} lesions each; "
        f"{setup['clicks']} clicks per object. Click rule: {CLICK_RULE} (the released SegAnyPET code samples "
        "clicks at random in the error region). Machine: "
        f"{setup['machine']['cpus']} CPUs, Python {setup['machine']['python']}.",
        "",
        "## Mean Dice after k clicks",
        "",
        "| engine | label | cases | " + " | ".join(f"Dice@{k}" for k in shown) + " |",
        "|---|---|---:|" + "---:|" * len(shown),
    ]
    for summary in summaries:
        for group in (*TABLE_GROUPS, *sorted(set(summary.dice_by_group) - set(TABLE_GROUPS))):
            if group not in summary.dice_by_group:
                continue
            values = summary.dice_by_group[group]
            lines.append(
                f"| {summary.engine} | {group} | {summary.cases_by_group[group]} | "
                + " | ".join(_cell(values.get(k)) for k in shown)
                + " |"
            )
        lines.append(
            f"| {summary.engine} | **all** | {summary.cases} | "
            + " | ".join(_cell(summary.mean_dice.get(k)) for k in shown)
            + " |"
        )
    lines += [
        "",
        "## Latency per click (ms)",
        "",
        "| engine | median | p95 | mean | engine-reported split per click: median / mean |",
        "|---|---:|---:|---:|---|",
    ]
    for summary in summaries:
        split = ", ".join(
            f"{key} {ms:.1f} / {summary.timing_means_ms[key]:.1f}"
            for key, ms in summary.timing_medians_ms.items()
            if key != "total"
        )
        latency = summary.latency_ms
        lines.append(
            f"| {summary.engine} | {latency['median']:.1f} | {latency['p95']:.1f} | "
            f"{latency['mean']:.1f} | {split or '–'} |"
        )
    lines += ["", "## Engines", ""]
    for name, info in engine_info.items():
        details = ", ".join(f"{k}={v}" for k, v in info.items())
        lines.append(f"- {name}: {details}")
    for name, reason in skipped.items():
        lines.append(f"- {name}: not run ({reason})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    started = time.perf_counter()
    cases, setup = build_cases(arguments.seeds, arguments.size, arguments.lesions)
    setup["clicks"] = arguments.clicks
    setup["quick"] = arguments.quick
    setup["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    print(
        f"{len(cases)} objects from {len(arguments.seeds)} phantoms ({setup['phantom_build_s']} s)",
        flush=True,
    )

    names, skipped = engines_to_run(arguments.engines)
    summaries: list[EngineSummary] = []
    all_results: list[CaseResult] = []
    engine_info: dict[str, Any] = {}
    for name in names:
        limit = arguments.seganypet_cases
        if limit is None and arguments.quick:
            limit = 3
        engine_cases = limited_cases(cases, limit if name.startswith("seganypet") else None)
        results, info = run_engine(name, engine_cases, arguments.clicks)
        summaries.append(summarise(name, results, tuple(k for k in REPORT_CLICKS if k <= arguments.clicks)))
        all_results.extend(results)
        engine_info[name] = info

    report = markdown_report(summaries, setup, engine_info, skipped)
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "engines.md").write_text(report)
    payload = {
        "setup": setup,
        "click_rule": CLICK_RULE,
        "engines": engine_info,
        "skipped": skipped,
        "summaries": [summary.__dict__ for summary in summaries],
        "cases": [result.to_dict() for result in all_results],
    }
    (arguments.out / "engines.json").write_text(json.dumps(payload, indent=1, default=float))
    print()
    print(report)
    print(f"written {arguments.out / 'engines.md'} and engines.json in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
