"""Turn uploaded DICOM or NIfTI files into a ready scan: one canonical volume per series.

All or nothing: when anything fails, the scan is marked failed with a readable message,
and no series rows or volume files are left behind.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backend.interactive.events import broadcast_to_scan

from . import storage
from .dicom_series import (
    LoadedSeries,
    SeriesError,
    SeriesGroup,
    group_by_series,
    load_series,
    read_dicom_files,
)
from .models import Modality, Scan, ScanStatus, Series
from .nifti_io import NiftiError, read_nifti
from .resample import resample_to_grid
from .suv import (
    SUV_TYPES,
    SuvHeader,
    SuvOverrides,
    SuvResult,
    compute_suv_factors,
    compute_suv_from_parameters,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
PET_FILE, CT_FILE, PREVIEW_FILE = "pet.nii.gz", "ct.nii.gz", "pet_mip.png"
SUV_HEADERS_FILE, IMPORTED_LABELS_FILE = "pet_suv_headers.json", "imported_labels.nii.gz"


class IngestError(ValueError):
    """Input that cannot become a scan; the message is for the user."""


@dataclass
class StudyPlan:
    study_instance_uid: str
    pet: SeriesGroup
    ct: SeriesGroup | None
    notes: list[str] = field(default_factory=list)


def plan_studies(groups: Sequence[SeriesGroup]) -> list[StudyPlan]:
    """One plan per study that has a PET series; its CT is the one sharing the PET's frame of reference."""
    by_study: dict[str, list[SeriesGroup]] = defaultdict(list)
    for group in groups:
        by_study[group.study_instance_uid].append(group)
    plans = []
    for study_uid, study_groups in by_study.items():
        pets = [g for g in study_groups if g.modality == "PT"]
        cts = [g for g in study_groups if g.modality == "CT"]
        if not pets:
            continue
        if len(pets) > 1:
            listed = "; ".join(f"'{g.description}' ({len(g.files)} files)" for g in pets)
            raise IngestError(f"Study {study_uid} holds {len(pets)} PET series ({listed}): upload one at a time.")
        plans.append(StudyPlan(study_uid, pets[0], _matching_ct(pets[0], cts)))
    return plans


def _frame_of_reference(group: SeriesGroup) -> str:
    return str(group.files[0].dataset.get("FrameOfReferenceUID", "") or "")


def _matching_ct(pet: SeriesGroup, cts: Sequence[SeriesGroup]) -> SeriesGroup | None:
    if not cts:
        return None
    same_frame = [g for g in cts if _frame_of_reference(g) and _frame_of_reference(g) == _frame_of_reference(pet)]
    return max(same_frame or cts, key=lambda g: len(g.files))


def _report(scan: Scan, progress: ProgressCallback | None, fraction: float, message: str) -> None:
    Scan.objects.filter(pk=scan.pk).update(ingest_progress=fraction, ingest_heartbeat_at=timezone.now())
    broadcast_to_scan(scan.pk, {"type": "progress", "task": "ingest", "scan": scan.pk,
                                "fraction": round(fraction, 3), "message": message})
    if progress is not None:
        progress(fraction, message)


# --- DICOM ---------------------------------------------------------------------------------


def ingest_dicom(scan: Scan, paths: Sequence[Path], progress: ProgressCallback | None = None) -> Scan:
    """Ingest one study (PET and optionally CT) from DICOM files into `scan`."""
    return all_or_nothing(scan, lambda: _ingest_dicom(scan, paths, progress))


def _ingest_dicom(scan: Scan, paths: Sequence[Path], progress: ProgressCallback | None) -> None:
    _report(scan, progress, 0.02, f"reading {len(paths)} files")
    read = read_dicom_files(paths)
    plans = plan_studies(group_by_series(read.files))
    if not plans:
        skipped = "; ".join(f"{Path(s.name).name}: {s.reason}" for s in read.skipped[:3])
        raise IngestError("No PET series found in the upload" + (f" ({skipped})" if skipped else "") + ".")
    if len(plans) > 1:
        raise IngestError(f"The upload holds {len(plans)} PET studies; upload one study per scan "
                          "(or use the import_scans command for folders of many studies).")
    store_dicom_study(scan, plans[0], progress)


def store_dicom_study(scan: Scan, plan: StudyPlan, progress: ProgressCallback | None = None) -> None:
    _report(scan, progress, 0.2, "checking and loading the PET series")
    pet = _load(plan.pet, "PET")
    check_finite(pet.array, "PET", pet.file_names)
    suv = compute_suv_factors(pet.slice_headers)
    ct = None
    if plan.ct is not None:
        _report(scan, progress, 0.5, "loading the CT series")
        ct = _load(plan.ct, "CT")
    _report(scan, progress, 0.7, "writing volumes")
    with transaction.atomic():
        _fill_scan_metadata(scan, pet)
        # The source instances (array slice order) are what a DICOM SEG export references.
        instances = {"sop_class_uid": str(plan.pet.files[0].dataset.get("SOPClassUID", ""))[:64],
                     "sop_instance_uids": list(pet.sop_instance_uids)}
        pet_series = _store_pet(scan, pet.array, pet.affine, pet.spacing, suv, series_metadata(pet) | instances)
        if suv.status == "needs_parameters":
            storage.write_json(_rel(scan, SUV_HEADERS_FILE), [h.to_dict() for h in pet.slice_headers])
        if ct is not None:
            _store_series(scan, Modality.CT, ct.array, ct.affine, ct.spacing, units="HU", raw_units="HU",
                          **series_metadata(ct))
        _finish(scan, pet_series, suv, warnings=pet.warnings + (ct.warnings if ct else []))
    _report(scan, progress, 1.0, scan.get_status_display())


def _load(group: SeriesGroup, what: str) -> LoadedSeries:
    try:
        return load_series(group.files)
    except SeriesError as error:
        raise IngestError(f"The {what} series cannot be used: {error}") from None


def series_metadata(loaded: LoadedSeries) -> dict:
    meta = loaded.metadata
    return {
        "series_instance_uid": loaded.series_instance_uid,
        "frame_of_reference_uid": meta.frame_of_reference_uid,
        "description": meta.series_description[:200],
        "manufacturer": meta.manufacturer[:100],
    }


def _fill_scan_metadata(scan: Scan, pet: LoadedSeries) -> None:
    meta = pet.metadata
    scan.patient_id = meta.patient_id[:64]
    scan.patient_sex = (meta.patient_sex or "")[:1]
    scan.patient_age = meta.patient_age[:8]
    scan.patient_weight_kg = meta.patient_weight_kg
    scan.patient_height_m = meta.patient_size_m
    scan.study_instance_uid = meta.study_instance_uid
    scan.study_date = _dicom_date(meta.study_date)
    scan.study_description = meta.study_description[:200]
    scan.tracer = scan.tracer or meta.tracer[:64]
    if not scan.name:
        scan.name = (meta.accession_number or meta.study_description or f"Scan {scan.pk}")[:200]


def _dicom_date(value: str) -> date | None:
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8])) if len(value) >= 8 else None
    except ValueError:
        return None


# --- NIfTI ---------------------------------------------------------------------------------


def ingest_nifti(scan: Scan, pet_path: Path, pet_units: str, ct_path: Path | None = None,
                 labels_path: Path | None = None, progress: ProgressCallback | None = None) -> Scan:
    """PET already in SUV ("SUV") or in Bq/ml ("BQML", SUV parameters supplied later)."""
    return all_or_nothing(scan, lambda: _ingest_nifti(scan, pet_path, pet_units, ct_path, labels_path, progress))


def _ingest_nifti(scan: Scan, pet_path: Path, pet_units: str, ct_path: Path | None, labels_path: Path | None,
                  progress: ProgressCallback | None) -> None:
    _report(scan, progress, 0.1, "reading the PET image")
    pet = _read_nifti(pet_path, "PET", "image")
    check_finite(pet.array, "PET")
    ct = _read_nifti(ct_path, "CT", "image") if ct_path else None
    labels = _read_nifti(labels_path, "label map", "label") if labels_path else None
    if labels is not None and (labels.shape != pet.shape or not np.allclose(labels.affine, pet.affine, atol=1e-3)):
        raise IngestError(f"The label map's grid {labels.shape} does not match the PET grid {pet.shape}.")
    if pet_units == "SUV":
        no_metrics = "a NIfTI upload carries no patient weight, height or sex to convert SUVbw into this type"
        suv = SuvResult(status="ok", reason="supplied in SUV (NIfTI)", units="g/ml", raw_units="SUV",
                        rule="values taken as body-weight SUV, as declared at upload", suv_type="SUVbw",
                        conversions={"SUVbw": 1.0},
                        unavailable={name: no_metrics for name in SUV_TYPES if name != "SUVbw"})
    elif pet_units == "BQML":
        suv = SuvResult(status="needs_parameters", reason="NIfTI in Bq/ml: weight, dose and times are needed",
                        units="BQML", raw_units="BQML", rule="no SUV yet",
                        missing=("patient weight", "injected dose", "injection time", "scan time", "half-life"))
    else:
        raise IngestError(f"Unknown PET units {pet_units!r}: say 'SUV' or 'BQML'.")
    _report(scan, progress, 0.6, "writing volumes")
    with transaction.atomic():
        pet_series = _store_pet(scan, pet.array, pet.affine, pet.spacing, suv, {"description": pet.description[:200]})
        if ct is not None:
            _store_series(scan, Modality.CT, ct.array, ct.affine, ct.spacing, units="HU", raw_units="HU")
        if labels is not None:
            storage.write_volume(_rel(scan, IMPORTED_LABELS_FILE), labels.array, labels.affine, kind="label")
            scan.imported_labels_file = _rel(scan, IMPORTED_LABELS_FILE)
        _finish(scan, pet_series, suv, warnings=[])
        if labels is not None:
            _import_label_map_as_draft(scan, labels.array)
    _report(scan, progress, 1.0, scan.get_status_display())


def _import_label_map_as_draft(scan: Scan, label_map: np.ndarray) -> None:
    """The uploaded label map becomes the uploader's draft annotation (values = the project's label values)."""
    from backend.annotations.agreement import objects_from_label_map
    from backend.annotations.services import open_annotation, save_version

    labels = {label.value: label for label in scan.project.labels.all()}
    unknown = sorted(int(v) for v in np.unique(label_map) if v and int(v) not in labels)
    if unknown:
        raise IngestError(f"The label map holds values {unknown[:10]} that are not in the project's label set "
                          f"({', '.join(f'{v}={label.name}' for v, label in sorted(labels.items()))}).")
    if scan.created_by is None:
        raise IngestError("An imported label map needs an uploader to own the draft annotation.")
    objects, pairs = objects_from_label_map(label_map, {v for v, label in labels.items() if label.kind == "lesion"})
    annotation, _ = open_annotation(scan, scan.created_by)
    save_version(annotation, scan.created_by, base_version_id=annotation.current_version_id, object_map=objects,
                 segments=[{"id": i, "label": labels[v].pk} for i, v in pairs], source="imported",
                 message="label map uploaded with the scan")


def _read_nifti(path: Path, what: str, kind: str):
    try:
        return read_nifti(path, kind=kind, max_voxels=settings.MAX_VOLUME_VOXELS,  # type: ignore[arg-type]
                          max_bytes=settings.MAX_VOLUME_BYTES)
    except (NiftiError, OSError, ValueError) as error:
        raise IngestError(f"The {what} file cannot be read as NIfTI: {error}") from None


# --- shared ----------------------------------------------------------------------------------


def _rel(scan: Scan, name: str) -> str:
    return f"{storage.scan_dir_relative(scan.pk)}/{name}"


def _store_series(scan: Scan, modality: str, array: np.ndarray, affine: np.ndarray, spacing, *, units: str,
                  raw_units: str, suv: dict | None = None, **metadata) -> Series:
    name = PET_FILE if modality == Modality.PET else CT_FILE
    sha256 = storage.write_volume(_rel(scan, name), _compact(array), affine)
    return Series.objects.create(
        scan=scan, modality=modality, shape=list(array.shape), spacing=[float(s) for s in spacing],
        affine=np.asarray(affine).tolist(), units=units, raw_units=raw_units, suv=suv or {},
        volume_file=_rel(scan, name), sha256=sha256, **metadata,
    )


def _compact(array: np.ndarray) -> np.ndarray:
    """int16 when every value is a whole number in range (CT in HU): half the bytes of float32."""
    if array.dtype.kind == "f" and array.size and -32768 <= array.min() and array.max() <= 32767:
        as_int = array.astype(np.int16)
        if np.array_equal(as_int, array):
            return as_int
    return array.astype(np.float32, copy=False)


def check_finite(array: np.ndarray, what: str, file_names: Sequence[str] | None = None) -> None:
    """Refuse NaN and ±inf voxels: every statistic over them would be NaN (and cannot be stored)."""
    bad = ~np.isfinite(array)
    count = int(np.count_nonzero(bad))
    if not count:
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    kinds = ", ".join(f"{n} {name}" for n, name in ((int(np.isnan(array).sum()), "NaN"),
                                                    (int(np.isposinf(array).sum()), "+inf"),
                                                    (int(np.isneginf(array).sum()), "-inf")) if n)
    where = f" in file {Path(file_names[first[0]]).name}" if file_names else ""
    raise IngestError(f"The {what} volume holds {count} non-finite voxel(s) ({kinds}); the first is at "
                      f"[slice, row, col] = {list(first)}{where}. Statistics cannot be computed over them: fix or "
                      "remove those values and upload again.")


def _suv_fields(suv: SuvResult) -> dict:
    if not suv.ok:
        return {"units": suv.raw_units or "unknown", "suv_type": "", "suv_conversions": {}, "suv_unavailable": {}}
    return {"units": suv.suv_type or "", "suv_type": suv.suv_type or "", "suv_conversions": dict(suv.conversions),
            "suv_unavailable": dict(suv.unavailable)}


def _store_pet(scan: Scan, values: np.ndarray, affine: np.ndarray, spacing, suv: SuvResult, metadata: dict) -> Series:
    if suv.ok and suv.slice_factors is not None:
        values = suv.apply(values)
    fields = _suv_fields(suv)
    series = _store_series(scan, Modality.PET, values, affine, spacing, units=fields.pop("units"),
                           raw_units=suv.raw_units or "", suv=suv.to_dict(), **fields, **metadata)
    storage.write_atomically(_rel(scan, PREVIEW_FILE),
                             storage.coronal_mip_png(values if suv.ok else values / max(values.max(), 1e-6) * 10,
                                                     affine))
    series.preview_file = _rel(scan, PREVIEW_FILE)
    series.save(update_fields=["preview_file"])
    return series


def _finish(scan: Scan, pet_series: Series, suv: SuvResult, warnings: list[str]) -> None:
    notes = list(warnings) + list(suv.warnings)
    if suv.status == "needs_parameters":
        scan.status = ScanStatus.NEEDS_SUV_PARAMETERS
        notes.insert(0, f"SUV needs parameters: {suv.reason}")
    else:
        scan.status = ScanStatus.READY
        if suv.status == "not_applicable":
            notes.insert(0, f"No SUV: {suv.reason}. Values are shown in {pet_series.units}.")
    scan.status_message = "\n".join(notes)[:4000]
    scan.ingest_progress = 1.0
    scan.save()


def all_or_nothing(scan: Scan, work: Callable[[], None]) -> Scan:
    """Run ingest `work` for `scan`; on any error the scan is failed with a message and emptied."""
    scan.status, scan.ingest_heartbeat_at = ScanStatus.INGESTING, timezone.now()
    scan.save(update_fields=["status", "ingest_heartbeat_at"])
    try:
        work()
    except Exception as error:
        storage.remove_tree(storage.scan_dir_relative(scan.pk))
        Series.objects.filter(scan=scan).delete()
        if isinstance(error, IngestError | SeriesError):
            message = str(error)
        else:
            log.exception("ingest of scan %s failed", scan.pk)
            message = f"Ingest failed unexpectedly ({type(error).__name__}); the files were not imported."
        Scan.objects.filter(pk=scan.pk).update(status=ScanStatus.FAILED, status_message=message, ingest_progress=0)
        broadcast_to_scan(scan.pk, {"type": "progress", "task": "ingest", "scan": scan.pk, "fraction": 0,
                                    "error": message})
        scan.refresh_from_db()
    return scan


# --- derived volumes -------------------------------------------------------------------------


def ct_on_pet_file(pet: Series, ct: Series) -> str:
    """Path of the CT resampled onto the PET grid, made once per (PET, CT) content pair."""
    relative = _rel(pet.scan, f"ct_on_pet_{pet.sha256[:12]}_{ct.sha256[:12]}.nii.gz")
    if not storage.media_path(relative).exists():
        ct_volume = storage.read_volume(ct.volume_file, ct.sha256)
        resampled = resample_to_grid(np.asarray(ct_volume.array), ct_volume.affine, tuple(pet.shape),
                                     np.asarray(pet.affine), fill_value=-1024.0)
        storage.write_volume(relative, resampled, np.asarray(pet.affine))
    return relative


# --- SUV parameters supplied by a manager --------------------------------------------------


def apply_suv_parameters(series: Series, overrides: SuvOverrides) -> SuvResult:
    """Recompute SUV with manager-supplied values; rewrites the PET volume only when SUV succeeds."""
    scan = series.scan
    volume = storage.read_volume(series.volume_file, series.sha256)
    raw = np.asarray(volume.array, dtype=np.float32)
    if series.suv.get("status") == "ok":
        old = series.suv.get("slice_factors") or []
        if len(old) != raw.shape[0]:
            raise IngestError("This PET volume's SUV was not computed from DICOM headers; it cannot be redone.")
        raw = raw / np.asarray(old, dtype=np.float32).reshape(-1, 1, 1)
    headers_file = _rel(scan, SUV_HEADERS_FILE)
    if storage.media_path(headers_file).exists():
        headers = [SuvHeader.from_dict(h) for h in storage.read_json(headers_file)]  # type: ignore[union-attr]
        result = compute_suv_factors(headers, overrides)
    else:
        required = {"patient_weight_kg": overrides.patient_weight_kg, "injected_dose_bq": overrides.injected_dose_bq,
                    "injection_datetime": overrides.injection_datetime, "half_life_s": overrides.half_life_s,
                    "scan_datetime": overrides.scan_datetime}
        missing = [name for name, value in required.items() if value is None]
        if missing:
            raise IngestError(f"Without DICOM headers these are all needed: {', '.join(missing)}.")
        result = compute_suv_from_parameters(**required, patient_height_m=overrides.patient_height_m,  # type: ignore[arg-type]
                                             patient_sex=overrides.patient_sex, slice_count=raw.shape[0])
    if not result.ok:
        raise IngestError(f"SUV still cannot be computed: {result.reason}")
    with transaction.atomic():
        series = Series.objects.select_for_update().get(pk=series.pk)
        series.sha256 = storage.write_volume(series.volume_file, result.apply(raw), np.asarray(series.affine))
        fields = _suv_fields(result)
        series.units, series.suv = fields.pop("units"), {**result.to_dict(), "overrides": overrides.to_dict()}
        for name, value in fields.items():
            setattr(series, name, value)
        series.save(update_fields=["sha256", "units", "suv", *fields])
        scan.status = ScanStatus.READY
        scan.status_message = f"SUV computed from parameters supplied by a manager ({result.rule})."
        scan.save(update_fields=["status", "status_message"])
    return result
