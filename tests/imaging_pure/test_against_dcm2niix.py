"""Our DICOM reader agrees with an independent converter (Debian's dcm2niix) on geometry and values."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from backend.imaging.dicom_series import load_series_from_sources, sorted_paths
from worker.phantoms import make_phantom, write_dicom_series

DCM2NIIX = shutil.which("dcm2niix") or "/usr/bin/dcm2niix"


def convert_with_dcm2niix(dicom_dir: Path, out_dir: Path) -> nib.Nifti1Image:
    out_dir.mkdir()
    result = subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-f", "converted", "-o", str(out_dir), str(dicom_dir)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = sorted(out_dir.glob("converted*.nii"))
    assert len(outputs) == 1, (outputs, result.stdout)
    return nib.load(outputs[0])


@pytest.mark.parametrize("variant", [
    {},
    {"feet_first": True},
    {"orientation": "oblique"},
    {"feet_first": True, "orientation": "oblique"},
], ids=["axial", "feet-first", "oblique", "feet-first-oblique"])
def test_geometry_and_values_match_dcm2niix(tmp_path, variant):
    phantom = make_phantom(seed=21, n_lesions=3, shape=(40, 48, 48), **variant)
    # dcm2niix itself needs InstanceNumber in spatial order; our reader ignores it (tested elsewhere).
    write_dicom_series(phantom, tmp_path / "dicom", write_ct=False)
    ours = load_series_from_sources(sorted_paths(tmp_path / "dicom"))
    theirs = convert_with_dcm2niix(tmp_path / "dicom", tmp_path / "nifti")

    # Their voxel grid, expressed in our array indices, must be a pure permutation/flip of ours.
    their_to_ours = np.linalg.inv(ours.affine_ras) @ theirs.affine
    rounded = np.round(their_to_ours)
    np.testing.assert_allclose(their_to_ours, rounded, atol=1e-3)

    # Affines agree within 1e-3 mm at every corner of the volume.
    their_shape = np.array(theirs.shape[:3])
    corners = np.array([[i, j, k] for i in (0, their_shape[0] - 1) for j in (0, their_shape[1] - 1)
                        for k in (0, their_shape[2] - 1)], dtype=float)
    their_world = nib.affines.apply_affine(theirs.affine, corners)
    our_world = nib.affines.apply_affine(ours.affine_ras, nib.affines.apply_affine(rounded, corners))
    np.testing.assert_allclose(their_world, our_world, atol=1e-3)

    # Values: every one of their voxels equals our voxel at the mapped index.
    their_data = np.asarray(theirs.get_fdata(dtype=np.float32))
    index = np.indices(their_data.shape).reshape(3, -1)
    mapped = (rounded[:3, :3] @ index + rounded[:3, 3:4]).astype(int)
    assert (mapped >= 0).all() and all((mapped[a] < ours.array.shape[a]).all() for a in range(3))
    our_values = ours.array[mapped[0], mapped[1], mapped[2]].reshape(their_data.shape)
    scale = float(np.abs(ours.array).max())
    np.testing.assert_allclose(their_data, our_values, atol=1e-4 * scale)
