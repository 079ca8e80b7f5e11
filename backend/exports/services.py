"""Dataset exports (nnU-Net v2, NIfTI, DICOM SEG, CSV/JSON statistics) and label-map imports.

An export is a background job: `create_job` stores the normalised settings and queues `run_export` on the
`cpu` queue after the commit; `run_export_job` writes every file into a staging folder, then a manifest
(every file with its sha256 and source annotation versions, plus the settings), then one deterministic zip.
The same settings over the same versions give a byte-identical archive: nothing in it depends on the job,
the clock or the order rows come back in.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from backend.annotations import audit
from backend.annotations.agreement import objects_from_label_map
from backend.annotations.masks import MaskError, read_uploaded_mask
from backend.annotations.models import Annotation, AnnotationState, AnnotationVersion
from backend.annotations.services import open_annotation, read_mask, save_version
from backend.imaging import storage
from backend.imaging.ingest import ct_on_pet_file
from backend.imaging.integrity import ScanDamaged, check_usable
from backend.imaging.models import Scan, Series
from backend.imaging.nifti_io import nifti_bytes
from backend.imaging.suv import SUV_TYPES
from backend.interactive.events import broadcast_to_scan
from backend.projects.models import Label, LabelKind, Project
from backend.quantification.services import ensure_for_version

from . import archive, dicom_seg
from .models import ExportFormat, ExportJob, ExportStatus

log = logging.getLogger(__name__)

FORMATS = tuple(sorted(f.value for f in ExportFormat))
STATES = tuple(s.value for s in AnnotationState)
PET_CHANNELS = {"PET": "z-score per case (nnU-Net's default for a channel not named CT)",
                "noNorm": "no normalisation: absolute SUV reaches the network"}
MANIFEST = "manifest.json"
STAGING_PREFIX = ".staging-"
FORMAT_VERSION = 1


class ExportError(ValueError):
    """Settings or a selection that cannot be exported; the message is for the user."""


# --- settings and selection -----------------------------------------------------------------------


def _dataset_name(project: Project) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", project.name)[:40] or "SegAnyPET"


def normalise_settings(project: Project, data: dict) -> dict:
    """Every default filled in and every list sorted, so equal requests give equal settings (and archives)."""
    formats = sorted(set(data.get("formats") or FORMATS))
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"Unknown formats {unknown}; choose from {list(FORMATS)}.")
    states = sorted(set(data.get("states") or [AnnotationState.APPROVED.value]))
    if set(states) - set(STATES):
        raise ExportError(f"Unknown annotation states {sorted(set(states) - set(STATES))}; choose from {list(STATES)}.")
    labels = sorted({int(v) for v in data.get("labels") or []})
    known = set(Label.objects.filter(project=project).values_list("pk", flat=True))
    if set(labels) - known:
        raise ExportError(f"Labels {sorted(set(labels) - known)} are not in this project's label set.")
    scans = sorted({int(v) for v in data.get("scans") or []})
    if set(scans) - set(Scan.objects.filter(project=project, pk__in=scans).values_list("pk", flat=True)):
        raise ExportError("Some of the scans are not in this project.")
    date_from, date_to = (_date(data.get(key), key) for key in ("date_from", "date_to"))
    if date_from and date_to and date_from > date_to:
        raise ExportError("date_from is after date_to.")
    nnunet = dict(data.get("nnunet") or {})
    dataset_id = int(nnunet.get("dataset_id", 500))
    if not 1 <= dataset_id <= 999:
        raise ExportError("nnunet.dataset_id must lie in 1–999.")
    pet_channel = nnunet.get("pet_channel", "PET")
    if pet_channel not in PET_CHANNELS:
        raise ExportError(f"nnunet.pet_channel must be one of {sorted(PET_CHANNELS)} (never 'CT': nnU-Net's CT "
                          "normalisation would clip the highest SUVs).")
    name = re.sub(r"[^A-Za-z0-9]+", "", str(nnunet.get("dataset_name") or "")) or _dataset_name(project)
    return {"formats": formats, "states": states, "labels": labels, "scans": scans,
            "date_from": date_from.isoformat() if date_from else None,
            "date_to": date_to.isoformat() if date_to else None,
            "nnunet": {"dataset_id": dataset_id, "dataset_name": name[:40], "pet_channel": pet_channel}}


def _date(value, name: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ExportError(f"{name} must be a date like 2024-05-31.") from None


@dataclass
class Source:
    annotation: Annotation
    version: AnnotationVersion
    scan: Scan

    @property
    def stem(self) -> str:
        return f"annotation{self.annotation.pk:05d}_v{self.version.number}"


def select_sources(project: Project, settings: dict) -> list[Source]:
    """The annotations' current versions the settings choose, ordered by scan then annotation."""
    queryset = Annotation.objects.filter(project=project, state__in=settings["states"],
                                         current_version__isnull=False).select_related("current_version", "scan")
    if settings["scans"]:
        queryset = queryset.filter(scan_id__in=settings["scans"])
    if settings["date_from"]:
        queryset = queryset.filter(current_version__created_at__date__gte=settings["date_from"])
    if settings["date_to"]:
        queryset = queryset.filter(current_version__created_at__date__lte=settings["date_to"])
    sources = []
    for annotation in queryset.order_by("scan_id", "pk"):
        version = annotation.current_version
        if settings["labels"] and not {s["label"] for s in version.segments} & set(settings["labels"]):
            continue
        sources.append(Source(annotation, version, annotation.scan))
    return sources


def describe_filter(settings: dict) -> str:
    parts = [f"states {', '.join(settings['states'])}"]
    if settings["labels"]:
        parts.append(f"labels {settings['labels']}")
    if settings["scans"]:
        parts.append(f"scans {settings['scans']}")
    if settings["date_from"] or settings["date_to"]:
        parts.append(f"versions saved {settings['date_from'] or '…'} to {settings['date_to'] or '…'}")
    return "; ".join(parts)


def create_job(project: Project, user, settings: dict) -> ExportJob:
    """Store the job and queue it after the commit; refused when the filter selects nothing."""
    sources = select_sources(project, settings)
    if not sources:
        raise ExportError(f"The filter selects no annotations ({describe_filter(settings)}): nothing to export. "
                          "Only approved annotations are exported unless `states` says otherwise.")
    from .tasks import run_export  # enqueue only; the task calls run_export_job below

    with transaction.atomic():
        job = ExportJob.objects.create(project=project, created_by=user, settings=settings)
        audit.record(project.pk, user, "export_requested", job, formats=settings["formats"],
                     annotations=len(sources))
        transaction.on_commit(lambda: run_export.delay(job.pk))
    return job


# --- running ------------------------------------------------------------------------------------


class _Progress:
    def __init__(self, job: ExportJob, total: int) -> None:
        self.job, self.total, self.done = job, max(total, 1), 0

    def step(self, scan_id: int | None, message: str) -> None:
        self.done += 1
        fraction = min(0.95, 0.05 + 0.9 * self.done / self.total)
        ExportJob.objects.filter(pk=self.job.pk).update(progress=fraction, message=message[:500],
                                                         heartbeat_at=timezone.now())
        if scan_id is not None:
            broadcast_to_scan(scan_id, {"type": "progress", "task": "export", "export": self.job.pk,
                                        "fraction": round(fraction, 3), "message": message})


def stale_after_s() -> float:
    return float(getattr(django_settings, "EXPORT_STALE_S", 300))


def fail_stale_jobs(queryset, stale_after: float | None = None) -> None:
    """Jobs whose worker stopped (killed, machine lost) are failed with a clear message. The archive
    is only moved into place at the very end, so nothing half-written is ever visible."""
    cutoff = timezone.now() - timedelta(seconds=stale_after_s() if stale_after is None else stale_after)
    queryset.filter(status=ExportStatus.RUNNING, heartbeat_at__lt=cutoff).update(
        status=ExportStatus.FAILED, finished_at=timezone.now(),
        message="The worker running this export stopped before it finished; nothing was written. Start it again.")


def run_export_job(job: ExportJob) -> ExportJob:
    """Run one job to the end; failures are stored on the job with a readable message."""
    # A job whose worker died (no heartbeat for a while) may be taken over by a redelivered task.
    stale = Q(status=ExportStatus.RUNNING, heartbeat_at__lt=timezone.now() - timedelta(seconds=stale_after_s()))
    claimed = ExportJob.objects.filter(Q(status=ExportStatus.PENDING) | stale, pk=job.pk).update(
        status=ExportStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now(), progress=0.02,
        message="selecting annotations")
    job.refresh_from_db()
    if not claimed:
        return job  # already run (a redelivered task) or running elsewhere
    exports_dir = storage.media_path("exports")
    exports_dir.mkdir(parents=True, exist_ok=True)
    # Named after the job, so that recovery (recovery.py) knows whose staging a left-over folder was.
    staging = Path(tempfile.mkdtemp(dir=exports_dir, prefix=f"{STAGING_PREFIX}{job.pk}-"))
    try:
        sources = select_sources(job.project, job.settings)
        progress = _Progress(job, len(sources) + 1)
        manifest = build_export(job.project, job.settings, sources, staging / "files", progress.step)
        relative = f"exports/{job.pk}/seganypet_export_p{job.project_id}_{job.pk}.zip"
        zipped = staging / "archive.zip"
        archive.write_zip(zipped, staging / "files", archive.files_under(staging / "files"))
        destination = storage.media_path(relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        zipped.replace(destination)
        job.archive_file, job.archive_bytes = relative, destination.stat().st_size
        job.archive_sha256 = archive.sha256_file(destination)
        job.summary = {key: manifest[key] for key in ("selection", "notes")} | {"files": len(manifest["files"])}
        job.status, job.progress, job.finished_at = ExportStatus.DONE, 1.0, timezone.now()
        job.message = manifest["selection"]["note"]
        job.save()
    except Exception as error:
        log.exception("export %s failed", job.pk)
        known = isinstance(error, ExportError | MaskError | dicom_seg.SegError)
        job.status, job.finished_at = ExportStatus.FAILED, timezone.now()
        job.message = str(error) if known else f"The export failed unexpectedly ({type(error).__name__}: {error})."
        job.save(update_fields=["status", "finished_at", "message"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return job


def remove_archive(job: ExportJob) -> None:
    if job.archive_file:
        storage.remove_tree(str(Path(job.archive_file).parent))


# --- building the files -------------------------------------------------------------------------


class _Writer:
    """Writes files under the staging root and remembers each one's checksum and sources for the manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, dict] = {}

    def write(self, name: str, payload: bytes, sources: list[int], fmt: str) -> None:
        if name in self.files:
            raise ExportError(f"Two exported files would be named {name}.")
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        self.files[name] = {"path": name, "sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload),
                            "format": fmt, "source_versions": sorted(sources)}

    def copy(self, name: str, source: Path, sources: list[int], fmt: str) -> None:
        self.write(name, source.read_bytes(), sources, fmt)


def _json(data) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@dataclass
class _Prepared:
    """A source version's objects, restricted to the chosen labels."""

    objects: np.ndarray  # object ids (dropped objects are 0)
    label_map: np.ndarray  # project label values
    segments: list[dict]  # kept segments, sorted by id


def _prepare(source: Source, labels: dict[int, Label], chosen: set[int]) -> _Prepared:
    objects = read_mask(source.version)
    segments = [s for s in source.version.segments if s["label"] in chosen and s["label"] in labels]
    size = max([int(objects.max()) if objects.size else 0] + [s["id"] for s in source.version.segments]) + 1
    keep = np.zeros(size, dtype=objects.dtype)
    values = np.zeros(size, dtype=np.uint8)
    for segment in segments:
        keep[segment["id"]] = segment["id"]
        values[segment["id"]] = labels[segment["label"]].value
    return _Prepared(keep[objects], values[objects], sorted(segments, key=lambda s: s["id"]))


def build_export(project: Project, settings: dict, sources: list[Source], root: Path,
                 step: Callable[[int | None, str], None] | None = None) -> dict:
    """Write every requested format under `root` plus manifest.json; returns the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    writer = _Writer(root)
    notes: list[str] = []
    all_labels = {label.pk: label for label in Label.objects.filter(project=project)}
    chosen = set(settings["labels"]) or set(all_labels)
    labels = {pk: label for pk, label in all_labels.items() if pk in chosen}
    formats = set(settings["formats"])
    nnunet_cases = _nnunet_cases(sources, notes) if ExportFormat.NNUNET in formats else {}
    nnunet_root = f"nnunet/Dataset{settings['nnunet']['dataset_id']:03d}_{settings['nnunet']['dataset_name']}"
    nnunet_values = {label.value: index for index, label in
                     enumerate(sorted(labels.values(), key=lambda lb: lb.value), start=1)}
    with_ct = bool(nnunet_cases) and all(s.scan.ct is not None for s in nnunet_cases.values())
    if nnunet_cases and not with_ct and any(s.scan.ct is not None for s in nnunet_cases.values()):
        notes.append("nnunet: some scans have no CT, so the dataset has the PET channel only (every case of an "
                     "nnU-Net dataset needs the same channels).")
    object_rows: list[dict] = []
    scan_rows: list[dict] = []
    images_done: set[int] = set()
    unknown_objects: list[dict] = []
    for source in sources:
        scan, version = source.scan, source.version
        pet, ct = scan.pet, scan.ct
        if pet is None:
            notes.append(f"scan {scan.pk}: no PET series; annotation {source.annotation.pk} skipped.")
            continue
        try:
            check_usable(scan)  # nothing leaves from a volume that fails its checksum
        except ScanDamaged as error:
            raise ExportError(str(error)) from None
        prepared = _prepare(source, labels, chosen)
        lost = [seg for seg in version.segments if seg["label"] not in all_labels]
        if lost:  # a label deleted before labels in use were archived: say so, never drop silently
            unknown_objects.extend({"annotation": source.annotation.pk, "version": version.pk,
                                    "object": seg["id"], "label": seg["label"]} for seg in lost)
            notes.append(f"annotation {source.annotation.pk} v{version.number}: objects "
                         f"{[seg['id'] for seg in lost]} have labels {sorted({seg['label'] for seg in lost})} that "
                         "are no longer in the project's label set; they are left out of every file.")
        affine = np.asarray(pet.affine, dtype=np.float64)
        origin = [version.pk]
        folder = f"scan{scan.pk:05d}"
        if ExportFormat.NIFTI in formats:
            if scan.pk not in images_done:
                writer.copy(f"nifti/{folder}/pet.nii.gz", storage.media_path(pet.volume_file), [], "nifti")
                if ct is not None:
                    writer.copy(f"nifti/{folder}/ct_on_pet.nii.gz", storage.media_path(ct_on_pet_file(pet, ct)),
                                [], "nifti")
                images_done.add(scan.pk)
            writer.write(f"nifti/{folder}/{source.stem}_labels.nii.gz",
                         nifti_bytes(prepared.label_map, affine, kind="label"), origin, "nifti")
            writer.write(f"nifti/{folder}/{source.stem}_objects.nii.gz",
                         nifti_bytes(prepared.objects, affine, kind="label"), origin, "nifti")
            writer.write(f"nifti/{folder}/{source.stem}_segments.json", _json(
                [{"object": s["id"], "label": labels[s["label"]].name, "value": labels[s["label"]].value,
                  "voxels": s["voxels"]} for s in prepared.segments]), origin, "nifti")
        if ExportFormat.DICOM_SEG in formats:
            _write_seg(writer, source, pet, prepared, labels, settings, notes)
        if nnunet_cases.get(scan.pk) is source:
            case = folder
            writer.copy(f"{nnunet_root}/imagesTr/{case}_0000.nii.gz", storage.media_path(pet.volume_file), [], "nnunet")
            if with_ct:
                writer.copy(f"{nnunet_root}/imagesTr/{case}_0001.nii.gz",
                            storage.media_path(ct_on_pet_file(pet, ct)), [], "nnunet")
            lookup = np.zeros(256, dtype=np.uint8)
            for value, index in nnunet_values.items():
                lookup[value] = index
            writer.write(f"{nnunet_root}/labelsTr/{case}.nii.gz",
                         nifti_bytes(lookup[prepared.label_map], affine, kind="label"), origin, "nnunet")
        if ExportFormat.CSV in formats:
            _statistics_rows(source, pet, prepared, labels, object_rows, scan_rows)
        if step is not None:
            step(scan.pk, f"exported annotation {source.annotation.pk} of scan {scan.pk}")
    if nnunet_cases:
        channels = {"0": settings["nnunet"]["pet_channel"]} | ({"1": "CT"} if with_ct else {})
        pet_units = sorted({_unit_note(s.scan.pet) for s in nnunet_cases.values() if s.scan.pet is not None})
        if len(pet_units) > 1:
            notes.append(f"nnunet: the cases' PET channel holds different units ({'; '.join(pet_units)}); a model "
                         "trained on them mixes quantities.")
        ordered = sorted(labels.values(), key=lambda lb: lb.value)
        dataset = {"channel_names": channels,
                   "labels": {"background": 0} | {lb.name: nnunet_values[lb.value] for lb in ordered},
                   "numTraining": len(nnunet_cases), "file_ending": ".nii.gz",
                   "name": settings["nnunet"]["dataset_name"],
                   "description": f"Exported by SegAnyPET Studio: PET in {' / '.join(pet_units)} (channel 0), CT "
                                  "in HU resampled onto the PET grid (channel 1, when every case has one); "
                                  "reviewed annotations.",
                   "channel_units": {"0": " / ".join(pet_units)} | ({"1": "HU"} if with_ct else {}),
                   "label_values_in_project": {lb.name: lb.value for lb in ordered}}
        writer.write(f"{nnunet_root}/dataset.json", _json(dataset), sorted(s.version.pk for s in nnunet_cases.values()),
                     "nnunet")
    if ExportFormat.NIFTI in formats and sources:
        table = io.StringIO()
        table.write("value\tname\tkind\tcolor\n")
        for label in sorted(labels.values(), key=lambda lb: lb.value):
            table.write(f"{label.value}\t{label.name}\t{label.kind}\t{label.color}\n")
        writer.write("nifti/label_table.tsv", table.getvalue().encode(), [], "nifti")
    if ExportFormat.CSV in formats:
        _write_statistics(writer, object_rows, scan_rows, [s.version.pk for s in sources])
    selection_note = (f"{len(sources)} annotation versions of {len({s.scan.pk for s in sources})} scans"
                      if sources else f"The filter selected no annotations ({describe_filter(settings)}); "
                                      "the export is empty.")
    if unknown_objects:
        selection_note += (f"; {len(unknown_objects)} objects have labels no longer in the project and were left "
                           "out (see the manifest's unknown_label_objects)")
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "SegAnyPET Studio",
        "project": {"id": project.pk, "name": project.name},
        "settings": settings,
        "selection": {"annotations": len(sources), "scans": len({s.scan.pk for s in sources}), "empty": not sources,
                      "note": selection_note},
        "labels": [{"id": lb.pk, "value": lb.value, "name": lb.name, "kind": lb.kind, "color": lb.color,
                    "nnunet_value": nnunet_values.get(lb.value)} for lb in sorted(labels.values(), key=lambda x: x.value)],
        "sources": [{"annotation": s.annotation.pk, "version": s.version.pk, "version_number": s.version.number,
                     "version_sha256": s.version.sha256, "scan": s.scan.pk, "scan_name": s.scan.name,
                     "state": s.annotation.state, "is_consensus": s.annotation.is_consensus,
                     "pet_units": s.scan.pet.units if s.scan.pet else None,
                     "nnunet_case": f"scan{s.scan.pk:05d}" if nnunet_cases.get(s.scan.pk) is s else None}
                    for s in sources],
        "conventions": {
            "grid": "every image and label map is on the scan's PET grid (NIfTI, RAS affine in the header)",
            "pet": "PET voxels in the units named per source (pet_units: the SUV type, e.g. SUVbw = body-weight "
                   "SUV in g/ml, SUL = Janmahasatian lean-body-mass SUV, SUVbsa in cm2/ml; else raw units)",
            "ct": "CT in HU resampled trilinearly onto the PET grid, -1024 outside its field of view",
            "nnunet_pet_channel": f"'{settings['nnunet']['pet_channel']}': "
                                  f"{PET_CHANNELS[settings['nnunet']['pet_channel']]}; never 'CT'",
            "nnunet_labels": "project label values remapped to consecutive values 1..n in value order "
                             "(nnU-Net needs consecutive labels); see labels[].nnunet_value",
            "nifti_labels": "label maps hold project label values (nifti/label_table.tsv); *_objects hold object "
                            "ids as in the statistics",
        },
        "notes": notes,
        "unknown_label_objects": unknown_objects,
        "files": [writer.files[name] for name in sorted(writer.files)],
    }
    (root / MANIFEST).write_bytes(_json(manifest))
    return manifest


def _nnunet_cases(sources: list[Source], notes: list[str]) -> dict[int, Source]:
    """One training case per scan (two reads of one scan in one dataset would leak across folds): an
    approved consensus first, else the annotation with the lowest id."""
    cases: dict[int, Source] = {}
    for source in sorted(sources, key=lambda s: (s.scan.pk, not s.annotation.is_consensus, s.annotation.pk)):
        if source.scan.pk in cases:
            notes.append(f"nnunet: scan {source.scan.pk} has several annotations; annotation "
                         f"{cases[source.scan.pk].annotation.pk} is its training case, annotation "
                         f"{source.annotation.pk} is in the other formats only.")
            continue
        cases[source.scan.pk] = source
    return cases


def referenced_series(scan: Scan, pet: Series) -> dicom_seg.ReferencedSeries | None:
    """The source PET series as a SEG must reference it, or None for scans not ingested from DICOM."""
    if not pet.sop_instance_uids or not pet.series_instance_uid or not scan.study_instance_uid:
        return None
    return dicom_seg.ReferencedSeries(
        study_instance_uid=scan.study_instance_uid, series_instance_uid=pet.series_instance_uid,
        frame_of_reference_uid=pet.frame_of_reference_uid, sop_instance_uids=list(pet.sop_instance_uids),
        affine=np.asarray(pet.affine, dtype=np.float64), shape=tuple(pet.shape),  # type: ignore[arg-type]
        sop_class_uid=pet.sop_class_uid or dicom_seg.PET_IMAGE_STORAGE, patient_id=scan.patient_id,
        patient_sex=scan.patient_sex, study_date=scan.study_date.strftime("%Y%m%d") if scan.study_date else "")


def _write_seg(writer: _Writer, source: Source, pet: Series, prepared: _Prepared, labels: dict[int, Label],
               settings: dict, notes: list[str]) -> None:
    ref = referenced_series(source.scan, pet)
    if ref is None:
        notes.append(f"dicom_seg: scan {source.scan.pk} was not ingested from DICOM (no source PET instances to "
                     f"reference); annotation {source.annotation.pk} has no SEG.")
        return
    if not prepared.segments:
        notes.append(f"dicom_seg: annotation {source.annotation.pk} has no objects of the chosen labels; no SEG.")
        return
    segments = [dicom_seg.SegSegment(number_in_map=s["id"], label=labels[s["label"]].name,
                                     kind=labels[s["label"]].kind, tracking_id=f"object {s['id']}")
                for s in prepared.segments]
    seed = f"seganypet-seg:{source.version.pk}:{source.version.sha256}:{','.join(map(str, settings['labels']))}"
    seg = dicom_seg.build_seg(ref, prepared.objects, segments, uid_seed=seed,
                              content_datetime=_utc_naive(source.version.created_at),
                              series_description=f"SEG annotation {source.annotation.pk} v{source.version.number}",
                              content_creator=source.version.author.username.replace("^", " ")[:60] + "^")
    writer.write(f"dicom_seg/scan{source.scan.pk:05d}/{source.stem}.dcm", dicom_seg.seg_bytes(seg),
                 [source.version.pk], "dicom_seg")


# suv_* and tlg are in `units` (the SUV type of the PET voxels, in `suv_units`); sul_* are the same in SUL
# (Janmahasatian lean body mass, what PERCIST reports), empty where the header does not allow SUL.
OBJECT_COLUMNS = ["scan", "scan_name", "annotation", "version", "version_number", "object", "label", "label_value",
                  "kind", "units", "suv_units", "voxels", "volume_ml", "suv_max", "suv_mean", "suv_peak", "mtv_ml",
                  "tlg", "sul_max", "sul_mean", "sul_peak", "sul_tlg", "hu_mean", "suv_max_index", "suv_peak_index"]
SCAN_COLUMNS = ["scan", "scan_name", "annotation", "version", "version_number", "units", "suv_units", "lesion_count",
                "total_mtv_ml", "total_tlg", "objects"]


def _statistics_rows(source: Source, pet: Series, prepared: _Prepared, labels: dict[int, Label],
                     object_rows: list[dict], scan_rows: list[dict]) -> None:
    stats = ensure_for_version(source.version)
    if stats.status != "done":
        raise ExportError(f"Statistics of annotation {source.annotation.pk} v{source.version.number} failed: "
                          f"{stats.message}")
    kept = {s["id"] for s in prepared.segments}
    base = {"scan": source.scan.pk, "scan_name": source.scan.name, "annotation": source.annotation.pk,
            "version": source.version.pk, "version_number": source.version.number, "units": stats.units,
            "suv_units": SUV_TYPES.get(stats.units, {}).get("units", stats.units)}
    rows = []
    for item in stats.object_stats:
        if item["id"] not in kept:
            continue
        rows.append(base | {"object": item["id"], "label": item["label_name"], "label_value": item["label_value"],
                            "kind": item["kind"]} | {k: item[k] for k in OBJECT_COLUMNS if k in item and k not in base
                                                    and k not in ("label",)}
                    | {f"sul_{k.removeprefix('suv_')}": v for k, v in _in_sul(item, stats.units).items()})
    object_rows.extend(rows)
    lesions = [r for r in rows if r["kind"] == LabelKind.LESION]
    scan_rows.append(base | {"lesion_count": len(lesions),
                             "total_mtv_ml": round(sum(r["mtv_ml"] for r in lesions), 6),
                             "total_tlg": round(sum(r["tlg"] for r in lesions), 6), "objects": len(rows)})


def _in_sul(item: dict, units: str) -> dict:
    if units == "SUL":
        return {k: item[k] for k in ("suv_max", "suv_mean", "suv_peak", "tlg")}
    return (item.get("by_type") or {}).get("SUL", {})


def _unit_note(pet: Series) -> str:
    return f"{pet.units} ({SUV_TYPES[pet.units]['units']})" if pet.units in SUV_TYPES else pet.units or "unknown units"


def _csv(rows: list[dict], columns: list[str]) -> bytes:
    buffer = io.StringIO()
    out = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    out.writeheader()
    for row in rows:
        out.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v))
                      for k, v in row.items()})
    return buffer.getvalue().encode()


def _write_statistics(writer: _Writer, object_rows: list[dict], scan_rows: list[dict], versions: list[int]) -> None:
    writer.write("csv/objects.csv", _csv(object_rows, OBJECT_COLUMNS), versions, "csv")
    writer.write("csv/scans.csv", _csv(scan_rows, SCAN_COLUMNS), versions, "csv")
    writer.write("csv/statistics.json", _json({"objects": object_rows, "scans": scan_rows}), versions, "csv")


# --- import ---------------------------------------------------------------------------------------


def import_label_file(scan: Scan, user, payload: bytes, filename: str = "") -> AnnotationVersion:
    """A DICOM SEG or NIfTI label map of this scan becomes a new draft version of the caller's annotation."""
    pet = scan.pet
    if pet is None:
        raise MaskError("The scan has no PET series.")
    labels = {label.value: label for label in Label.objects.filter(project_id=scan.project_id)}
    if len(payload) > 132 and payload[128:132] == b"DICM":
        kind, label_map = "DICOM SEG", _label_map_from_seg(scan, pet, payload, labels)
    else:
        kind = "NIfTI label map"
        label_map, affine = read_uploaded_mask(payload, tuple(pet.shape))
        if tuple(label_map.shape) != tuple(pet.shape) or not np.allclose(affine, np.asarray(pet.affine), atol=1e-3):
            raise MaskError(f"The label map's grid {tuple(label_map.shape)} is not this scan's PET grid "
                            f"{tuple(pet.shape)} (shape or affine differ).")
        unknown = sorted(int(v) for v in np.unique(label_map) if v and int(v) not in labels)
        if unknown:
            raise MaskError(f"The label map holds values {unknown[:10]} that are not in the project's label set "
                            f"({', '.join(f'{v}={lb.name}' for v, lb in sorted(labels.items()))}).")
    if not label_map.any():
        raise MaskError("The file holds no labelled voxels.")
    lesion_values = {v for v, label in labels.items() if label.kind == LabelKind.LESION}
    objects, pairs = objects_from_label_map(label_map, lesion_values)
    annotation, _ = open_annotation(scan, user)
    return save_version(annotation, user, base_version_id=annotation.current_version_id, object_map=objects,
                        segments=[{"id": i, "label": labels[v].pk} for i, v in pairs], source="imported",
                        message=f"imported {kind} {Path(filename).name}"[:500])


def _label_map_from_seg(scan: Scan, pet: Series, payload: bytes, labels: dict[int, Label]) -> np.ndarray:
    ref = referenced_series(scan, pet)
    if ref is None:
        raise MaskError("This scan was not ingested from DICOM, so a DICOM SEG cannot be placed on it; "
                        "upload a NIfTI label map instead.")
    try:
        found = dicom_seg.read_seg(payload, ref)
    except dicom_seg.SegError as error:
        raise MaskError(str(error)) from None
    by_name = {label.name.casefold(): label for label in labels.values()}
    unknown = sorted({name for name in found.labels.values() if name.casefold() not in by_name})
    if unknown:
        raise MaskError(f"The SEG's segments {unknown[:10]} match no label of this project (by name: "
                        f"{', '.join(sorted(lb.name for lb in labels.values()))}).")
    lookup = np.zeros(max(found.labels) + 1, dtype=np.uint8)
    for number, name in found.labels.items():
        lookup[number] = by_name[name.casefold()].value
    return lookup[found.segment_map]
