"""Where scan volumes live in the media store, and how they are written and read.

Layout: MEDIA_ROOT/scans/<scan id>/<file>. Files are written under a temporary name and
renamed into place, so a reader never sees half a volume.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image

from .nifti_io import NiftiVolume, nifti_bytes, read_nifti

PREVIEW_HEIGHT_PX = 256


def media_path(relative: str) -> Path:
    path = (Path(settings.MEDIA_ROOT) / relative).resolve()
    if not path.is_relative_to(Path(settings.MEDIA_ROOT).resolve()):
        raise ValueError(f"{relative!r} is outside the media store")
    return path


def scan_dir_relative(scan_id: int) -> str:
    return f"scans/{scan_id}"


def write_atomically(relative: str, payload: bytes, durable: bool = True) -> str:
    """Write bytes to MEDIA_ROOT/relative via a temporary file and rename; returns sha256.

    `durable=False` skips fsync, for files that can be recomputed (working masks of a session).
    """
    destination = media_path(relative)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return hashlib.sha256(payload).hexdigest()


def write_volume(relative: str, array: np.ndarray, affine: np.ndarray, *, kind: str = "image",
                 description: str = "") -> str:
    return write_atomically(relative, nifti_bytes(array, affine, kind=kind, description=description))


def write_json(relative: str, data: object) -> str:
    return write_atomically(relative, json.dumps(data, indent=1, sort_keys=True).encode())


def read_json(relative: str) -> object:
    return json.loads(media_path(relative).read_text())


def read_volume(relative: str, sha256: str = "") -> NiftiVolume:
    """Decoded volume, cached per process: the sha256 in the key makes a rewritten file a new entry."""
    return _read_volume_cached(relative, sha256)


@lru_cache(maxsize=4)
def _read_volume_cached(relative: str, sha256: str) -> NiftiVolume:
    volume = read_nifti(media_path(relative))
    volume.array.setflags(write=False)  # shared between callers: nobody may change it in place
    return volume


def coronal_mip_png(suv: np.ndarray, affine: np.ndarray, suv_max: float = 10.0) -> bytes:
    """A whole-body maximum-intensity projection (inverted grey), the thumbnail readers expect."""
    # Project along the patient's anterior-posterior axis: the array axis most aligned with LPS y.
    ap_axis = int(np.argmax(np.abs(affine[1, :3]) / np.linalg.norm(affine[:3, :3], axis=0)))
    mip = suv.max(axis=ap_axis)
    remaining = [axis for axis in range(3) if axis != ap_axis]
    # Head up: the remaining axis most aligned with LPS z goes vertical, superior at the top.
    vertical = max(remaining, key=lambda axis: abs(affine[2, axis]))
    if remaining.index(vertical) == 1:
        mip = mip.T
    if affine[2, vertical] > 0:
        mip = mip[::-1]
    grey = (255 - np.clip(mip / suv_max, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(grey))
    spacings = np.linalg.norm(affine[:3, :3], axis=0)
    height_mm = mip.shape[0] * spacings[vertical]
    width_mm = mip.shape[1] * spacings[[a for a in remaining if a != vertical][0]]
    width_px = max(1, round(PREVIEW_HEIGHT_PX * width_mm / height_mm))
    image = image.resize((width_px, PREVIEW_HEIGHT_PX), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def remove_tree(relative: str) -> None:
    root = media_path(relative)
    if not root.exists():
        return
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    root.rmdir()
