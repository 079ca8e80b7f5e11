"""Training data of the SegAnyPET demo model: the pool of volumes and the crops drawn from it.

The pool holds synthetic phantoms (training seeds only; everything about one follows from its seed) and,
for fine-tuning, the cases of an exported dataset. A crop is centred on the first click of a primary
object exactly as the engine centres it, with the engine's own input functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from worker.engines.base import Point, Prompts
from worker.engines.seganypet_engine import (
    IsotropicGrid,
    crop_image,
    crop_positions,
    make_classical_prior,
    mask_to_prior_logits,
    origin_for_centre,
    sample_linear,
)
from worker.evaluation import DEFAULT_ORGANS, region_centre
from worker.phantoms import LABEL_NAMES, LESION_LABEL, LPS_TO_RAS, Phantom, make_phantom
from worker.seganypet.model import Sam3DConfig
from worker.seganypet.train_options import GENERIC_TOKEN, KIND_TOKENS, TrainOptions

ORGAN_NAMES = tuple(name for value, name in sorted(LABEL_NAMES.items()) if value != LESION_LABEL)
# Phantom geometries of the pool: clinical-like PET grids ([slice, row, col] shape, spacing in mm).
GEOMETRIES: tuple[tuple[tuple[int, int, int], tuple[float, float, float]], ...] = (
    ((80, 64, 64), (4.0, 4.0, 4.0)),
    ((100, 80, 80), (3.27, 3.6, 3.6)),
    ((64, 52, 52), (5.0, 5.0, 5.0)),
)
MIN_TRAIN_LESION_MM = 7.0
# Voxels around the object (crop resolution) where the full-resolution loss is computed.
ROI_MARGIN = 8


# --------------------------------------------------------------------------- phantoms


@dataclass(frozen=True)
class PhantomSpec:
    seed: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    tracer: str
    feet_first: bool
    n_lesions: int
    psf_fwhm_mm: float
    noise_level: float

    def build(self) -> Phantom:
        return make_phantom(
            seed=self.seed,
            shape=self.shape,
            spacing=self.spacing,
            tracer=self.tracer,  # type: ignore[arg-type]
            n_lesions=self.n_lesions,
            feet_first=self.feet_first,
            psf_fwhm_mm=self.psf_fwhm_mm,
            noise_level=self.noise_level,
        )


def phantom_spec(seed: int) -> PhantomSpec:
    """Everything about a pool phantom follows from its seed."""
    rng = np.random.default_rng([seed, 17])
    shape, spacing = GEOMETRIES[int(rng.integers(len(GEOMETRIES)))]
    return PhantomSpec(
        seed=seed,
        shape=shape,
        spacing=spacing,
        tracer="FDG" if rng.random() < 0.6 else "PSMA",
        feet_first=bool(rng.random() < 0.25),
        n_lesions=int(rng.integers(6, 13)),
        psf_fwhm_mm=float(rng.uniform(5.0, 8.0)),
        noise_level=float(rng.uniform(0.05, 0.12)),
    )


def eval_spec(seed: int) -> PhantomSpec:
    """Held-out phantoms: default and realistic-ish grids, both tracers, one feet-first."""
    index = seed % 4
    shape, spacing = GEOMETRIES[index % 2]
    return PhantomSpec(
        seed=seed,
        shape=shape,
        spacing=spacing,
        tracer=("FDG", "PSMA", "PSMA", "FDG")[index],
        feet_first=index == 3,
        n_lesions=10,
        psf_fwhm_mm=6.0,
        noise_level=0.08,
    )


@dataclass
class TrainObject:
    kind: str  # "lesion" or "organ"
    name: str
    target: np.ndarray  # bool, original grid
    lower: np.ndarray  # bounding box on the original grid, inclusive
    upper: np.ndarray
    _centre: tuple[int, int, int] | None = None
    _interior: np.ndarray | None = None


@dataclass
class PoolPhantom:
    """One training volume: a generated phantom (``spec``) or a case of an exported dataset."""

    spec: PhantomSpec | None
    volume: np.ndarray
    spacing: tuple[float, float, float]
    grid: IsotropicGrid
    lesions: list[TrainObject]
    organs: list[TrainObject]
    case: str = ""

    @property
    def session_key(self) -> str:
        return f"train-{self.spec.seed}" if self.spec is not None else f"train-{self.case}"


def pool_phantom(spec: PhantomSpec, crop_spacing_mm: float) -> PoolPhantom:
    phantom = spec.build()
    spacing = tuple(float(s) for s in phantom.pet_spacing)
    lesions, organs = [], []
    for lesion in phantom.lesions:
        if lesion.diameter_mm < MIN_TRAIN_LESION_MM or lesion.voxel_count < 3:
            continue
        lesions.append(_object("lesion", f"lesion-{lesion.index}", phantom.lesion_labels == lesion.index))
    for value, name in sorted(phantom.label_names.items()):
        if value == LESION_LABEL:
            continue
        target = phantom.labels == value
        if int(target.sum()) >= 8:
            organs.append(_object("organ", name, target))
    grid = IsotropicGrid(phantom.suv.shape, spacing, crop_spacing_mm)  # type: ignore[arg-type]
    return PoolPhantom(spec, phantom.suv, spacing, grid, lesions, organs)  # type: ignore[arg-type]


class DatasetError(ValueError):
    """An export folder that cannot be used for training; the message says what is wrong."""


@dataclass
class Volume:
    array: np.ndarray  # [slice, row, col]: float32 for images, uint8/uint16 for labels
    spacing: tuple[float, float, float]  # (slice, row, col) mm

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]


def read_volume(path: Path, label: bool = False) -> Volume:
    """A NIfTI volume in the array convention of backend.imaging.nifti_io.read_nifti (which worker/ may
    not import): nibabel's data[i, j, k] transposed to [slice, row, col], spacing from the LPS affine;
    images as float32 with the scaling applied, label maps as whole numbers in uint8/uint16."""
    try:
        image = nib.load(str(path))
    except Exception as error:  # noqa: BLE001 - nibabel raises many types for bad files
        raise DatasetError(f"{path.name}: not a readable NIfTI file: {error}") from error
    if label:
        data = _three_dimensional(path, np.asanyarray(image.dataobj))
        if not np.issubdtype(data.dtype, np.integer):
            scaled = _three_dimensional(path, image.get_fdata(dtype=np.float64))
            data = np.rint(scaled)
            if np.any(np.abs(scaled - data) > 1e-3):
                raise DatasetError(f"{path.name}: a label map must hold whole numbers")
        if data.size and (data.min() < 0 or data.max() > np.iinfo(np.uint16).max):
            raise DatasetError(f"{path.name}: label values must lie in 0–65535")
        dtype = np.uint8 if data.size == 0 or data.max() <= np.iinfo(np.uint8).max else np.uint16
        data = data.astype(dtype)
    else:
        data = _three_dimensional(path, image.get_fdata(dtype=np.float32))
    # Our (slice, row, col) order is nibabel's (i, j, k) reversed, in LPS rather than RAS.
    affine = LPS_TO_RAS @ np.asarray(image.affine, dtype=np.float64)[:, [2, 1, 0, 3]]
    lengths = np.linalg.norm(affine[:3, :3], axis=0)
    spacing = (float(lengths[0]), float(lengths[1]), float(lengths[2]))
    return Volume(np.ascontiguousarray(data.transpose(2, 1, 0)), spacing)


def _three_dimensional(path: Path, data: np.ndarray) -> np.ndarray:
    if data.ndim == 4 and data.shape[3] == 1:
        return data[..., 0]
    if data.ndim != 3:
        raise DatasetError(f"{path.name}: expected a 3D volume, got an array of shape {data.shape}")
    return data


def dataset_pool(folder: Path, crop_spacing_mm: float) -> list[PoolPhantom]:
    """Training volumes from an unzipped SegAnyPET Studio export with its nnU-Net part: the PET (SUV)
    of every case with its approved label map. ``manifest.json`` says each label's kind: every
    connected component of a lesion label is a lesion, every organ label one organ."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DatasetError(f"{folder} has no manifest.json: unzip a SegAnyPET Studio export there")
    manifest = json.loads(manifest_path.read_text())
    kinds = {int(lb["nnunet_value"]): (lb["kind"], lb["name"]) for lb in manifest.get("labels", [])
             if lb.get("nnunet_value") is not None}
    roots = sorted(path.parent for path in folder.rglob("dataset.json"))
    if not roots:
        raise DatasetError(f"{folder} has no nnU-Net dataset (dataset.json); export with the nnU-Net format")
    pool = []
    structure = ndimage.generate_binary_structure(3, 1)
    for label_file in sorted(roots[0].glob("labelsTr/*.nii.gz")):
        case = label_file.name[: -len(".nii.gz")]
        image_file = roots[0] / "imagesTr" / f"{case}_0000.nii.gz"
        if not image_file.is_file():
            raise DatasetError(f"case {case}: {image_file.name} is missing")
        image, labels = read_volume(image_file), read_volume(label_file, label=True)
        if image.shape != labels.shape:
            raise DatasetError(f"case {case}: image {image.shape} and labels {labels.shape} differ")
        lesions, organs = [], []
        for value in sorted(int(v) for v in np.unique(labels.array) if v):
            kind, name = kinds.get(value, ("other", f"label-{value}"))
            region = labels.array == value
            if kind == "lesion":
                components, count = ndimage.label(region, structure=structure)
                for index in range(1, count + 1):
                    component = components == index
                    if int(component.sum()) >= 3:
                        lesions.append(_object("lesion", f"{name}-{index}", component))
            elif kind == "organ" and int(region.sum()) >= 8:
                organs.append(_object("organ", name, region))
        grid = IsotropicGrid(image.shape, image.spacing, crop_spacing_mm)
        pool.append(PoolPhantom(None, image.array, image.spacing, grid, lesions, organs, case=case))
    if not any(p.lesions or p.organs for p in pool):
        raise DatasetError(f"{folder}: no lesion or organ objects in the nnU-Net labels")
    return pool


def _object(kind: str, name: str, target: np.ndarray) -> TrainObject:
    where = np.argwhere(target)
    return TrainObject(kind, name, target, where.min(axis=0), where.max(axis=0))


def first_click(
    obj: TrainObject, spacing: Sequence[float], rng: np.random.Generator, random_p: float
) -> Point:
    """The evaluation's first click (distance-transform centre) or a random interior voxel."""
    if obj._centre is None:
        obj._centre = region_centre(obj.target, tuple(spacing))  # type: ignore[arg-type]
    if rng.random() >= random_p:
        return Point(obj._centre, True)
    if obj._interior is None:
        distance = ndimage.distance_transform_edt(np.pad(obj.target, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
        obj._interior = np.argwhere(distance >= 0.5 * distance.max())
    i, j, k = (int(v) for v in obj._interior[int(rng.integers(len(obj._interior)))])
    return Point((i, j, k), True)


# --------------------------------------------------------------------------- samples


@dataclass
class ObjectSample:
    kind: str
    click: np.ndarray  # crop voxel index of the first click
    prior: torch.Tensor  # (1, 32, 32, 32) first-click prior logits (zeros when none)
    target: np.ndarray  # bool (128, 128, 128): the object at crop resolution
    roi: tuple[slice, slice, slice]  # where the full-resolution loss and the clicks are computed
    pooled: torch.Tensor  # (1, 32, 32, 32) fraction of each low-res cell inside the object
    feedback_token: int


@dataclass
class CropSample:
    image: torch.Tensor  # (1, 128, 128, 128)
    objects: list[ObjectSample]


class SampleFactory:
    """Draws training crops from the phantom pool; mirrors what the engine does on a first click."""

    def __init__(self, pool: list[PoolPhantom], options: TrainOptions, config: Sam3DConfig) -> None:
        self.pool = pool
        self.options = options
        self.size = config.img_size
        self.stride = config.img_size // config.low_res_size
        self.prior_engine = make_classical_prior() if options.threshold_prior else None

    def crop(self, rng: np.random.Generator) -> CropSample:
        while True:
            phantom = self.pool[int(rng.integers(len(self.pool)))]
            primary = self._pick(phantom, rng)
            if primary is None:
                continue
            click = first_click(primary, phantom.spacing, rng, self.options.random_first_click)
            position = np.rint(phantom.grid.to_resampled(click.index)).astype(int)
            origin = origin_for_centre(position, self.size, self.stride)
            first = self._object(phantom, primary, click, origin, rng)
            if first is None:
                continue
            objects = [first]
            for extra in self._neighbours(phantom, primary, origin, rng):
                extra_click = first_click(extra, phantom.spacing, rng, self.options.random_first_click)
                sample = self._object(phantom, extra, extra_click, origin, rng)
                if sample is not None:
                    objects.append(sample)
            image = torch.from_numpy(crop_image(phantom.volume, phantom.grid, origin, self.size))[None]
            return CropSample(image, objects)

    def _pick(self, phantom: PoolPhantom, rng: np.random.Generator) -> TrainObject | None:
        if phantom.lesions and rng.random() < self.options.lesion_fraction:
            return phantom.lesions[int(rng.integers(len(phantom.lesions)))]
        if not phantom.organs:
            return None
        main = [o for o in phantom.organs if o.name in DEFAULT_ORGANS]
        choices = main if main and rng.random() < 0.7 else phantom.organs
        return choices[int(rng.integers(len(choices)))]

    def _neighbours(
        self,
        phantom: PoolPhantom,
        primary: TrainObject,
        origin: tuple[int, int, int],
        rng: np.random.Generator,
    ) -> list[TrainObject]:
        lo = np.asarray(origin) + 8
        hi = np.asarray(origin) + self.size - 8
        inside = [
            o
            for o in phantom.lesions + phantom.organs
            if o is not primary
            and np.all(phantom.grid.to_resampled(o.lower) >= lo)
            and np.all(phantom.grid.to_resampled(o.upper) <= hi)
        ]
        wanted = self.options.objects_per_crop - 1
        if len(inside) <= wanted:
            return inside
        lesions = [o for o in inside if o.kind == "lesion"]
        organs = [o for o in inside if o.kind == "organ"]
        picked: list[TrainObject] = []
        for _ in range(wanted):
            source = lesions if lesions and (not organs or rng.random() < 0.5) else organs
            picked.append(source.pop(int(rng.integers(len(source)))))
        return picked

    def _object(
        self,
        phantom: PoolPhantom,
        obj: TrainObject,
        click: Point,
        origin: tuple[int, int, int],
        rng: np.random.Generator,
    ) -> ObjectSample | None:
        size = self.size
        position = np.rint(phantom.grid.to_resampled(click.index)).astype(int)
        local = position - np.asarray(origin)
        if np.any(local < 0) or np.any(local >= size):
            return None
        positions = crop_positions(phantom.grid, origin, size)
        target = sample_linear(obj.target, positions) >= 0.5
        if not target.any():
            return None
        low = size // self.stride
        prior = torch.zeros((1, low, low, low))
        if self.prior_engine is not None:
            # Exactly the engine's first-click prior: the threshold engine's region as low-res logits.
            region = self.prior_engine.segment(
                phantom.volume, phantom.spacing, Prompts(points=(click,)), None, phantom.session_key
            ).mask
            if region.any():
                prior = mask_to_prior_logits(region, phantom.grid, origin, size, self.stride)[0]
        where = np.argwhere(target)
        lower = np.maximum(where.min(axis=0) - ROI_MARGIN, 0)
        upper = np.minimum(where.max(axis=0) + ROI_MARGIN + 1, size)
        roi = (slice(lower[0], upper[0]), slice(lower[1], upper[1]), slice(lower[2], upper[2]))
        pooled = F.avg_pool3d(torch.from_numpy(target.astype(np.float32))[None, None], self.stride)[0]
        known = rng.random() < self.options.kind_known_probability
        token = KIND_TOKENS[obj.kind] if known else GENERIC_TOKEN
        return ObjectSample(obj.kind, local, prior, target, roi, pooled, token)
