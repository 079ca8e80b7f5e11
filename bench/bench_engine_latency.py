"""Engine latency on one whole-body volume (200 x 200 x 600): a first click (new crop, image
encoding) and a corrective click (cached embedding), p50/p95, and each engine's peak memory.

Engines: `threshold`; `seganypet-demo` (the shipped demo weights, when present); the full-size
`vit_b_ori` configuration with random weights (latency does not depend on the weights; official
weights cannot be downloaded here). Each engine runs in its own child process, so its peak RSS is
its own. Everything the engine does is included: crop, resampling, normalisation, paste-back.

Usage: .venv/bin/python bench/bench_engine_latency.py [--repeats 10]
Writes bench/results/engine_latency.md and bench/results/engine_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHAPE = (600, 200, 200)  # [slice, row, col]: 200 x 200 in-plane, 600 slices
SPACING = (3.0, 3.5, 3.5)
GOALS = [("threshold", "first_p50", 50), ("threshold", "corrective_p50", 50),
         ("seganypet-demo", "first_p50", 200), ("seganypet-demo", "corrective_p50", 50),
         ("seganypet-vit_b_ori", "corrective_p50", 150)]


def child(engine_name: str, repeats: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from scipy import ndimage

    from worker.engines.base import Point, Prompts
    from worker.engines.orientation import Canonical
    from worker.phantoms import make_phantom

    phantom = make_phantom(seed=5, shape=SHAPE, spacing=SPACING, n_lesions=12)
    # What the app hands an engine: RAS-canonical views of the stored [slice, row, col] volume.
    canonical = Canonical.from_lps_affine(phantom.pet_affine, SHAPE)
    volume = canonical.to_ras(np.ascontiguousarray(phantom.suv))
    spacing = canonical.spacing(SPACING)
    lesions = sorted(phantom.lesions, key=lambda lesion: -lesion.diameter_mm)
    liver_value = next(v for v, name in phantom.label_names.items() if name == "liver")
    liver = canonical.to_ras(phantom.labels == liver_value)
    liver_click = tuple(int(c) for c in np.round(ndimage.center_of_mass(liver)))
    if engine_name == "threshold":
        from worker.engines.classical import ClassicalPETEngine

        engine = ClassicalPETEngine()
    elif engine_name == "seganypet-demo":
        from worker.engines.registry import demo_checkpoint_path
        from worker.engines.seganypet_engine import SegAnyPETEngine

        engine = SegAnyPETEngine.from_checkpoint(demo_checkpoint_path())
    else:
        from worker.engines.seganypet_engine import SegAnyPETEngine, engine_options_from_metadata
        from worker.seganypet.model import build_sam3d_vit_b_ori

        # The official network as the app runs it: the reference pipeline's switches (one crop, nearest).
        engine = SegAnyPETEngine(build_sam3d_vit_b_ori(), variant="vit_b_ori",
                                 **engine_options_from_metadata({}, "vit_b_ori"))
    first, corrective, organ, organ_crops = [], [], [], []
    for i in range(repeats):
        lesion = lesions[i % len(lesions)]
        centre = canonical.index_to_ras(tuple(int(round(c)) for c in lesion.centre_index))
        nearby = tuple(min(s - 1, c + 1) for c, s in zip(centre, volume.shape, strict=True))
        key = f"bench-{i}"
        started = time.perf_counter()
        result = engine.segment(volume, spacing, Prompts(points=(Point(centre, True),)), None, key, kind="lesion")
        first.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        engine.segment(volume, spacing, Prompts(points=(Point(centre, True), Point(nearby, True))), result.mask, key,
                       kind="lesion")
        corrective.append((time.perf_counter() - started) * 1000)
        # A large organ from one click: as many crops as the engine's rules follow it into.
        started = time.perf_counter()
        engine.segment(volume, spacing, Prompts(points=(Point(liver_click, True),)), None, f"organ-{i}", kind="organ")
        organ.append((time.perf_counter() - started) * 1000)
        organ_crops.append(len(getattr(engine, "last_crop_origins", [])) or 1)
    return {"first_ms": first, "corrective_ms": corrective, "organ_ms": organ, "organ_crops": organ_crops,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--report-only", action="store_true", help="exit 0 even when a goal is missed")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeats)))
        return
    sys.path.insert(0, str(ROOT))
    from worker.engines.registry import demo_checkpoint_path

    engines = ["threshold"] + (["seganypet-demo"] if demo_checkpoint_path().is_file() else []) + ["seganypet-vit_b_ori"]
    rows = {}
    for name in engines:
        output = subprocess.run([sys.executable, __file__, "--child", name, "--repeats", str(args.repeats)],
                                capture_output=True, text=True, cwd=ROOT, timeout=3600)
        if output.returncode != 0:
            rows[name] = {"error": output.stderr[-500:]}
            continue
        data = json.loads(output.stdout.strip().splitlines()[-1])
        rows[name] = {"first_p50": round(percentile(data["first_ms"], 50), 1),
                      "first_p95": round(percentile(data["first_ms"], 95), 1),
                      "corrective_p50": round(percentile(data["corrective_ms"], 50), 1),
                      "corrective_p95": round(percentile(data["corrective_ms"], 95), 1),
                      "organ_p50": round(percentile(data["organ_ms"], 50), 1),
                      "organ_crops": max(data["organ_crops"]),
                      "peak_rss_mib": round(data["peak_rss_mib"])}
    figures = {"volume": list(SHAPE), "spacing_mm": list(SPACING), "repeats": args.repeats,
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU only", "engines": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "engine_latency.json").write_text(json.dumps(figures, indent=2) + "\n")
    lines = ["# Engine latency", "",
             f"Volume {SHAPE[2]}×{SHAPE[1]}×{SHAPE[0]} (PET phantom), {args.repeats} lesions clicked, {figures['machine']}.",
             "Engines get what the app gives them: RAS-canonical views of the stored volume, kind lesion or organ.",
             "- first click: a lesion, one new crop (image encoding);",
             "- corrective click: a second point on the same lesion, same crop (cached embedding, decoder only);",
             "- organ, one click: the liver from one click, over as many crops as the engine follows it into "
             "(the official network runs the reference pipeline: one crop).",
             "Times include crop, resampling, normalisation and paste-back.", "",
             "| engine | first click p50 ms | p95 | corrective p50 ms | p95 | organ one click p50 ms | crops | "
             "peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error'][:80]} | | | | | | |")
        else:
            lines.append(f"| {name} | {r['first_p50']} | {r['first_p95']} | {r['corrective_p50']} | "
                         f"{r['corrective_p95']} | {r['organ_p50']} | {r['organ_crops']} | {r['peak_rss_mib']} |")
    missed = [f"{name} {metric} p50 {rows[name][metric]} ms > {limit} ms" for name, metric, limit in GOALS
              if name in rows and "error" not in rows[name] and rows[name][metric] > limit]
    missed += [f"{name} failed" for name, r in rows.items() if "error" in r]
    lines += ["", "Goals on CPU (p50): " + "; ".join(f"{n} {m.split('_')[0]} ≤ {limit} ms" for n, m, limit in GOALS)
              + ".", "", "Missed: " + ("; ".join(missed) if missed else "none") + ".", ""]
    (RESULTS / "engine_latency.md").write_text("\n".join(lines))
    print("\n".join(lines))
    if missed and not args.report_only:
        sys.exit(1)


if __name__ == "__main__":
    main()
