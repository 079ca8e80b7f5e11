"""Resample a volume onto another grid (e.g. CT onto the PET grid for fusion and exports).

Pure NumPy/SciPy; grids are described by their affines (array index -> LPS mm).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def resample_to_grid(
    source: np.ndarray,
    source_affine: np.ndarray,
    target_shape: tuple[int, ...],
    target_affine: np.ndarray,
    *,
    order: int = 1,
    fill_value: float = 0.0,
) -> np.ndarray:
    """Values of `source` at the voxel centres of the target grid.

    `order` 1 (trilinear) for images, 0 (nearest) for label maps. Target voxels outside
    the source's field of view get `fill_value` (e.g. -1024 HU for CT: air).
    """
    # Target index -> world -> source index, as one affine for ndimage.
    target_to_source = np.linalg.inv(np.asarray(source_affine, dtype=np.float64)) @ np.asarray(target_affine)
    output_dtype = source.dtype if order == 0 else np.float32
    return ndimage.affine_transform(
        source,
        target_to_source[:3, :3],
        offset=target_to_source[:3, 3],
        output_shape=tuple(int(n) for n in target_shape),
        order=order,
        mode="constant",
        cval=fill_value,
        output=output_dtype,
        prefilter=False,
    )
