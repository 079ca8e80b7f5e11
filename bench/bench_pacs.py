"""PACS benchmark: importing a 400-slice PET with its CT from a real Orthanc (DICOMweb) against a folder
import of the same files, and the time to push an approved annotation back as DICOM SEG (STOW-RS).

Orthanc runs locally (Debian `orthanc` + `orthanc-dicomweb`, as in tests/pacs), so the figures are the
app's own cost of QIDO/WADO/STOW and staging, without a network in between. Both imports run in one child
process on the embedded (SQLite) settings, the folder import first.

Usage: .venv/bin/python bench/bench_pacs.py [--quick]
Writes bench/results/pacs.md and bench/results/pacs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

CHILD = r"""
import json, sys, time
from pathlib import Path
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
import numpy as np
from django.contrib.auth.models import User
from backend.annotations.services import approve, open_annotation, save_version, submit
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan
from backend.pacs import secrets
from backend.pacs.models import DicomWebSource
from backend.pacs.services import request_push, run_import, send_push, start_import
from backend.projects.models import Label, Membership, Project

folder, url, user, password, study_uid = sys.argv[1:6]
paths = sorted(p for p in Path(folder).rglob("*.dcm"))
project = Project.objects.create(name="bench")
people = {}
for role in ("manager", "annotator", "reviewer"):
    people[role] = User.objects.create_user(role, password="x")
    membership = Membership(project=project, user=people[role]); membership.set_roles([role]); membership.save()
label = Label.objects.create(project=project, name="lesion", value=1, kind="lesion")

source = DicomWebSource.objects.create(project=project, name="orthanc", qido_url=url, wado_url=url, stow_url=url,
                                       auth="basic", username=user, secret_encrypted=secrets.encrypt(password))
from backend.pacs import services
phases = {"retrieve": [], "ingest": []}
def timed(name, function):
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            phases[name].append(time.perf_counter() - started)
    return wrapper
services.retrieve = timed("retrieve", services.retrieve)
services.ingest_dicom = timed("ingest", services.ingest_dicom)
folder_times, pacs_times, retrieve_times = [], [], []
for repeat in range(int(sys.argv[6])):  # alternating, so that a busy moment of the machine hits both
    started = time.perf_counter()
    folder_scan = ingest_dicom(Scan.objects.create(project=project, name="folder"), paths)
    folder_times.append(time.perf_counter() - started)
    assert folder_scan.status == "ready", folder_scan.status_message
    folder_scan.delete()  # the same study is imported again, from the PACS
    marks = {}
    def on_instance(count, marks=marks):
        marks.setdefault("first", time.perf_counter())
        marks["last"] = time.perf_counter()
    started = time.perf_counter()
    record = run_import(start_import(source, study_uid, people["manager"]), on_instance=on_instance)
    pacs_times.append(time.perf_counter() - started)
    retrieve_times.append(phases["retrieve"][-1])
    assert record.status == "done", record.message
    scan = Scan.objects.get(pk=record.scan_id)
    if repeat < int(sys.argv[6]) - 1:
        scan.delete()  # and its import record: the next round imports afresh
folder_s, pacs_s, retrieve_s = min(folder_times), min(pacs_times), min(retrieve_times)

pet = scan.pet
objects = np.zeros(pet.shape, dtype=np.uint8)
z, y, x = (s // 2 for s in pet.shape)
objects[z - 10:z + 10, y - 12:y + 12, x - 12:x + 12] = 1
annotation, _ = open_annotation(scan, people["annotator"])
save_version(annotation, people["annotator"], base_version_id=None, object_map=objects,
             segments=[{"id": 1, "label": label.pk}], source="manual")
annotation.refresh_from_db()
submit(annotation, people["annotator"])
annotation = approve(annotation, people["reviewer"])
started = time.perf_counter()
push = send_push(request_push(annotation, people["reviewer"]))
push_s = time.perf_counter() - started
assert push.status == "sent", push.message
print(json.dumps({"folder_s": folder_s, "pacs_s": pacs_s, "retrieve_s": retrieve_s, "ingest_after_retrieve_s": min(phases["ingest"]), "folder_all_s": folder_times, "pacs_all_s": pacs_times,
                  "push_s": push_s, "instances": record.instances_retrieved,
                  "frames": int(objects.any(axis=(1, 2)).sum())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller series (for a smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="imports of each kind; the best is reported")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.pacs.orthanc import PASSWORD, USER, Orthanc
    from worker.phantoms import make_phantom, write_dicom_series

    shape = (100, 128, 128) if args.quick else (400, 256, 256)  # PET; the CT is 2x finer in-plane
    spacing = (2.5, 2.73, 2.73)
    work = Path(tempfile.mkdtemp(prefix="bench-pacs-"))
    orthanc = Orthanc(work / "orthanc").start()
    try:
        phantom = make_phantom(seed=7, shape=shape, spacing=spacing, n_lesions=8, ct_inplane_factor=2)
        written = write_dicom_series(phantom, work / "dicom")
        files = list(written.pet_files) + list(written.ct_files)
        started = time.perf_counter()
        orthanc.upload(files)
        load_s = time.perf_counter() - started
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "backend.settings", "DEBUG": "true",
               "DATA_DIR": str(work / "data"), "MEDIA_ROOT": str(work / "media"), "PYTHONPATH": str(ROOT)}
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        child = subprocess.run([sys.executable, "-c", CHILD, str(work / "dicom"), orthanc.dicomweb_url, USER, PASSWORD,
                                written.study_instance_uid, str(args.repeats)], env=env, cwd=ROOT, capture_output=True, text=True)
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-3000:])
        figures = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)
    ct_shape = (shape[0], shape[1] * 2, shape[2] * 2)
    ratio = figures["pacs_s"] / figures["folder_s"]
    median_ratio = statistics.median(figures["pacs_all_s"]) / statistics.median(figures["folder_all_s"])
    result = {"pet_shape": shape, "ct_shape": ct_shape, "files": len(files), "orthanc_load_s": load_s,
              **figures, "ratio": ratio, "median_ratio": median_ratio, "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    name = "pacs-quick" if args.quick else "pacs"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(f"""# PACS benchmark

PET {list(shape)} + CT {list(ct_shape)}, {len(files)} DICOM instances in a local Orthanc 1.10 with its DICOMweb
plugin (basic auth), {result['machine']} (shared with other work: figures are indicative).

Best of {args.repeats} runs each, alternating (all runs: folder {', '.join(f'{t:.2f}' for t in figures['folder_all_s'])}
s; Orthanc {', '.join(f'{t:.2f}' for t in figures['pacs_all_s'])} s).

| | seconds |
|---|---|
| folder import (`ingest_dicom` of the same files) | {figures['folder_s']:.2f} |
| import from Orthanc (QIDO-RS checks, WADO-RS retrieve to staging, ingest) | {figures['pacs_s']:.2f} |
| of which retrieving (WADO-RS to staging; best run) | {figures['retrieve_s']:.2f} |
| of which ingesting the staged files (best run) | {figures['ingest_after_retrieve_s']:.2f} |
| DICOM SEG push of an approved annotation (build SEG + STOW-RS), {figures['frames']} frames | {figures['push_s']:.2f} |

Ratio import from Orthanc / folder import: **{ratio:.2f}** best against best, {median_ratio:.2f} median against
median (goal ≤ 1.5). The retrieve streams each series (one WADO-RS answer) and writes the instances as received
while a thread reads ahead; the raw transfer alone takes a fraction of a second here, the rest is per-instance
work (header check, file creation).

Not measured here: loading the study into Orthanc ({load_s:.1f} s over its REST API; the PACS's own business).
Run: `.venv/bin/python bench/bench_pacs.py` ({'--quick, ' if args.quick else ''}writes bench/results/{name}.md).
""")
    print((RESULTS / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
