"""Our volume convention against NIfTI's, in one place for the app's NIfTI I/O and the phantom writer.

Our arrays are ``[slice, row, col]`` with an affine from those indices to LPS mm (DICOM's order); nibabel
stores ``data[i, j, k]`` with an RAS affine. Pure NumPy + nibabel, so worker/ can use it and
``backend.imaging.nifti_io`` builds on it.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Our (slice, row, col) order is nibabel's (i, j, k) reversed; the permutation is its own inverse.
AXIS_REVERSAL = [2, 1, 0, 3]


def is_orthogonal(matrix: np.ndarray) -> bool:
    unit = matrix / np.linalg.norm(matrix, axis=0)
    return bool(np.allclose(unit.T @ unit, np.eye(3), atol=1e-6))


def nifti_image(values: np.ndarray, affine_lps: np.ndarray, *, label: bool, description: str) -> nib.Nifti1Image:
    """The NIfTI image of ``values[slice, row, col]`` (already in the dtype to store) with its LPS affine."""
    affine_ras = (LPS_TO_RAS @ np.asarray(affine_lps, dtype=np.float64))[:, AXIS_REVERSAL]
    # The transposed view is Fortran-ordered, which is exactly the NIfTI byte layout: no copy.
    image = nib.Nifti1Image(values.transpose(2, 1, 0), affine_ras)
    image.header.set_data_dtype(values.dtype)
    image.set_sform(affine_ras, code="scanner")
    if is_orthogonal(affine_ras[:3, :3]):
        image.set_qform(affine_ras, code="scanner")
    else:
        # A sheared (gantry-tilt) affine has no quaternion form; readers then rely on the sform alone.
        image.set_qform(None, code="unknown")
    image.header.set_xyzt_units(xyz="mm")
    if label:
        image.header.set_intent("label")
    image.header["descrip"] = description.encode("ascii", errors="replace")[:79]
    return image
