"""Gzip bombs shaped as NIfTI files: a small gzip member holding a header, then a member of zeros.

Gzip files may hold several members one after another, and every reader (ours included) reads them
as one stream, so one compressed body of zeros serves each header.
"""

from __future__ import annotations

import numpy as np
from isal import isal_zlib

from backend.imaging.nifti_io import build_nifti_image

GIB = 1024**3
_CHUNK = 16 * 1024 * 1024


def gzip_member(payload: bytes) -> bytes:
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)  # wbits 31: a gzip wrapper
    return compressor.compress(payload) + compressor.flush()


def zeros_member(size: int = GIB) -> bytes:
    """`size` zero bytes, gzip-compressed a chunk at a time (about 1 MB per GiB)."""
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 31)
    chunk = bytes(_CHUNK)
    parts = [compressor.compress(chunk[: min(_CHUNK, size - done)]) for done in range(0, size, _CHUNK)]
    return b"".join(parts) + compressor.flush()


def nifti_header(shape_slice_row_col: tuple[int, int, int], dtype, spacing: float = 4.0) -> bytes:
    """The 352 bytes before the voxels of a single-file NIfTI-1 whose header claims this shape."""
    image = build_nifti_image(np.zeros((1, 1, 1), dtype=dtype), np.diag([spacing, spacing, spacing, 1.0]),
                              kind="label" if np.dtype(dtype).kind in "ui" else "image")
    image.header.set_data_shape(tuple(reversed(shape_slice_row_col)))  # nibabel's (i, j, k) order
    image.header["vox_offset"] = 352
    return image.header.binaryblock + b"\0\0\0\0"  # no extensions


def bomb(shape_slice_row_col: tuple[int, int, int], dtype, body: bytes) -> bytes:
    return gzip_member(nifti_header(shape_slice_row_col, dtype)) + body
