"""Scans ingested from real phantom DICOM with approved annotations, and running exports through the API."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from django.test import Client

from backend.annotations import services
from backend.annotations.models import Annotation
from backend.imaging.ingest import ingest_dicom
from backend.imaging.models import Scan
from backend.projects.models import Label, LabelKind
from worker.phantoms import LESION_LABEL, Phantom

LIVER = 3  # phantom label value of the liver


def lesion_label(project) -> Label:
    # Value 13 on purpose: nnU-Net needs consecutive labels, so the export must remap it.
    return Label.objects.get_or_create(project=project, name="lesion",
                                       defaults={"value": LESION_LABEL, "color": "#ff0000",
                                                 "kind": LabelKind.LESION})[0]


def ingest_phantom(project, name: str, dicom_dir: Path) -> Scan:
    scan = Scan.objects.create(project=project, name=name, tracer="FDG")
    scan = ingest_dicom(scan, sorted(p for p in dicom_dir.rglob("*") if p.is_file()))
    assert scan.status == "ready", scan.status_message
    return scan


def phantom_objects(phantom: Phantom) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Object map: the liver is object 1, each lesion its own object after it."""
    objects = np.zeros(phantom.shape, dtype=np.uint16)
    objects[phantom.labels == LIVER] = 1
    kinds = [(1, "liver")]
    for number, lesion in enumerate(phantom.lesions, start=2):
        objects[phantom.lesion_labels == lesion.index] = number
        kinds.append((number, "lesion"))
    present = set(np.unique(objects).tolist())
    return objects, [k for k in kinds if k[0] in present]


def approved_annotation(scan: Scan, annotator, reviewer, phantom: Phantom) -> Annotation:
    labels = {label.name: label for label in scan.project.labels.all()}
    objects, kinds = phantom_objects(phantom)
    annotation, _ = services.open_annotation(scan, annotator)
    services.save_version(annotation, annotator, base_version_id=annotation.current_version_id, object_map=objects,
                          segments=[{"id": i, "label": labels[name].pk} for i, name in kinds], source="manual")
    services.submit(annotation, annotator)
    services.approve(annotation, reviewer)
    annotation.refresh_from_db()
    return annotation


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def export(client: Client, project_id: int, capture, body: dict | None = None) -> dict:
    """POST an export, run it (on-commit callbacks executed, tasks in-process), return the finished job."""
    with capture(execute=True):
        response = client.post(f"/api/projects/{project_id}/exports/", body or {}, content_type="application/json")
    assert response.status_code == 202, response.content
    job = client.get(f"/api/projects/{project_id}/exports/{response.json()['id']}/").json()
    assert job["status"] == "done", job
    return job


def download(client: Client, job: dict) -> bytes:
    response = client.get(job["download_url"])
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def open_archive(payload: bytes) -> tuple[zipfile.ZipFile, dict]:
    archive = zipfile.ZipFile(io.BytesIO(payload))
    return archive, json.loads(archive.read("manifest.json"))
