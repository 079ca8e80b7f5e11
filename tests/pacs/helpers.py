from __future__ import annotations

import numpy as np

from backend.annotations.services import approve, open_annotation, save_version, submit
from backend.imaging.models import Scan
from backend.projects.models import Label, LabelKind


def approved_annotation(scan: Scan, phantom, world: dict):
    """The annotator saves two objects (the phantom's largest organ and its lesions), submits; the reviewer
    approves. Returns (annotation, object map)."""
    labels = phantom.labels
    values, counts = np.unique(labels[(labels > 0) & (labels != 13)], return_counts=True)
    objects = np.zeros(labels.shape, dtype=np.uint8)
    objects[labels == values[np.argmax(counts)]] = 1
    objects[labels == 13] = 2
    lesion, _ = Label.objects.get_or_create(project=scan.project, value=13,
                                            defaults={"name": "lesion", "kind": LabelKind.LESION})
    segments = [{"id": 1, "label": world["label"].pk}] + ([{"id": 2, "label": lesion.pk}] if (objects == 2).any() else [])
    annotation, _ = open_annotation(scan, world["annotator"])
    save_version(annotation, world["annotator"], base_version_id=annotation.current_version_id, object_map=objects,
                 segments=segments, source="manual")
    annotation.refresh_from_db()
    submit(annotation, world["annotator"])
    return approve(annotation, world["reviewer"]), objects
