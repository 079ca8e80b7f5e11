"""The demo-model training script (a few steps of a tiny network) and the shipped demo weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from backend.imaging.nifti_io import read_nifti, write_nifti
from worker.engines.classical import ClassicalPETEngine
from worker.engines.seganypet_engine import SegAnyPETEngine
from worker.phantoms import make_phantom
from worker.seganypet.checkpoint import load_checkpoint
from worker.seganypet.model import Sam3DConfig
from worker.seganypet.train import train
from worker.seganypet.train_clicks import upsample_roi
from worker.seganypet.train_data import DatasetError, dataset_pool, phantom_spec, read_volume
from worker.seganypet.train_eval import click_dice, evaluation_cases
from worker.seganypet.train_options import FINAL_EVAL_SEEDS, KIND_TOKENS, TrainOptions

TINY = Sam3DConfig(
    encoder_embed_dim=48,
    encoder_depth=2,
    encoder_num_heads=3,
    encoder_global_attn_indexes=(1,),
    prompt_embed_dim=48,
    decoder_depth=1,
    decoder_mlp_dim=96,
    iou_head_hidden_dim=32,
)
DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "worker" / "seganypet" / "weights" / "demo.pt"
# Measured on the shipped weights (see MODEL_CARD.md), with a margin for platform differences.
DEMO_LESION_DICE_AFTER_3_CLICKS = 0.85  # measured 0.90 (3 lesions of seed 90001)


def tiny_options(tmp_path: Path, **changes: object) -> TrainOptions:
    options = TrainOptions(
        out=tmp_path / "tiny.pt",
        steps=10,
        minutes=5.0,
        seed=3,
        threads=1,
        batch_crops=1,
        objects_per_crop=1,
        clicks=2,
        lr=3e-3,
        warmup_steps=1,
        train_phantoms=1,
        eval_minutes=0.0,
        lesion_fraction=1.0,
        config=TINY,
        log_file=tmp_path / "tiny.log",
    )
    for name, value in changes.items():
        setattr(options, name, value)
    return options


def test_a_few_training_steps_lower_the_loss_and_write_a_checkpoint_that_reloads_strictly(tmp_path):
    report = train(tiny_options(tmp_path))
    assert report.steps == 10
    assert np.mean(report.losses[-3:]) < np.mean(report.losses[:3])
    loaded = load_checkpoint(tmp_path / "tiny.pt")  # strict: every key, every shape
    assert loaded.config == TINY
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # stored fp16, loaded fp32
    metadata = loaded.metadata
    assert metadata["kind_tokens"] == KIND_TOKENS
    assert metadata["training"]["steps"] == 10
    assert metadata["training"]["train_phantom_seeds"] == [1000]
    assert not set(metadata["training"]["train_phantom_seeds"]) & set(metadata["training"]["held_out_seeds"])
    engine = SegAnyPETEngine.from_checkpoint(tmp_path / "tiny.pt", device="cpu")
    assert isinstance(engine.first_click_prior, ClassicalPETEngine)
    assert (tmp_path / "tiny.log").read_text().count("step") >= 3


def test_training_is_deterministic_given_the_seed(tmp_path):
    first = train(tiny_options(tmp_path / "a", steps=2))
    second = train(tiny_options(tmp_path / "b", steps=2))
    assert first.losses == second.losses


def test_fine_tuning_starts_from_the_given_checkpoint(tmp_path):
    train(tiny_options(tmp_path / "a", steps=2))
    tuned = train(
        tiny_options(tmp_path / "b", steps=1, init=tmp_path / "a" / "tiny.pt", lr=0.0, warmup_steps=0)
    )
    before = load_checkpoint(tmp_path / "a" / "tiny.pt").model.state_dict()
    after = load_checkpoint(tmp_path / "b" / "tiny.pt").model.state_dict()
    assert tuned.steps == 1
    for name, tensor in before.items():
        torch.testing.assert_close(after[name], tensor)  # lr 0: unchanged, so it did start from ``init``


def test_the_region_upsampling_equals_the_engines_full_upsampling():
    low = torch.randn(2, 32, 32, 32)
    full = torch.nn.functional.interpolate(low[None], size=(128,) * 3, mode="trilinear", align_corners=False)[
        0
    ]
    for roi in [(slice(0, 128),) * 3, (slice(5, 37), slice(60, 61), slice(100, 128))]:
        torch.testing.assert_close(upsample_roi(low, roi, 4), full[(slice(None), *roi)])


def test_training_and_held_out_phantoms_never_share_a_seed():
    assert all(phantom_spec(seed).seed == seed for seed in (1000, 1063))
    assert not set(range(1000, 1064)) & set(FINAL_EVAL_SEEDS)


def test_the_shipped_demo_weights_segment_held_out_lesions():
    torch.set_num_threads(1)
    engine = SegAnyPETEngine.from_checkpoint(DEMO_WEIGHTS, device="cpu")
    assert engine.variant == "demo"
    cases = [c for c in evaluation_cases(FINAL_EVAL_SEEDS[:1]) if c.label == "lesion"][:3]
    assert cases
    summary = click_dice(engine, cases, n_clicks=3)
    assert summary["lesion"][3] >= DEMO_LESION_DICE_AFTER_3_CLICKS


# ----------------------------------------------------------------------------- fine-tuning on an export


def write_export_folder(folder: Path) -> tuple[np.ndarray, int]:
    """The parts of an unzipped export that training reads: manifest.json and the nnU-Net dataset."""
    phantom = make_phantom(seed=11, shape=(64, 48, 48), spacing=(4.0, 4.0, 4.0), n_lesions=4)
    liver = next(value for value, name in phantom.label_names.items() if name == "liver")
    label_map = np.zeros(phantom.suv.shape, np.uint8)
    label_map[phantom.labels == liver] = 2
    label_map[phantom.lesion_labels > 0] = 1
    (folder / "manifest.json").parent.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"labels": [
        {"value": 1, "name": "lesion", "kind": "lesion", "nnunet_value": 1},
        {"value": 2, "name": "liver", "kind": "organ", "nnunet_value": 2}]}))
    root = folder / "nnunet" / "Dataset501_Studio"
    write_nifti(root / "imagesTr" / "scan00001_0000.nii.gz", phantom.suv, phantom.pet_affine)
    write_nifti(root / "labelsTr" / "scan00001.nii.gz", label_map, phantom.pet_affine, kind="label")
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lesion": 1, "liver": 2}}))
    components = ndimage.label(label_map == 1, ndimage.generate_binary_structure(3, 1))[0]
    sizes = np.bincount(components.ravel())[1:]
    return phantom.suv, int((sizes >= 3).sum())


def test_an_exported_dataset_becomes_training_volumes_with_objects_by_label_kind(tmp_path):
    suv, lesions = write_export_folder(tmp_path / "export")
    (case,) = dataset_pool(tmp_path / "export", 2.0)
    assert case.case == "scan00001" and case.spec is None
    np.testing.assert_allclose(case.volume, suv, rtol=1e-5, atol=1e-5)
    assert [o.name for o in case.organs] == ["liver"]
    assert len(case.lesions) == lesions > 0
    assert all(o.kind == "lesion" for o in case.lesions)


def test_fine_tuning_on_an_export_records_its_cases(tmp_path):
    write_export_folder(tmp_path / "export")
    report = train(tiny_options(tmp_path, steps=2, train_phantoms=0, dataset=tmp_path / "export"))
    assert report.steps == 2
    training = load_checkpoint(tmp_path / "tiny.pt").metadata["training"]
    assert training["dataset_cases"] == ["scan00001"] and training["train_phantom_seeds"] == []


def test_a_folder_that_is_not_an_export_is_refused_with_a_reason(tmp_path):
    with pytest.raises(DatasetError, match="manifest.json"):
        dataset_pool(tmp_path, 2.0)
    (tmp_path / "manifest.json").write_text(json.dumps({"labels": []}))
    with pytest.raises(DatasetError, match="nnU-Net"):
        dataset_pool(tmp_path, 2.0)


@pytest.mark.parametrize(
    ("array_of", "kind"),
    [
        (lambda p: p.suv, "image"),
        (lambda p: p.labels, "label"),
        (lambda p: p.lesion_labels.astype(np.uint16) * 300, "label"),  # uint16 labels
        (lambda p: p.labels.astype(np.float32), "label"),  # labels stored as floats
    ],
)
def test_training_reads_a_nifti_volume_as_the_backend_does(tmp_path, array_of, kind):
    # worker/ may not import backend.imaging.nifti_io, so training reads NIfTI itself: same arrays.
    phantom = make_phantom(seed=3, shape=(30, 20, 24), spacing=(4.0, 3.0, 5.0), orientation="oblique",
                           feet_first=True)
    array = array_of(phantom)
    path = write_nifti(tmp_path / "volume.nii.gz", array, phantom.pet_affine,
                       kind="image" if array.dtype == np.float32 and kind == "label" else kind)
    expected = read_nifti(path, kind=kind)
    found = read_volume(path, label=kind == "label")
    assert found.array.dtype == expected.array.dtype
    np.testing.assert_array_equal(found.array, expected.array)
    assert found.spacing == expected.spacing == pytest.approx((4.0, 3.0, 5.0))
