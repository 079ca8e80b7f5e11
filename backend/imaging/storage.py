"""Where scan volumes live in the media store, and how they are written and read.

Layout: MEDIA_ROOT/scans/<scan id>/<file>. Files are written under a temporary name and
renamed into place, so a reader never sees half a volume.

Integrity: the sha256 of every PET and CT volume is taken when it is written (Series.sha256, also the ETag).
The first time a process loads a volume (read_volume) or serves its file (verify_file), the file's sha256 is
checked against it; a mismatch raises VolumeDamaged and sends `volume_damaged`, on which the imaging app marks
the scan "damaged" (integrity.py). Decoded volumes are cached per process, bounded by their bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
from cachetools import LRUCache
from django.conf import settings
from django.dispatch import Signal
from PIL import Image

from .nifti_io import NiftiVolume, nifti_bytes, read_nifti

PREVIEW_HEIGHT_PX = 256
# Decoded volumes kept per process: a whole-body PET is 100-400 MB as float32, so a count bound (4) could
# hold 1.6 GB; the bound is on bytes instead (settings.VOLUME_CACHE_BYTES overrides).
DEFAULT_VOLUME_CACHE_BYTES = 1 << 30

# Sent with `relative` (the damaged file) and `message` when a checksum does not match.
volume_damaged = Signal()


class VolumeDamaged(RuntimeError):
    """A stored volume's bytes no longer match the sha256 recorded when it was written; the message is for users."""

    def __init__(self, relative: str, expected: str, actual: str) -> None:
        self.relative, self.expected, self.actual = relative, expected, actual
        super().__init__(
            f"The stored volume {relative} is damaged: its sha256 is {actual} but {expected} was recorded when it "
            "was written. Nothing is segmented or exported from this scan; restore the file or ingest the scan again.")


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


def _check(relative: str, expected: str, actual: str) -> None:
    if actual != expected:
        error = VolumeDamaged(relative, expected, actual)
        volume_damaged.send(sender=VolumeDamaged, relative=relative, message=str(error))
        raise error


_verified: set[tuple[str, str, int, int]] = set()
_cache_lock = threading.Lock()
_volume_cache: LRUCache | None = None


def verify_file(relative: str, sha256: str) -> Path:
    """The file's path once its sha256 is checked (once per process and file version: size and mtime)."""
    path = media_path(relative)
    stat = path.stat()
    key = (relative, sha256, stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        with path.open("rb") as stream:
            _check(relative, sha256, hashlib.file_digest(stream, "sha256").hexdigest())
        _verified.add(key)
    return path


def _cache() -> LRUCache:
    global _volume_cache
    if _volume_cache is None:
        limit = int(getattr(settings, "VOLUME_CACHE_BYTES", DEFAULT_VOLUME_CACHE_BYTES))
        _volume_cache = LRUCache(maxsize=max(limit, 1), getsizeof=lambda volume: volume.array.nbytes)
    return _volume_cache


def clear_volume_cache() -> None:
    """Forget every decoded volume and verification (the size limit is read again from the settings)."""
    global _volume_cache
    with _cache_lock:
        _volume_cache = None
        _verified.clear()


def read_volume(relative: str, sha256: str = "") -> NiftiVolume:
    """Decoded volume, cached per process; with `sha256` the file is verified when first loaded.

    The sha256 in the cache key makes a rewritten file a new entry. Volumes larger than the whole cache are
    returned without being cached.
    """
    key = (relative, sha256)
    with _cache_lock:
        cached = _cache().get(key)
    if cached is not None:
        return cached
    payload = media_path(relative).read_bytes()
    if sha256:
        _check(relative, sha256, hashlib.sha256(payload).hexdigest())
    volume = read_nifti(payload)
    volume.array.setflags(write=False)  # shared between callers: nobody may change it in place
    with _cache_lock, contextlib.suppress(ValueError):  # ValueError: larger than the whole cache
        _cache()[key] = volume
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
    """Remove a media folder and everything in it; a folder already gone is not an error."""
    root = media_path(relative)
    if root.exists():
        shutil.rmtree(root)
