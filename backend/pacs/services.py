"""PACS work: search a source, import a study into a scan (resumable), push approved masks as SEG.

Views, the management command and the Celery tasks call these functions.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, date, timedelta
from pathlib import Path

import numpy as np
import pydicom
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from pydicom.dataset import Dataset

from backend.annotations.models import Annotation, AnnotationState, AnnotationVersion
from backend.annotations.services import read_mask
from backend.exports import dicom_seg
from backend.exports.services import referenced_series
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan, ScanStatus
from backend.imaging.uploads import discard, new_staging_dir, staging_root
from backend.interactive.events import broadcast_to_scan
from backend.projects.models import Label, Project

from .dicomweb import (
    ACCESSION,
    MODALITIES_IN_STUDY,
    PATIENT_ID,
    PATIENT_NAME,
    STUDY_DATE,
    STUDY_DESCRIPTION,
    STUDY_INSTANCES,
    STUDY_SERIES,
    STUDY_UID,
    PacsClient,
    PacsError,
    PacsUnavailable,
    SeriesInfo,
    tag,
    tag_values,
)
from .models import DicomWebSource, ImportStatus, PacsImport, PushStatus, SegPush

log = logging.getLogger(__name__)

# Few missing instances are fetched one by one on resume; more than this re-streams the series and skips
# what is already staged (one streamed response is ~10x faster than per-instance requests).
PER_INSTANCE_RESUME_LIMIT = 32
ABANDONED_AFTER = timedelta(minutes=15)  # an unfinished import silent this long may be resumed
PROGRESS_EVERY_S = 0.5  # progress to the database and the scan's WebSocket at most this often


class ImportRefused(PacsError):
    """The study or series cannot become a scan (no PET, a non-PET or mixed-patient series)."""

    status_code = 400
    code = "invalid"


class AlreadyImported(PacsError):
    status_code = 409
    code = "already_imported"


class PushRefused(PacsError):
    """A push that cannot be made (not approved, no source, not from DICOM)."""

    status_code = 409
    code = "push_refused"


# --- search -------------------------------------------------------------------------------------


def _name_pattern(text: str) -> str:
    """Words of a name as one wildcard pattern ('smith jo' -> '*smith*jo*'); PN components match too."""
    words = re.findall(r"[A-Za-z0-9]+", text)
    return "*" + "*".join(words) + "*" if words else ""


def _date(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def search_studies(source: DicomWebSource, *, patient_id: str = "", patient_name: str = "",
                   date_from: date | None = None, date_to: date | None = None, modality: str = "PT",
                   limit: int = 50) -> list[dict]:
    """Studies of the source matching the filters, each marked with the scan it was imported into."""
    filters: dict[str, str] = {}
    if patient_id:
        filters["PatientID"] = patient_id
    if _name_pattern(patient_name):
        filters["PatientName"] = _name_pattern(patient_name)
    if date_from or date_to:
        filters["StudyDate"] = f"{_date(date_from)}-{_date(date_to)}"
    if modality:
        filters["ModalitiesInStudy"] = modality
    found = PacsClient(source).search_studies(filters, limit=limit)
    imports = {i.study_instance_uid: i for i in PacsImport.objects.filter(project=source.project)}
    uploaded = dict(Scan.objects.filter(project=source.project).exclude(status=ScanStatus.FAILED)
                    .exclude(study_instance_uid="").values_list("study_instance_uid", "pk"))
    studies = []
    for item in found:
        uid = str(tag(item, STUDY_UID))
        if not uid:
            continue
        existing = imports.get(uid)
        modalities = [str(m) for m in tag_values(item, MODALITIES_IN_STUDY)]
        if modality and modalities and modality not in modalities:
            continue  # a PACS that ignores ModalitiesInStudy must not offer studies without PET
        studies.append({
            "study_instance_uid": uid, "patient_id": str(tag(item, PATIENT_ID)),
            "patient_name": str(tag(item, PATIENT_NAME)), "study_date": str(tag(item, STUDY_DATE)),
            "study_description": str(tag(item, STUDY_DESCRIPTION)), "accession_number": str(tag(item, ACCESSION)),
            "modalities": modalities, "series_count": int(tag(item, STUDY_SERIES, 0) or 0),
            "instance_count": int(tag(item, STUDY_INSTANCES, 0) or 0),
            "import_id": existing.pk if existing else None,
            "import_status": existing.status if existing else None,
            "scan_id": existing.scan_id if existing else uploaded.get(uid),
        })
    return studies


# --- import -------------------------------------------------------------------------------------


def choose_series(series: list[SeriesInfo], study_uid: str, wanted: list[str] | None = None) -> list[SeriesInfo]:
    """The PET series (exactly one) and the largest CT, or the series the caller named (checked)."""
    counts: dict[str, int] = {}
    for item in series:
        counts[item.uid] = counts.get(item.uid, 0) + 1
    split = [uid for uid, count in counts.items() if count > 1]
    if split:
        # A PACS indexes by patient first (Orthanc does): one series UID under two patients shows up twice.
        raise ImportRefused(f"Series {split[0]} is listed {counts[split[0]]} times by the PACS: its instances belong "
                            "to different patients (a mixed-patient series); nothing was imported.")
    by_uid = {s.uid: s for s in series}
    if wanted:
        unknown = [uid for uid in wanted if uid not in by_uid]
        if unknown:
            raise ImportRefused(f"The study has no series {', '.join(unknown)}.")
        other = [by_uid[uid] for uid in wanted if by_uid[uid].modality not in ("PT", "CT")]
        if other:
            raise ImportRefused("Only PET and CT series can be imported; "
                                + ", ".join(f"{s.uid} is {s.modality or 'of no modality'}" for s in other) + ".")
        series = [by_uid[uid] for uid in dict.fromkeys(wanted)]
    pets = [s for s in series if s.modality == "PT"]
    if not pets:
        found = ", ".join(f"{s.modality or '?'} '{s.description}'" for s in series) or "none"
        raise ImportRefused(f"Study {study_uid} has no PET series (series found: {found}); nothing was imported.")
    if len(pets) > 1:
        listed = "; ".join(f"{s.uid} '{s.description}' ({s.instances} instances)" for s in pets)
        raise ImportRefused(f"Study {study_uid} has {len(pets)} PET series ({listed}): name the one to import.")
    cts = [s for s in series if s.modality == "CT"]
    chosen = [pets[0]]
    if cts:
        chosen.append(max(cts, key=lambda s: s.instances) if not wanted else cts[0])
    return chosen


def recognised_scan(project: Project, study_uid: str) -> Scan | None:
    """A scan of the project that already holds this study (imported, or uploaded as files)."""
    return (Scan.objects.filter(project=project, study_instance_uid=study_uid)
            .exclude(status=ScanStatus.FAILED).first())


def start_import(source: DicomWebSource, study_uid: str, user, series_uids: list[str] | None = None) -> PacsImport:
    """Check the study on the PACS and create its scan and import record (the retrieve runs later).

    A failed (or abandoned) import of the same study is resumed instead; a study already in the project is
    refused. The PACS is asked before any row is written, and outside a transaction."""
    study_uid = study_uid.strip()
    project = source.project
    existing = PacsImport.objects.filter(project=project, study_instance_uid=study_uid).first()
    if existing is not None:
        if existing.status == ImportStatus.DONE:
            raise AlreadyImported(f"This study is already imported (scan {existing.scan_id}).",
                                  scan=existing.scan_id, import_id=existing.pk)
        return prepare_resume(existing)
    scan = recognised_scan(project, study_uid)
    if scan is not None:
        raise AlreadyImported(f"This study is already in the project as scan {scan.pk} ('{scan.name}').",
                              scan=scan.pk)
    client = PacsClient(source)
    study = client.find_study(study_uid)
    if study is None:
        raise ImportRefused(f"The PACS '{source.name}' has no study {study_uid}.")
    chosen = choose_series(client.list_series(study_uid), study_uid, series_uids)
    name = str(tag(study, ACCESSION)) or str(tag(study, STUDY_DESCRIPTION)) or f"PACS {study_uid[-12:]}"
    try:
        with transaction.atomic():
            scan = Scan.objects.create(project=project, name=name[:200], created_by=user,
                                       status=ScanStatus.PENDING,
                                       status_message=f"Waiting for the retrieve from {source.name}.")
            return PacsImport.objects.create(
                project=project, source=source, scan=scan, study_instance_uid=study_uid,
                series=[s.to_dict() for s in chosen], patient_id=str(tag(study, PATIENT_ID))[:64],
                patient_name=str(tag(study, PATIENT_NAME))[:200], accession_number=str(tag(study, ACCESSION))[:64],
                instances_total=sum(s.instances for s in chosen), created_by=user)
    except IntegrityError:  # the same study started by someone else a moment ago
        raise AlreadyImported("This study is being imported by someone else right now.") from None


def prepare_resume(record: PacsImport) -> PacsImport:
    """Mark a failed or abandoned import to run again; exactly one of concurrent callers wins."""
    resumable = Q(status=ImportStatus.FAILED) | (
        Q(status__in=[ImportStatus.PENDING, ImportStatus.RETRIEVING, ImportStatus.INGESTING])
        & Q(updated_at__lt=timezone.now() - ABANDONED_AFTER))
    claimed = PacsImport.objects.filter(resumable, pk=record.pk).update(
        status=ImportStatus.PENDING, message="Waiting to resume.", updated_at=timezone.now())
    if not claimed:
        record.refresh_from_db()
        state = "imported" if record.status == ImportStatus.DONE else "being imported"
        raise AlreadyImported(f"This study is already {state} (scan {record.scan_id}); only a failed import is "
                              "resumed.", scan=record.scan_id, import_id=record.pk)
    Scan.objects.filter(pk=record.scan_id).update(status=ScanStatus.PENDING, status_message="Waiting to resume the "
                                                  "retrieve from the PACS.")
    record.refresh_from_db()
    return record


def _staging(record: PacsImport) -> Path:
    path = Path(record.staging_dir) if record.staging_dir else None
    if path is None or not path.resolve().is_relative_to(staging_root().resolve()) or not path.is_dir():
        path = new_staging_dir()
        record.staging_dir = str(path)
        record.save(update_fields=["staging_dir", "updated_at"])
    return path


def _staged_uids(folder: Path) -> set[str]:
    return {p.name[:-4] for p in folder.glob("*.dcm")}


def _header(payload: bytes) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(payload), stop_before_pixels=True)
    except Exception as error:  # noqa: BLE001 - pydicom raises many types for bad input
        raise ImportRefused(f"The PACS sent an instance that is not readable DICOM ({error}).") from None


def _write_instance(folder: Path, uid: str, payload: bytes | Dataset) -> None:
    """Under its SOP Instance UID, atomically: a retrieve cut off mid-file leaves no half instance."""
    if not re.fullmatch(r"[0-9.]{1,64}", uid):
        raise ImportRefused(f"The PACS sent an instance with an invalid SOP Instance UID {uid[:70]!r}.")
    partial = folder / f".{uid}.part"
    if isinstance(payload, Dataset):
        pydicom.dcmwrite(partial, payload, enforce_file_format=True)
    else:
        partial.write_bytes(payload)
    os.replace(partial, folder / f"{uid}.dcm")


def check_instance(dataset: Dataset, series: dict, patient_id: str, study_uid: str) -> None:
    """What the PACS sent is what the series promised: its modality, this study and this patient."""
    modality = str(dataset.get("Modality", ""))
    if modality != series["modality"]:
        raise ImportRefused(f"Series {series['uid']} was listed as {series['modality']} but holds a {modality or 'non-image'} "
                            "instance; nothing was imported.")
    if str(dataset.get("StudyInstanceUID", "")) != study_uid:
        raise ImportRefused(f"Series {series['uid']} holds an instance of another study; nothing was imported.")
    if patient_id and str(dataset.get("PatientID", "")) != patient_id:
        raise ImportRefused(f"Series {series['uid']} mixes patients ({patient_id} and "
                            f"{dataset.get('PatientID', '') or 'none'}); nothing was imported.")


def _progress(record: PacsImport, retrieved: int, message: str) -> None:
    total = max(record.instances_total, 1)
    fraction = min(retrieved / total, 1.0)
    PacsImport.objects.filter(pk=record.pk).update(instances_retrieved=retrieved, updated_at=timezone.now())
    Scan.objects.filter(pk=record.scan_id).update(ingest_progress=round(fraction * 0.5, 3))
    broadcast_to_scan(record.scan_id, {"type": "progress", "task": "pacs_import", "scan": record.scan_id,
                                       "import": record.pk, "fraction": round(fraction, 3), "message": message,
                                       "retrieved": retrieved, "total": record.instances_total})


def retrieve(record: PacsImport, client: PacsClient, folder: Path,
             on_instance: Callable[[int], None] | None = None) -> int:
    """Bring every instance of the chosen series into `folder`, skipping those already there.

    A series not started yet is streamed whole (one WADO-RS response). Only when some instances are already
    staged (a resume) does QIDO-RS list the series' instances, so that just the missing ones are fetched;
    listing costs the PACS a look at every instance, which a first import does not need to pay."""
    staged = _staged_uids(folder)
    retrieved = len(staged)
    last_report = 0.0
    for series in record.series:
        if series.get("complete"):
            continue
        wanted: list[str] | None = None
        missing: list[str] = []
        if staged:
            wanted = client.list_instances(record.study_instance_uid, series["uid"])
            missing = [uid for uid in wanted if uid not in staged]
        seen: set[str] = set()

        def take(received: bytes | Dataset, series: dict = series, seen: set[str] = seen) -> None:
            nonlocal retrieved, last_report
            dataset = received if isinstance(received, Dataset) else _header(received)
            uid = str(dataset.get("SOPInstanceUID", ""))
            seen.add(uid)
            if uid in staged:
                return  # already kept by an earlier attempt, or sent twice: stored once
            check_instance(dataset, series, record.patient_id, record.study_instance_uid)
            _write_instance(folder, uid, received)
            staged.add(uid)
            retrieved += 1
            if on_instance is not None:
                on_instance(retrieved)
            if time.monotonic() - last_report >= PROGRESS_EVERY_S:
                last_report = time.monotonic()
                _progress(record, retrieved, f"retrieved {retrieved} of {record.instances_total} instances")

        if wanted is not None and not missing:
            pass  # every instance is already staged
        elif wanted is not None and len(missing) <= PER_INSTANCE_RESUME_LIMIT and len(missing) < len(wanted):
            for uid in missing:
                take(client.retrieve_instance(record.study_instance_uid, series["uid"], uid))
        else:
            with closing(client.iter_series(record.study_instance_uid, series["uid"])) as payloads:
                for payload in payloads:
                    take(payload)
        expected = len(wanted) if wanted is not None else int(series.get("instances") or 0)
        have = len(set(wanted) & staged) if wanted is not None else len(seen)
        if have < expected:
            raise PacsUnavailable(f"The PACS sent {have} of the {expected} instances of series {series['uid']} "
                                  "before the answer ended.")
        series["complete"] = True
        PacsImport.objects.filter(pk=record.pk).update(series=record.series)
    _progress(record, retrieved, f"retrieved {retrieved} instances")
    return retrieved


def _fail(record: PacsImport, message: str, *, resumable: bool) -> None:
    record.status, record.message, record.resumable = ImportStatus.FAILED, message, resumable
    record.save(update_fields=["status", "message", "resumable", "updated_at"])
    if not resumable and record.staging_dir:
        discard(record.staging_dir)
        record.staging_dir = ""
        record.save(update_fields=["staging_dir"])
    Scan.objects.filter(pk=record.scan_id).update(status=ScanStatus.FAILED, status_message=message, ingest_progress=0)
    broadcast_to_scan(record.scan_id, {"type": "progress", "task": "pacs_import", "scan": record.scan_id,
                                       "import": record.pk, "fraction": 0, "error": message,
                                       "resumable": resumable})


def run_import(record: PacsImport, on_instance: Callable[[int], None] | None = None) -> PacsImport:
    """Retrieve and ingest; on failure the import is failed with a message (resumable when the PACS was the
    problem) and the scan holds no series. Never raises for PACS or content faults."""
    record.refresh_from_db()
    if record.status == ImportStatus.DONE:
        return record
    record.status, record.attempts, record.message = ImportStatus.RETRIEVING, record.attempts + 1, ""
    record.save(update_fields=["status", "attempts", "message", "updated_at"])
    Scan.objects.filter(pk=record.scan_id).update(status=ScanStatus.PENDING,
                                                  status_message=f"Retrieving from {record.source.name}.")
    folder = _staging(record)
    try:
        retrieved = retrieve(record, PacsClient(record.source), folder, on_instance)
    except PacsError as error:
        kept = len(_staged_uids(folder))
        resumable = error.retryable
        suffix = (f" {kept} of {record.instances_total} instances were retrieved and are kept: resume the import to "
                  "fetch the rest." if resumable else "")
        _fail(record, f"{error.message}{suffix}", resumable=resumable)
        return record
    except Exception:
        log.exception("PACS import %s failed", record.pk)
        _fail(record, "The import failed unexpectedly; nothing was imported. Resume it to try again.", resumable=True)
        return record
    record.status = ImportStatus.INGESTING
    record.save(update_fields=["status", "updated_at"])
    scan = ingest_dicom(Scan.objects.get(pk=record.scan_id), sorted(folder.glob("*.dcm")))
    if scan.status == ScanStatus.FAILED:
        _fail(record, scan.status_message, resumable=False)
        return record
    record.status, record.resumable = ImportStatus.DONE, False
    record.instances_retrieved = retrieved
    record.message = f"Imported {retrieved} instances from {record.source.name}."
    record.save(update_fields=["status", "resumable", "instances_retrieved", "message", "updated_at"])
    discard(folder)
    PacsImport.objects.filter(pk=record.pk).update(staging_dir="")
    record.staging_dir = ""
    return record


# --- push ---------------------------------------------------------------------------------------


def source_of_scan(scan: Scan) -> DicomWebSource | None:
    record = PacsImport.objects.filter(scan=scan).select_related("source").first()
    return record.source if record else None


def request_push(annotation: Annotation, user) -> SegPush:
    """Record a push of the annotation's approved version to its scan's source (pending)."""
    if annotation.state != AnnotationState.APPROVED or annotation.current_version_id is None:
        raise PushRefused("Only approved annotations are sent to the PACS.")
    source = source_of_scan(annotation.scan)
    if source is None:
        raise PushRefused("This scan was not imported from a PACS, so there is no PACS to send it to.")
    if not source.stow_url:
        raise PushRefused(f"The source '{source.name}' has no STOW-RS URL.")
    with transaction.atomic():
        push, created = SegPush.objects.select_for_update().get_or_create(
            version_id=annotation.current_version_id, source=source,
            defaults={"project_id": annotation.project_id, "annotation": annotation, "requested_by": user})
        if not created:
            if push.status == PushStatus.SENT:
                raise PushRefused(f"Version {push.version.number} was already sent to {source.name}.",
                                  push=push.pk)
            push.status, push.next_attempt_at, push.requested_by = PushStatus.PENDING, None, user
            push.save(update_fields=["status", "next_attempt_at", "requested_by", "updated_at"])
    return push


def retry_push(push: SegPush, user) -> SegPush:
    with transaction.atomic():
        push = SegPush.objects.select_for_update().select_related("version").get(pk=push.pk)
        if push.status == PushStatus.SENT:
            raise PushRefused(f"Version {push.version.number} was already sent.", push=push.pk)
        push.status, push.next_attempt_at, push.requested_by = PushStatus.PENDING, None, user
        push.save(update_fields=["status", "next_attempt_at", "requested_by", "updated_at"])
    return push


def build_seg_for(version: AnnotationVersion, record: PacsImport | None) -> Dataset:
    scan = version.annotation.scan
    pet = scan.pet
    ref = referenced_series(scan, pet) if pet is not None else None
    if ref is None:
        raise PushRefused("The scan's PET was not ingested from DICOM instances, so a SEG cannot reference them.")
    if record is not None:
        ref.patient_name, ref.accession_number = record.patient_name, record.accession_number
    labels = {label.pk: label for label in Label.objects.filter(project_id=version.annotation.project_id)}
    segments = [dicom_seg.SegSegment(number_in_map=s["id"], label=labels[s["label"]].name,
                                     kind=labels[s["label"]].kind, tracking_id=f"object {s['id']}")
                for s in version.segments if s["label"] in labels and s.get("voxels", 1) > 0]
    objects = read_mask(version)
    keep = np.zeros(max([int(objects.max()) if objects.size else 0] + [s.number_in_map for s in segments]) + 1,
                    dtype=objects.dtype)
    for segment in segments:
        keep[segment.number_in_map] = segment.number_in_map
    created = version.created_at.astimezone(UTC).replace(tzinfo=None)
    return dicom_seg.build_seg(
        ref, keep[objects], segments, uid_seed=f"seganypet-pacs:{version.pk}:{version.sha256}",
        content_datetime=created, series_description=f"SEG annotation {version.annotation_id} v{version.number}",
        content_creator=version.author.username.replace("^", " ")[:60] + "^")


def send_push(push: SegPush) -> SegPush:
    """Build the SEG and store it with STOW-RS; the outcome is recorded on the push, never raised."""
    push = SegPush.objects.select_related("version__annotation__scan", "source", "version__author").get(pk=push.pk)
    if push.status == PushStatus.SENT:
        return push
    push.attempts += 1
    try:
        record = PacsImport.objects.filter(scan=push.version.annotation.scan).first()
        seg = build_seg_for(push.version, record)
        PacsClient(push.source).store(seg)
    except (PacsError, dicom_seg.SegError) as error:
        retryable = isinstance(error, PacsError) and error.retryable
        push.status = PushStatus.FAILED
        message = error.message if isinstance(error, PacsError) else str(error)
        delays = list(settings.PACS_PUSH_RETRY_DELAYS_S)
        delay = delays[push.attempts - 1] if retryable and push.attempts <= len(delays) else None
        push.next_attempt_at = timezone.now() + timedelta(seconds=delay) if delay else None
        push.message = message + (f" Retrying automatically in {delay} s." if delay else " Retry by hand.")
        push.save(update_fields=["status", "attempts", "message", "next_attempt_at", "updated_at"])
        return push
    push.status, push.message, push.next_attempt_at = PushStatus.SENT, "", None
    push.series_instance_uid, push.sop_instance_uid = str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID)
    push.sent_at = timezone.now()
    push.save()
    return push
