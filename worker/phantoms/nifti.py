"""NIfTI export of a phantom (PET, CT, ground-truth labels), written with nibabel directly.

The files are what ``backend.imaging.nifti_io.write_nifti`` writes for the same arrays: both build the
image with :func:`worker.nifti_layout.nifti_image`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import nibabel as nib
import numpy as np

from worker.nifti_layout import nifti_image

if TYPE_CHECKING:
    from worker.phantoms.phantom import Phantom

def write_volume(
    path: str | Path, array: np.ndarray, affine_lps: np.ndarray, *, label: bool = False, description: str = ""
) -> Path:
    """Write array[slice,row,col] with its LPS affine: float32 images, uint8/uint16 label maps."""
    if label:
        dtype = np.uint8 if array.size == 0 or array.max() <= np.iinfo(np.uint8).max else np.uint16
        values = np.asarray(array).astype(dtype)
    else:
        values = np.asarray(array, dtype=np.float32)
    image = nifti_image(values, affine_lps, label=label, description=description)
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(destination))
    return destination


def write_label_names(path: str | Path, label_names: dict[int, str]) -> Path:
    """JSON sidecar {"1": "liver", ...} next to a label map."""
    destination = Path(path)
    destination.write_text(json.dumps({str(k): v for k, v in sorted(label_names.items())}, indent=2))
    return destination


def write_label_nifti(phantom: Phantom, path: str | Path, sidecar: bool = True) -> Path:
    """Ground-truth label map on the PET grid (uint8, LABEL_NAMES), plus a '<name>.labels.json' sidecar."""
    destination = write_volume(
        path, phantom.labels, phantom.pet_affine, label=True, description="phantom labels"
    )
    if sidecar:
        stem = destination.name.removesuffix(".gz").removesuffix(".nii")
        write_label_names(destination.with_name(f"{stem}.labels.json"), phantom.label_names)
    return destination


def write_pet_nifti(phantom: Phantom, path: str | Path, values: Literal["suv", "bqml"] = "suv") -> Path:
    array = phantom.suv if values == "suv" else phantom.activity_bqml
    return write_volume(path, array, phantom.pet_affine, description=f"phantom PET {values.upper()}")


def write_ct_nifti(phantom: Phantom, path: str | Path) -> Path:
    return write_volume(
        path, phantom.ct_hu.astype(np.float32), phantom.ct_affine, description="phantom CT HU"
    )
