"""Mask files of annotation versions: an object-id label map on the PET grid, checksummed.

Object ids (1..n) are per version; what each id is (its label) is in the version's `segments`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from backend.imaging import storage
from backend.imaging.models import Series
from backend.imaging.nifti_io import NiftiError, nifti_bytes, read_nifti

MAX_OBJECTS = 65535


class MaskError(ValueError):
    """A mask that cannot be stored or trusted; the message is for the user."""


def as_object_map(mask: np.ndarray, pet: Series) -> np.ndarray:
    expected = tuple(pet.shape)
    if mask.ndim != 3 or tuple(mask.shape) != expected:
        raise MaskError(f"The mask has shape {tuple(mask.shape)}; the PET grid is {expected}.")
    if mask.dtype.kind not in "uib":
        raise MaskError("The mask must hold whole numbers (object ids).")
    if mask.size and (mask.min() < 0 or mask.max() > MAX_OBJECTS):
        raise MaskError(f"Object ids must lie in 0–{MAX_OBJECTS}.")
    return mask.astype(np.uint16 if mask.size and mask.max() > 255 else np.uint8)


def write_version_mask(relative: str, object_map: np.ndarray, pet: Series) -> str:
    """Write the mask (never overwriting an existing version file); returns its sha256."""
    if storage.media_path(relative).exists():
        raise MaskError(f"{relative} already exists; versions are never overwritten.")
    return storage.write_atomically(relative, nifti_bytes(object_map, np.asarray(pet.affine), kind="label"))


def read_version_mask(relative: str, sha256: str) -> np.ndarray:
    """The object-id map, after checking the file against the checksum recorded at save time."""
    payload = storage.media_path(relative).read_bytes()
    if hashlib.sha256(payload).hexdigest() != sha256:
        raise MaskError(f"The stored mask {relative} does not match its checksum; it was changed or damaged.")
    try:
        return read_nifti(payload, kind="label").array
    except NiftiError as error:
        raise MaskError(f"The stored mask {relative} cannot be read: {error}") from None


def read_uploaded_mask(payload: bytes, expected_shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The uploaded label map and its affine. With `expected_shape` (the PET grid) a file of any other
    shape is refused from its header, before a (possibly gzip-bombed) voxel is decompressed."""
    try:
        volume = read_nifti(payload, kind="label", expected_shape=expected_shape)
    except NiftiError as error:
        raise MaskError(f"The uploaded mask is not a usable NIfTI label map: {error}") from None
    return volume.array, volume.affine


def segment_voxel_counts(object_map: np.ndarray) -> dict[int, int]:
    counts = np.bincount(object_map.ravel().astype(np.int64))
    return {int(i): int(n) for i, n in enumerate(counts) if i > 0 and n > 0}
