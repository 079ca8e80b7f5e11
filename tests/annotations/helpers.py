from __future__ import annotations

import json

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from backend.imaging.nifti_io import nifti_bytes


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def mask_upload(objects: np.ndarray, affine=None) -> SimpleUploadedFile:
    affine = np.diag([4.0, 4.0, 4.0, 1.0]) if affine is None else affine
    return SimpleUploadedFile("mask.nii.gz", nifti_bytes(objects.astype(np.uint8), affine, kind="label"))


def cube(lo: int = 1, hi: int = 3, value: int = 1) -> np.ndarray:
    objects = np.zeros((4, 4, 4), dtype=np.uint8)
    objects[lo:hi, lo:hi, lo:hi] = value
    return objects


def save(client: Client, project_id: int, annotation_id: int, base_version, objects: np.ndarray, label_id: int):
    return client.post(f"/api/projects/{project_id}/annotations/{annotation_id}/versions/", {
        "base_version": "" if base_version is None else base_version,
        "mask": mask_upload(objects),
        "segments": json.dumps([{"id": int(i), "label": label_id} for i in np.unique(objects) if i]),
    })
