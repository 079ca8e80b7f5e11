"""Per-object PET statistics on the PET grid: volume, SUVmax, SUVmean, SUVpeak, MTV, TLG, mean HU.

Pure NumPy/SciPy; no Django, so every number can be checked against independent computations.
Definitions follow ../shared/PET_NOTES.md (PERCIST 1.0, EANM 2015):

- volume / MTV (ml): voxel count × voxel volume (|det| of the affine's 3×3 part, mm³ → ml).
- SUVmax: the highest voxel value in the object. SUVmean: the mean over the object's voxels.
- TLG: SUVmean × MTV (g; SUV g/ml × ml).
- SUVpeak: the highest mean value inside a sphere of 1 cm³ (radius (3/4π)^(1/3) cm ≈ 6.20 mm,
  diameter ≈ 12.4 mm) whose centre may sit on the centre of ANY voxel of the object; it need not be
  the SUVmax voxel. The sphere averages the image, not only the object's voxels (PERCIST's peak is a
  property of the image around the lesion).

  Partial voxels at the sphere edge are handled with FRACTIONAL WEIGHTS: each voxel of the kernel is
  weighted by the fraction of its volume that lies inside the sphere, estimated by sampling the voxel on a
  regular SUBSAMPLES³ sub-grid (voxels as boxes of the grid spacing, axis-aligned in index space, so
  sheared grids are approximated by their column lengths). The mean is Σ wᵢ·vᵢ / Σ wᵢ; Σ wᵢ·voxel volume
  equals 1 ml to within the sub-sampling error (< 1 %). Where the sphere leaves the image volume, only
  the part inside the image counts (normalised convolution), so an object at the edge of the field of
  view still gets a peak.
- mean HU: the mean of the CT resampled (trilinear) onto the PET grid over the object's voxels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

PEAK_VOLUME_ML = 1.0
PEAK_RADIUS_MM = (3.0 * PEAK_VOLUME_ML * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # 6.2035 mm
SUBSAMPLES = 9

METHOD = {
    "grid": "PET grid (the annotation's label map lives there)",
    "volume": "voxel count × voxel volume",
    "suv_mean": "mean over the object's voxels",
    "tlg": "SUVmean × MTV",
    "suv_peak": (f"highest mean in a {PEAK_VOLUME_ML:g} cm³ sphere (radius {PEAK_RADIUS_MM:.3f} mm) centred on "
                 "any voxel centre of the object (not necessarily the SUVmax voxel); image values, not only the "
                 "object's voxels, are averaged"),
    "suv_peak_partial_voxels": (f"fractional weights: the fraction of each voxel inside the sphere, sampled on a "
                                f"{SUBSAMPLES}³ sub-grid per voxel; mean = Σ w·v / Σ w; outside the image does not count"),
    "hu_mean": "mean of the CT resampled trilinearly onto the PET grid over the object's voxels",
    "totals": "total MTV, total TLG and lesion count over objects whose label kind is 'lesion'",
}


@dataclass(frozen=True)
class ObjectStats:
    id: int
    voxels: int
    volume_ml: float
    suv_max: float
    suv_mean: float
    suv_peak: float
    mtv_ml: float
    tlg: float
    suv_max_index: tuple[int, int, int]  # [slice, row, col]
    suv_peak_index: tuple[int, int, int]  # centre of the peak sphere
    hu_mean: float | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["suv_max_index"] = list(self.suv_max_index)
        data["suv_peak_index"] = list(self.suv_peak_index)
        return data


def voxel_volume_ml(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    lengths = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return float(lengths[0]), float(lengths[1]), float(lengths[2])


@lru_cache(maxsize=16)
def _peak_kernel_cached(spacing: tuple[float, float, float], radius_mm: float, subsamples: int) -> np.ndarray:
    half = [int(math.ceil(radius_mm / s - 0.5)) for s in spacing]  # voxels whose box can touch the sphere
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5  # sub-point positions within a voxel
    axes = []
    for axis in range(3):
        centres = np.arange(-half[axis], half[axis] + 1, dtype=np.float64)
        # Sub-point coordinates (mm) along this axis: shape (voxels, subsamples).
        axes.append(((centres[:, None] + offsets[None, :]) * spacing[axis]) ** 2)
    a, b, c = axes
    distance = (a[:, None, None, :, None, None] + b[None, :, None, None, :, None]
                + c[None, None, :, None, None, :])
    inside = distance <= radius_mm**2
    kernel = inside.reshape(*inside.shape[:3], -1).mean(axis=-1)
    kernel.setflags(write=False)
    return kernel


def peak_kernel(spacing: Sequence[float], radius_mm: float = PEAK_RADIUS_MM,
                subsamples: int = SUBSAMPLES) -> np.ndarray:
    """Fraction of each voxel (of the given [slice,row,col] spacing) inside a sphere centred on the middle voxel."""
    return _peak_kernel_cached(tuple(round(float(s), 6) for s in spacing), float(radius_mm), int(subsamples))


def suv_peak(image: np.ndarray, mask: np.ndarray, spacing: Sequence[float],
             radius_mm: float = PEAK_RADIUS_MM) -> tuple[float, tuple[int, int, int]]:
    """(SUVpeak, centre voxel): the highest sphere mean over centres on the object's voxels."""
    if not mask.any():
        raise ValueError("An empty object has no SUVpeak.")
    kernel = peak_kernel(spacing, radius_mm)
    margin = np.array(kernel.shape) // 2
    found = np.argwhere(mask)
    low = np.maximum(found.min(axis=0) - margin, 0)
    high = np.minimum(found.max(axis=0) + margin + 1, image.shape)
    box = tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high, strict=True))
    values = np.asarray(image[box], dtype=np.float64)
    weighted = ndimage.correlate(values, kernel, mode="constant", cval=0.0)
    # Normalised convolution: divide by the kernel weight that falls inside the image. The box reaches a full
    # kernel radius beyond the object unless the image ends first, so zeros outside the box are outside the image.
    weight = ndimage.correlate(np.ones(values.shape, dtype=np.float64), kernel, mode="constant", cval=0.0)
    means = np.where(mask[box], weighted / np.maximum(weight, 1e-12), -np.inf)
    flat = int(np.argmax(means))
    local = np.unravel_index(flat, means.shape)
    centre = tuple(int(i + lo) for i, lo in zip(local, low, strict=True))
    return float(means.flat[flat]), centre  # type: ignore[return-value]


def object_statistics(image: np.ndarray, objects: np.ndarray, affine: np.ndarray,
                      ct_on_pet: np.ndarray | None = None,
                      object_ids: Iterable[int] | None = None) -> list[ObjectStats]:
    """Statistics of every object id (> 0) in `objects` (or of `object_ids`), on `image`'s grid."""
    if image.shape != objects.shape:
        raise ValueError(f"The object map {objects.shape} is not on the image grid {image.shape}.")
    if ct_on_pet is not None and ct_on_pet.shape != image.shape:
        raise ValueError("The CT must be resampled onto the PET grid first.")
    spacing = spacing_of(affine)
    voxel_ml = voxel_volume_ml(affine)
    ids = sorted(int(i) for i in (object_ids if object_ids is not None else np.unique(objects)) if int(i) > 0)
    boxes = ndimage.find_objects(objects.astype(np.int64, copy=False)) if ids else []
    results = []
    for object_id in ids:
        box = boxes[object_id - 1] if object_id - 1 < len(boxes) else None
        if box is None:
            continue
        local = objects[box] == object_id
        values = np.asarray(image[box], dtype=np.float64)[local]
        count = int(local.sum())
        arg = int(np.argmax(values))
        max_index = tuple(int(i + s.start) for i, s in zip(np.argwhere(local)[arg], box, strict=True))
        mean = float(values.mean())
        volume = count * voxel_ml
        mask = np.zeros(image.shape, dtype=bool)
        mask[box] = local
        peak, peak_index = suv_peak(image, mask, spacing)
        hu = float(np.asarray(ct_on_pet[box], dtype=np.float64)[local].mean()) if ct_on_pet is not None else None
        results.append(ObjectStats(id=object_id, voxels=count, volume_ml=volume, suv_max=float(values[arg]),
                                   suv_mean=mean, suv_peak=peak, mtv_ml=volume, tlg=mean * volume,
                                   suv_max_index=max_index, suv_peak_index=peak_index, hu_mean=hu))  # type: ignore[arg-type]
    return results


def totals(stats: Sequence[ObjectStats], lesion_ids: Iterable[int]) -> dict:
    """Per-scan totals over lesion objects: total MTV (ml), total TLG (g) and the lesion count."""
    lesions = set(lesion_ids)
    chosen = [s for s in stats if s.id in lesions]
    return {"lesion_count": len(chosen), "total_mtv_ml": float(sum(s.mtv_ml for s in chosen)),
            "total_tlg": float(sum(s.tlg for s in chosen))}


def rounded(row: Mapping, digits: int = 6) -> dict:
    """JSON-friendly copy with floats rounded (stable text in exports)."""
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in row.items()}
