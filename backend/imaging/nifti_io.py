"""Read and write NIfTI volumes in the same array order and affine convention as dicom_series.

Pure Python (numpy + nibabel); no Django.

Convention (see dicom_series): arrays are indexed ``[slice, row, col]`` and ``affine`` maps those indices
to LPS mm. nibabel stores data as ``data[i, j, k]`` with an RAS affine over (i, j, k). The two are linked by

    array = data.transpose(2, 1, 0)          # (k, j, i) = (slice, row, col)
    affine_ras = nifti_affine[:, [2, 1, 0, 3]]
    affine (LPS) = diag(-1, -1, 1, 1) @ affine_ras

so a DICOM series written here lands in NIfTI as (col, row, slice), the layout dcm2nix-like tools use
before any reorientation, and every voxel keeps its world position.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import nibabel as nib
import numpy as np
from isal import igzip

from worker.nifti_layout import AXIS_REVERSAL, LPS_TO_RAS, nifti_image

from .dicom_series import apply_affine

VolumeKind = Literal["image", "label"]
AffineSpace = Literal["LPS", "RAS"]

# Our (slice, row, col) order is nibabel's (i, j, k) reversed; the permutation is its own inverse.


class NiftiError(ValueError):
    """A NIfTI file that cannot be used as a 3D volume; the message is for users."""


@dataclass
class NiftiVolume:
    array: np.ndarray  # [slice, row, col]; float32 for images, uint8/uint16 for labels
    affine: np.ndarray  # 4×4 array index → LPS mm
    spacing: tuple[float, float, float]  # (slice, row, col) mm
    description: str = ""

    @property
    def affine_ras(self) -> np.ndarray:
        return LPS_TO_RAS @ self.affine

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def index_to_patient(self, indices: np.ndarray) -> np.ndarray:
        return apply_affine(self.affine, indices)


def to_nibabel_layout(array: np.ndarray, affine_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Our (array[slice,row,col], LPS affine) → nibabel's (data[i,j,k], RAS affine)."""
    return array.transpose(2, 1, 0), (LPS_TO_RAS @ affine_lps)[:, AXIS_REVERSAL]


def from_nibabel_layout(data: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """nibabel's (data[i,j,k], RAS affine) → our (array[slice,row,col], LPS affine)."""
    return data.transpose(2, 1, 0), LPS_TO_RAS @ affine_ras[:, AXIS_REVERSAL]


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    lengths = np.linalg.norm(affine[:3, :3], axis=0)
    return float(lengths[0]), float(lengths[1]), float(lengths[2])


# Checked against the header before any voxel is read: a 512 x 512 x 512 CT fits (as float32, which is
# how images are returned); a gzip bomb (a 1 MB file that claims, and expands to, a gigabyte) does not.
DEFAULT_MAX_VOXELS = 512**3
DEFAULT_MAX_BYTES = 512 * 1024**2  # voxels x the stored data type's size
# Header plus extensions; anything beyond this before the voxels is not a volume we want.
_MAX_VOX_OFFSET = 16 * 1024 * 1024
_HEADER_CLASSES = {348: nib.Nifti1Header, 540: nib.Nifti2Header}
_CHUNK = 8 * 1024 * 1024


def _open_stream(source: str | Path | bytes, files: contextlib.ExitStack) -> BinaryIO:
    """A byte stream of the (decompressed) file, closed with `files`: gzip is decompressed lazily, as read."""
    raw: BinaryIO = io.BytesIO(source) if isinstance(source, bytes | bytearray) else files.enter_context(
        open(source, "rb"))
    magic = raw.read(2)
    raw.seek(0)
    # ISA-L decompresses several times faster than the gzip module nibabel would use.
    return files.enter_context(igzip.IGzipFile(fileobj=raw, mode="rb")) if magic == b"\x1f\x8b" else raw


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes; never more, so a stream that goes on expanding costs nothing beyond the cap."""
    parts, left = [], size
    while left > 0:
        part = stream.read(min(left, _CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _checked_header(head: bytes, max_voxels: int, max_bytes: int,
                    expected_shape: tuple[int, ...] | None) -> tuple[int, int, int]:
    """(header size, vox_offset, data bytes) from the header, after checking its dimensions against the limits."""
    if len(head) < 348:
        raise NiftiError("Not a readable NIfTI file: too short to hold a NIfTI header.")
    size = next((n for n in (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big"))
                 if n in _HEADER_CLASSES), None)
    if size is None or len(head) < size:
        raise NiftiError("Not a readable NIfTI file: it does not start with a NIfTI-1 or NIfTI-2 header.")
    try:
        header = _HEADER_CLASSES[size](binaryblock=head[:size], check=False)
        shape = tuple(int(n) for n in header.get_data_shape())
        itemsize = header.get_data_dtype().itemsize
        vox_offset = int(header["vox_offset"])
    except Exception as error:  # noqa: BLE001 - a garbled header raises many types
        raise NiftiError(f"The NIfTI header cannot be read: {error}") from None
    if len(shape) < 3 or any(n != 1 for n in shape[3:]):
        raise NiftiError(f"Expected a 3D volume, got dimensions {shape}.")
    if expected_shape is not None and tuple(reversed(shape[:3])) != tuple(expected_shape):
        raise NiftiError(f"The image has shape {tuple(reversed(shape[:3]))}; the PET grid is {tuple(expected_shape)}.")
    voxels = int(np.prod(shape, dtype=np.int64))
    if any(n < 1 for n in shape) or voxels > max_voxels or voxels * itemsize > max_bytes:
        raise NiftiError(f"The image's dimensions {'x'.join(map(str, shape[:3]))} ({voxels} voxels of "
                         f"{itemsize} bytes) exceed the limit of {max_voxels} voxels and {max_bytes} bytes; "
                         "nothing was read.")
    if not size <= vox_offset <= _MAX_VOX_OFFSET:
        raise NiftiError(f"The NIfTI header puts the voxels at an impossible offset ({vox_offset}).")
    return size, vox_offset, voxels * itemsize


def _load_image(source: str | Path | bytes, max_voxels: int = DEFAULT_MAX_VOXELS, max_bytes: int = DEFAULT_MAX_BYTES,
                expected_shape: tuple[int, ...] | None = None) -> nib.Nifti1Image:
    """The image, read with bounded memory: the header's dimensions are checked before any voxel is
    decompressed, and no more than header + voxels is ever read from the (possibly gzip) stream."""
    try:
        with contextlib.ExitStack() as files:
            stream = _open_stream(source, files)
            head = _read_exactly(stream, 544)
            size, vox_offset, data_bytes = _checked_header(head, max_voxels, max_bytes, expected_shape)
            total = vox_offset + data_bytes
            payload = head[:total] + _read_exactly(stream, total - len(head)) if total > len(head) else head[:total]
        if len(payload) < total:
            raise NiftiError(f"The file ends before its image data does ({len(payload)} of {total} bytes).")
        image = (nib.Nifti2Image if size == 540 else nib.Nifti1Image).from_bytes(payload)
    except NiftiError:
        raise
    except Exception as error:  # noqa: BLE001 - nibabel, gzip and OS errors come in many types
        raise NiftiError(f"Not a readable NIfTI file: {error}") from error
    return image


def _three_dimensional(data: np.ndarray) -> np.ndarray:
    if data.ndim == 4 and data.shape[3] == 1:
        return data[..., 0]
    if data.ndim != 3:
        raise NiftiError(f"Expected a 3D volume, got an array of shape {data.shape}")
    return data


def _label_array(image: nib.Nifti1Image) -> np.ndarray:
    values = _three_dimensional(np.asanyarray(image.dataobj))
    if not np.issubdtype(values.dtype, np.integer):
        scaled = _three_dimensional(image.get_fdata(dtype=np.float64))
        rounded = np.rint(scaled)
        if np.any(np.abs(scaled - rounded) > 1e-3):
            raise NiftiError("A label map must hold whole numbers; this file has fractional values")
        values = rounded
    if values.size and (values.min() < 0 or values.max() > np.iinfo(np.uint16).max):
        raise NiftiError(f"Label values must lie in 0–65535; found {values.min()}–{values.max()}")
    dtype = np.uint8 if values.size == 0 or values.max() <= np.iinfo(np.uint8).max else np.uint16
    return values.astype(dtype)


def read_nifti(source: str | Path | bytes, kind: VolumeKind = "image", *, max_voxels: int = DEFAULT_MAX_VOXELS,
               max_bytes: int = DEFAULT_MAX_BYTES, expected_shape: tuple[int, ...] | None = None) -> NiftiVolume:
    """Read a PET (SUV or Bq/ml), CT or label NIfTI into [slice, row, col] order with an LPS affine.

    Images come back as float32 with scl_slope/scl_inter applied; labels as uint8/uint16. The affine is the
    one nibabel chooses (sform when set, else qform). Files with more than `max_voxels` voxels or `max_bytes`
    bytes of voxel data, or (when given) another [slice, row, col] shape than `expected_shape`, are refused
    from the header, before their voxels are read or decompressed.
    """
    image = _load_image(source, max_voxels, max_bytes, expected_shape)
    data = _label_array(image) if kind == "label" else _three_dimensional(image.get_fdata(dtype=np.float32))
    affine_ras = np.asarray(image.affine, dtype=np.float64)
    if abs(np.linalg.det(affine_ras[:3, :3])) < 1e-12:
        raise NiftiError("The NIfTI affine is singular (zero voxel size?)")
    array, affine = from_nibabel_layout(data, affine_ras)
    text = bytes(image.header["descrip"].item()).decode("ascii", errors="ignore")
    return NiftiVolume(np.ascontiguousarray(array), affine, _spacing(affine), text.strip("\x00 "))


def build_nifti_image(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    space: AffineSpace = "LPS",
    kind: VolumeKind = "image",
    description: str = "",
) -> nib.Nifti1Image:
    """A nibabel image from our array/affine; float32 (int16 kept as is, e.g. CT in HU) for images,
    uint8/uint16 for labels."""
    if array.ndim != 3:
        raise NiftiError(f"Expected a 3D array, got shape {array.shape}")
    affine_lps = np.asarray(affine, dtype=np.float64)
    if space == "RAS":
        affine_lps = LPS_TO_RAS @ affine_lps
    if kind == "label":
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
            raise NiftiError("Label values must lie in 0–65535")
        dtype = np.uint8 if array.size == 0 or array.max() <= np.iinfo(np.uint8).max else np.uint16
        values = np.asarray(array).astype(dtype)
    else:
        values = np.asarray(array, dtype=np.int16 if np.asarray(array).dtype == np.int16 else np.float32)
    return nifti_image(values, affine_lps, label=kind == "label", description=description)


def write_nifti(
    path: str | Path,
    array: np.ndarray,
    affine: np.ndarray,
    *,
    space: AffineSpace = "LPS",
    kind: VolumeKind = "image",
    description: str = "",
) -> Path:
    """Write array[slice,row,col] with its affine (LPS unless space='RAS'); '.nii.gz' paths are gzipped."""
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    nib.save(
        build_nifti_image(array, affine, space=space, kind=kind, description=description), str(destination)
    )
    return destination


def nifti_bytes(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    space: AffineSpace = "LPS",
    kind: VolumeKind = "image",
    description: str = "",
    compress: bool = True,
) -> bytes:
    """The .nii (or .nii.gz when compress) file contents, for downloads without a temporary file."""
    image = build_nifti_image(array, affine, space=space, kind=kind, description=description)
    payload = image.to_bytes()
    if not compress:
        return payload
    # ISA-L's gzip at level 1: volumes are written on every ingest and mask save, and zlib
    # (above all at level 9, where repetitive CT values hit its worst case) was 5-50x slower
    # for files only 10-25 % smaller. The output is plain gzip that any reader accepts.
    return igzip.compress(payload, compresslevel=1, mtime=0)


def write_label_names(path: str | Path, label_names: dict[int, str]) -> Path:
    """JSON sidecar {"1": "liver", ...} next to a label map."""
    destination = Path(path)
    destination.write_text(json.dumps({str(k): v for k, v in sorted(label_names.items())}, indent=2))
    return destination


def guess_pet_value_units(array: np.ndarray) -> Literal["SUV", "BQML"] | None:
    """Heuristic hint for an uploaded PET NIfTI: SUV volumes rarely exceed ~100, Bq/ml ones reach thousands.

    Only a suggestion for the upload form; the user must confirm, NIfTI has no unit for voxel values.
    """
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return None
    high = float(np.percentile(finite, 99.9))
    if high <= 0:
        return None
    if high < 150.0:
        return "SUV"
    if high > 500.0:
        return "BQML"
    return None
