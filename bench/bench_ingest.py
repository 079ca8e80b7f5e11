"""Ingest benchmark: a 400-slice whole-body PET and a 512x512x400 CT, against dcm2niix, in one run.

Each side runs in its own child process so that its peak memory (max RSS) is its own.
Usage: .venv/bin/python bench/bench_ingest.py [--quick]
Writes bench/results/ingest.md and bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

OUR_INGEST = r"""
import os, sys, time
from pathlib import Path
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan
from backend.projects.models import Project
paths = sorted(p for p in Path(sys.argv[1]).rglob("*") if p.is_file())
scan = Scan.objects.create(project=Project.objects.create(name="bench"))
started = time.perf_counter()
scan = ingest_dicom(scan, paths)
elapsed = time.perf_counter() - started
assert scan.status == "ready", scan.status_message
print(elapsed)
"""


def peak_rss_child(argv: list[str], env: dict | None = None) -> tuple[float, float, str]:
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    out = child.stdout.read().decode() if child.stdout else ""
    err = child.stderr.read().decode() if child.stderr else ""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed: {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller series (for a smoke run)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from worker.phantoms import make_phantom, write_dicom_series

    # PET 400 slices of 256x256 at 2.5 mm; CT on a 2x finer in-plane grid: 512x512x400.
    shape = (100, 128, 128) if args.quick else (400, 256, 256)
    spacing = (2.5, 2.73, 2.73)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        phantom = make_phantom(seed=7, shape=shape, spacing=spacing, n_lesions=8, ct_inplane_factor=2)
        written = write_dicom_series(phantom, work / "dicom")
        pet_dir, ct_dir = work / "dicom" / "PT", work / "dicom" / "CT"
        assert pet_dir.is_dir() and ct_dir.is_dir(), written

        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings", "DEBUG": "true",
               "DATA_DIR": str(work / "data"), "PYTHONPATH": str(ROOT)}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        ours_wall, ours_rss, out = peak_rss_child([sys.executable, "-c", OUR_INGEST, str(work / "dicom")], env)
        ours_ingest = float(out.strip().splitlines()[-1])

        dcm2niix = shutil.which("dcm2niix")
        if dcm2niix is None:
            raise SystemExit("dcm2niix is not installed (apt-get install dcm2niix)")
        theirs_wall = theirs_rss = 0.0
        for series_dir in (pet_dir, ct_dir):
            out_dir = work / f"dcm2niix-{series_dir.name}"
            out_dir.mkdir()
            wall, rss, _ = peak_rss_child([dcm2niix, "-z", "y", "-b", "n", "-o", str(out_dir), str(series_dir)])
            theirs_wall += wall
            theirs_rss = max(theirs_rss, rss)
        figures = {
            "pet_shape": list(phantom.shape), "ct_shape": list(phantom.ct_hu.shape),
            "files": sum(1 for _ in (work / "dicom").rglob("*.dcm")),
            "ours_ingest_s": round(ours_ingest, 2), "ours_process_s": round(ours_wall, 2),
            "ours_peak_rss_mib": round(ours_rss), "dcm2niix_s": round(theirs_wall, 2),
            "dcm2niix_peak_rss_mib": round(theirs_rss), "ratio_to_dcm2niix": round(ours_ingest / theirs_wall, 2),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "quick": args.quick,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "ingest-quick" if args.quick else "ingest"
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    table = "\n".join([
        f"# Ingest benchmark{' (quick)' if args.quick else ''}",
        "",
        f"PET {figures['pet_shape']} + CT {figures['ct_shape']}, {figures['files']} DICOM files, {figures['machine']}.",
        "Ours: read, sort, check, rescale, SUV, write canonical NIfTI (.nii.gz) and preview, database rows.",
        "dcm2niix: both series to .nii.gz (`-z y`).",
        "",
        "| | seconds | peak RSS (MiB) |",
        "|---|---|---|",
        f"| SegAnyPET Studio ingest | {figures['ours_ingest_s']} | {figures['ours_peak_rss_mib']} |",
        f"| dcm2niix | {figures['dcm2niix_s']} | {figures['dcm2niix_peak_rss_mib']} |",
        "",
        f"Ratio ours / dcm2niix: **{figures['ratio_to_dcm2niix']}** (goal ≤ 2).",
        "",
    ])
    (RESULTS / f"{name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
