"""Compute and store the statistics of an annotation version (the Celery task calls `compute_for_version`)."""

from __future__ import annotations

import logging

import numpy as np
from django.utils import timezone

from backend.annotations.models import AnnotationVersion
from backend.annotations.services import read_mask
from backend.imaging import storage
from backend.imaging.ingest import ct_on_pet_file
from backend.imaging.integrity import check_usable
from backend.imaging.suv import describe_types
from backend.projects.models import Label, LabelKind

from . import metrics
from .models import StatisticsStatus, VersionStatistics

log = logging.getLogger(__name__)


def compute_for_version(version: AnnotationVersion) -> VersionStatistics:
    """(Re)compute and store; a failure is stored with its message instead of raising."""
    version = AnnotationVersion.objects.select_related("annotation__scan").get(pk=version.pk)
    row, _ = VersionStatistics.objects.get_or_create(
        version=version, defaults={"project_id": version.annotation.project_id})
    try:
        values = _compute(version)
    except Exception as error:  # stored for the API: statistics never break saving a version
        log.exception("statistics of version %s failed", version.pk)
        values = {"status": StatisticsStatus.FAILED, "message": f"{type(error).__name__}: {error}"[:2000],
                  "object_stats": [], "lesion_count": 0, "total_mtv_ml": 0.0, "total_tlg": 0.0}
    for key, value in values.items():
        setattr(row, key, value)
    row.computed_at = timezone.now()
    row.save()
    return row


def _compute(version: AnnotationVersion) -> dict:
    scan = version.annotation.scan
    pet, ct = scan.pet, scan.ct
    if pet is None:
        raise ValueError("The scan has no PET series.")
    check_usable(scan)
    image = np.asarray(storage.read_volume(pet.volume_file, pet.sha256).array)
    objects = read_mask(version)
    ct_values = None
    if ct is not None:
        ct_values = np.asarray(storage.read_volume(ct_on_pet_file(pet, ct)).array)
    affine = np.asarray(pet.affine, dtype=np.float64)
    stats = metrics.object_statistics(image, objects, affine, ct_values,
                                      object_ids=[s["id"] for s in version.segments])
    labels = {label.pk: label for label in Label.objects.filter(project_id=version.annotation.project_id)}
    label_of = {s["id"]: labels.get(s["label"]) for s in version.segments}
    rows = []
    for item in stats:
        label = label_of.get(item.id)
        rows.append(metrics.rounded({
            "id": item.id, "label": label.pk if label else None, "label_name": label.name if label else "",
            "label_value": label.value if label else None, "kind": label.kind if label else "",
            "units": pet.units, **item.to_dict()}) | {"by_type": _by_type(item, pet.suv_type, pet.suv_conversions)})
    lesion_ids = [i for i, label in label_of.items() if label is not None and label.kind == LabelKind.LESION]
    total = metrics.totals(stats, lesion_ids)
    if not all(np.isfinite([total["total_mtv_ml"], total["total_tlg"]])):
        raise ValueError("The PET volume holds non-finite values (NaN or ±inf) inside the objects; statistics "
                         "cannot be computed. Re-ingest the scan (ingest now refuses such volumes).")
    method = metrics.METHOD | {
        "units": f"suv_max, suv_mean, suv_peak and tlg are in {pet.units or 'the raw units'}; by_type gives the "
                 "same in every other SUV type the header allows (PERCIST reports use by_type.SUL)",
        "suv_types": describe_types(pet.suv_type, pet.suv_conversions, pet.suv_unavailable) if pet.suv_type else []}
    return {"status": StatisticsStatus.DONE, "message": "", "units": pet.units, "has_ct": ct is not None,
            "voxel_volume_ml": metrics.voxel_volume_ml(affine), "object_stats": rows,
            "lesion_count": total["lesion_count"], "total_mtv_ml": round(total["total_mtv_ml"], 6),
            "total_tlg": round(total["total_tlg"], 6), "method": method}


def _by_type(item: metrics.ObjectStats, stored: str, conversions: dict[str, float]) -> dict[str, dict[str, float]]:
    """SUVmax/mean/peak and TLG in every other available SUV type: each type is a scalar multiple of the stored."""
    return {name: metrics.rounded({"suv_max": item.suv_max * m, "suv_mean": item.suv_mean * m,
                                   "suv_peak": item.suv_peak * m, "tlg": item.tlg * m})
            for name, m in sorted(conversions.items()) if name != stored}


def ensure_for_version(version: AnnotationVersion) -> VersionStatistics:
    """The stored statistics, computed now when missing or not done (exports need them)."""
    row = VersionStatistics.objects.filter(version=version).first()
    if row is not None and row.status == StatisticsStatus.DONE:
        return row
    return compute_for_version(version)



def schedule_statistics(version_id: int) -> None:
    """Queue the statistics of a saved version (the `cpu` queue; in-process in the embedded mode)."""
    from .tasks import compute_version_statistics  # enqueue only: the task calls compute_for_version

    compute_version_statistics.delay(version_id)
