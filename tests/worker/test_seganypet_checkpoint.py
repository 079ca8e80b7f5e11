"""Loading SegAnyPET checkpoints: official layouts, strictness, trust, variant detection."""

from __future__ import annotations

import argparse

import pytest
import torch

from worker.seganypet.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from worker.seganypet.model import DEMO, VIT_B_ORI, Sam3D, Sam3DConfig

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


class NotATensor:
    """A pickled object the safe loader must refuse."""

    def __init__(self) -> None:
        self.note = "arbitrary object"


def random_state(config: Sam3DConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in Sam3D(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    """Random tensors with the shapes of an official vit_b_ori checkpoint (324 entries)."""
    state = random_state(VIT_B_ORI)
    assert len(state) == 324
    return state


def training_checkpoint(state: dict[str, torch.Tensor], prefix: str = "") -> dict:
    """What the SAM-Med3D/SegAnyPET training script saves."""
    return {
        "epoch": 200,
        "model_state_dict": {prefix + name: tensor for name, tensor in state.items()},
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 8e-5, "params": [0, 1]}]},
        "lr_scheduler_state_dict": {"milestones": {120: 1, 180: 1}, "gamma": 0.1},
        "losses": [0.9, 0.5],
        "dices": [0.4, 0.8],
        "best_loss": 0.5,
        "best_dice": 0.8,
        "args": argparse.Namespace(
            model_type="vit_b_ori", img_size=128, lr=8e-5, gpu_ids=[0, 1], multi_gpu=True
        ),
        "used_datas": ["case_001", "case_002"],
    }


def assert_same_weights(model: Sam3D, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    for name in (
        "image_encoder.pos_embed",
        "image_encoder.blocks.11.attn.rel_pos_w",
        "mask_decoder.iou_token.weight",
    ):
        assert torch.equal(loaded[name], state[name])


def test_official_checkpoint_file_with_a_pickled_namespace_loads_strictly(official_state, tmp_path):
    path = tmp_path / "seganypet_v2.pth"
    torch.save(training_checkpoint(official_state), path)
    loaded = load_checkpoint(path)  # argparse.Namespace is allowed without trusting arbitrary pickles
    assert loaded.variant == "vit_b_ori"
    assert loaded.config == VIT_B_ORI
    assert not loaded.model.training
    assert_same_weights(loaded.model, official_state)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in loaded.model.parameters())


def test_a_module_prefix_from_data_parallel_is_stripped(official_state):
    loaded = model_from_checkpoint(training_checkpoint(official_state, prefix="module."))
    assert loaded.variant == "vit_b_ori"
    assert_same_weights(loaded.model, official_state)


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model_state_dict"])
def test_bare_and_wrapped_state_dicts_load(official_state, wrap):
    obj = official_state if wrap == "bare" else {wrap: official_state, "epoch": 1}
    assert_same_weights(model_from_checkpoint(obj).model, official_state)


def test_a_missing_key_fails_and_names_it(official_state):
    state = dict(official_state)
    del state["mask_decoder.iou_prediction_head.layers.2.bias"]
    with pytest.raises(CheckpointMismatchError) as caught:
        model_from_checkpoint(training_checkpoint(state))
    message = str(caught.value)
    assert "1 missing key(s): mask_decoder.iou_prediction_head.layers.2.bias" in message
    assert "vit_b_ori" in message
    assert caught.value.missing == ["mask_decoder.iou_prediction_head.layers.2.bias"]


def test_a_wrong_shape_fails_and_shows_both_shapes(official_state):
    state = dict(official_state)
    state["prompt_encoder.not_a_point_embed.weight"] = torch.zeros(1, 256)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"not_a_point_embed\.weight \(checkpoint \(1, 256\), network \(1, 384\)\)",
    ):
        model_from_checkpoint(state)


def test_an_unexpected_key_fails_and_names_it(official_state):
    state = dict(official_state)
    state["prompt_encoder.point_embeddings.2.weight"] = torch.zeros(1, 384)
    with pytest.raises(
        CheckpointMismatchError, match=r"unexpected key\(s\): prompt_encoder\.point_embeddings\.2"
    ):
        model_from_checkpoint(state)


def test_a_checkpoint_of_another_size_is_reported_against_the_detected_network(official_state):
    state = {name: t for name, t in official_state.items() if not name.startswith("image_encoder.blocks.11.")}
    loaded = model_from_checkpoint(state)  # a consistent 11-block network is simply another variant
    assert loaded.variant == "custom"
    assert loaded.config.encoder_depth == 11
    with pytest.raises(CheckpointError, match="expected a vit_b_ori checkpoint, found custom"):
        model_from_checkpoint(state, expected_variant="vit_b_ori")


def test_variants_are_detected_from_shapes_alone():
    assert model_from_checkpoint(random_state(DEMO)).variant == "demo"
    loaded = model_from_checkpoint(random_state(TINY))
    assert loaded.variant == "custom"
    assert loaded.config == TINY


def test_our_checkpoints_round_trip_and_need_no_trust(tmp_path):
    torch.manual_seed(0)
    model = Sam3D(TINY)
    path = tmp_path / "demo.pt"
    save_checkpoint(model, path, metadata={"trained_on": "synthetic phantoms", "steps": 10})
    torch.load(path, weights_only=True)  # plain tensors and values only
    loaded = load_checkpoint(path)
    assert loaded.config == TINY
    assert loaded.metadata == {"trained_on": "synthetic phantoms", "steps": 10}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)


def test_a_half_precision_checkpoint_loads_as_float32():
    state = {name: t.half() for name, t in random_state(TINY).items()}
    loaded = model_from_checkpoint(state)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())


def test_other_pickled_objects_need_an_explicit_trust_flag(tmp_path):
    path = tmp_path / "untrusted.pth"
    checkpoint = training_checkpoint(random_state(TINY))
    checkpoint["extra"] = NotATensor()
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="trust_pickle=True") as caught:
        load_checkpoint(path)
    assert "NotATensor" in str(caught.value)
    assert load_checkpoint(path, trust_pickle=True).config == TINY


def test_unreadable_inputs_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="must be a dict"):
        model_from_checkpoint([1, 2, 3])
    with pytest.raises(CheckpointError, match="top-level keys: epoch, optimizer"):
        model_from_checkpoint({"epoch": 1, "optimizer": {"lr": 0.1}})
