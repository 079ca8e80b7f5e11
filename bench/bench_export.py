"""Export benchmark: 50 phantom PET/CT scans (80x64x64 PET), each with an approved annotation, in all formats.

Two child processes, so that the export's peak memory (max RSS) is its own: the first ingests the phantoms
from real DICOM and creates approved annotations directly through the services (statistics are computed
when each version is saved, in-process); the second runs the export twice (nnU-Net, NIfTI, DICOM SEG, CSV)
and checks that both archives are byte-identical.
Usage: .venv/bin/python bench/bench_export.py [--scans N]
Writes bench/results/export.md and bench/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

PREPARE = r"""
import sys, tempfile, shutil, time
from pathlib import Path
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
import numpy as np
from django.contrib.auth.models import User
from backend.annotations import services
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan
from worker.phantoms import LESION_LABEL, make_phantom, write_dicom_series
from backend.projects.models import Label, Membership, Project

count = int(sys.argv[1])
project = Project.objects.create(name="Export bench")
people = {}
for role in ("manager", "annotator", "reviewer"):
    user = User.objects.create_user(role, password="x")
    membership = Membership(project=project, user=user)
    membership.set_roles([role])
    membership.save()
    people[role] = user
liver = Label.objects.create(project=project, name="liver", value=1, color="#aa5500", kind="organ")
lesion = Label.objects.create(project=project, name="lesion", value=LESION_LABEL, color="#ff0000", kind="lesion")
started = time.perf_counter()
for seed in range(count):
    phantom = make_phantom(seed=seed, n_lesions=3)
    folder = Path(tempfile.mkdtemp())
    write_dicom_series(phantom, folder)
    scan = ingest_dicom(Scan.objects.create(project=project, name=f"phantom {seed}"),
                        sorted(p for p in folder.rglob("*") if p.is_file()))
    shutil.rmtree(folder)
    assert scan.status == "ready", scan.status_message
    objects = np.zeros(phantom.shape, dtype=np.uint16)
    objects[phantom.labels == 3] = 1
    segments = [{"id": 1, "label": liver.pk}]
    for number, item in enumerate(phantom.lesions, start=2):
        objects[phantom.lesion_labels == item.index] = number
        if (objects == number).any():
            segments.append({"id": number, "label": lesion.pk})
    annotation, _ = services.open_annotation(scan, people["annotator"])
    services.save_version(annotation, people["annotator"], base_version_id=None, object_map=objects,
                          segments=segments, source="manual")
    services.submit(annotation, people["annotator"])
    services.approve(annotation, people["reviewer"])
print(time.perf_counter() - started)
"""

EXPORT = r"""
import json, time
import django
django.setup()
from django.contrib.auth.models import User
from backend.exports import services
from backend.exports.models import ExportJob
from backend.imaging import storage
from backend.projects.models import Project

project = Project.objects.get(name="Export bench")
settings = services.normalise_settings(project, {})
timings, hashes = [], []
for _ in range(2):
    job = ExportJob.objects.create(project=project, created_by=User.objects.get(username="manager"), settings=settings)
    started = time.perf_counter()
    job = services.run_export_job(job)
    timings.append(time.perf_counter() - started)
    assert job.status == "done", job.message
    hashes.append(job.archive_sha256)
print(json.dumps({"export_s": timings, "identical": hashes[0] == hashes[1], "archive_bytes": job.archive_bytes,
                  "files": job.summary["files"], "notes": job.summary["notes"],
                  "selection": job.summary["selection"]}))
"""


def run_child(code: str, args: list[str], env: dict) -> tuple[float, float, str]:
    """Run `python -c code args` and return (wall seconds, peak RSS MiB, stdout)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, cwd=ROOT)
    # Read both pipes to the end before reaping, so that the child never blocks on a full pipe.
    out, err = b"", b""
    if child.stdout is not None and child.stderr is not None:
        selector = selectors.DefaultSelector()
        selector.register(child.stdout, selectors.EVENT_READ)
        selector.register(child.stderr, selectors.EVENT_READ)
        open_streams = 2
        while open_streams:
            for key, _ in selector.select():
                chunk = key.fileobj.read1(1 << 16)  # type: ignore[union-attr]
                if not chunk:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                elif key.fileobj is child.stdout:
                    out += chunk
                else:
                    err += chunk
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child failed: {err.decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scans", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings", "DEBUG": "true",
               "DATA_DIR": str(work / "data"), "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        prepare_wall, prepare_rss, out = run_child(PREPARE, [str(args.scans)], env)
        export_wall, export_rss, out = run_child(EXPORT, [], env)
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    first, second = result["export_s"]
    figures = {
        "scans": args.scans, "pet_shape": [80, 64, 64], "formats": ["nnunet", "nifti", "dicom_seg", "csv"],
        "prepare_s": round(prepare_wall, 1), "export_s": round(first, 2), "export_again_s": round(second, 2),
        "per_scan_s": round(first / args.scans, 3), "export_process_peak_rss_mib": round(export_rss),
        "prepare_process_peak_rss_mib": round(prepare_rss), "archive_mib": round(result["archive_bytes"] / 2**20, 1),
        "files": result["files"], "byte_identical": result["identical"], "notes": result["notes"],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(figures, indent=2) + "\n")
    table = "\n".join([
        "# Export benchmark",
        "",
        f"{figures['scans']} phantom PET/CT scans (PET {figures['pet_shape']} at 4 mm, CT 2x finer in-plane), each "
        f"with one approved annotation (liver + 3 lesions), {figures['machine']}.",
        "All formats in one job: nnU-Net v2 raw dataset (PET + CT-on-PET channels), NIfTI (image, CT on the PET "
        "grid, label and object maps), DICOM SEG (highdicom), CSV/JSON statistics; manifest with sha256 of every "
        "file; deterministic zip. Statistics were computed when the versions were saved (not timed here).",
        "",
        "| | value |",
        "|---|---|",
        f"| export (first run), seconds | {figures['export_s']} |",
        f"| export (second run, same inputs), seconds | {figures['export_again_s']} |",
        f"| per scan, seconds | {figures['per_scan_s']} |",
        f"| export process peak RSS, MiB | {figures['export_process_peak_rss_mib']} |",
        f"| archive, MiB ({figures['files']} files + manifest) | {figures['archive_mib']} |",
        f"| the two archives byte-identical | {'yes' if figures['byte_identical'] else '**no**'} |",
        f"| setup (phantoms, DICOM ingest, annotations, statistics), seconds | {figures['prepare_s']} |",
        "",
    ])
    (RESULTS / "export.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
