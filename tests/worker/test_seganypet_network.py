"""The SegAnyPET network: official state-dict layout, reference quirks, forward shapes."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest
import torch

from worker.seganypet.image_encoder import (
    Attention3D,
    Block3D,
    decomposed_rel_pos_bias,
    window_partition,
    window_unpartition,
)
from worker.seganypet.model import (
    DEMO,
    VIT_B_ORI,
    Sam3D,
    Sam3DConfig,
    build_sam3d_vit_b_ori,
    count_parameters,
    variant_name,
)
from worker.seganypet.prompt_encoder import PromptEncoder3D

LAYOUT_NAME = "seganypet_vit_b_ori_state_dict.txt"
# sha256 of the official layout's "name shape" lines (file order); lets the layout check run even where
# the shared file is not checked out.
LAYOUT_SHA256 = "cb67938e017962dc9396bb2082898b204586693afd664702003b5d5837a31fc7"
PUBLISHED_ELEMENTS = {"image_encoder": 92_924_928, "prompt_encoder": 9_052, "mask_decoder": 7_575_636}


# A copy of ../shared/seganypet_vit_b_ori_state_dict.txt, kept with the tests so they run anywhere.
LAYOUT_FILE = Path(__file__).resolve().parent / "data" / LAYOUT_NAME


def parse_layout(path: Path) -> dict[str, tuple[int, ...]]:
    layout = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shape = line.split(" ", 1)
        layout[name] = tuple(int(n) for n in re.findall(r"\d+", shape))
    return layout


def meta_model(config: Sam3DConfig) -> Sam3D:
    with torch.device("meta"):
        return Sam3D(config)


def model_layout(model: Sam3D) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def test_vit_b_ori_state_dict_equals_the_official_layout_file():
    expected = parse_layout(LAYOUT_FILE)
    ours = model_layout(meta_model(VIT_B_ORI))
    assert len(expected) == 324
    assert list(ours) == list(expected)
    assert ours == expected


def test_vit_b_ori_state_dict_matches_the_layout_fingerprint():
    ours = model_layout(meta_model(VIT_B_ORI))
    lines = "\n".join(f"{name} {shape}" for name, shape in ours.items())
    assert len(ours) == 324
    assert hashlib.sha256(lines.encode()).hexdigest() == LAYOUT_SHA256


def test_parameter_counts_match_the_published_network():
    model = meta_model(VIT_B_ORI)
    for part, elements in PUBLISHED_ELEMENTS.items():
        assert sum(t.numel() for name, t in model.state_dict().items() if name.startswith(part)) == elements
    assert count_parameters(model) == 100_509_232
    assert count_parameters(meta_model(DEMO)) < 10_000_000


def test_known_variants_are_named_and_configs_round_trip():
    assert variant_name(VIT_B_ORI) == "vit_b_ori"
    assert variant_name(DEMO) == "demo"
    assert variant_name(Sam3DConfig(encoder_depth=3)) == "custom"
    assert Sam3DConfig.from_dict(DEMO.to_dict()) == DEMO


def test_a_non_global_block_pads_8_cubed_tokens_to_one_14_cubed_window():
    x = torch.randn(1, 8, 8, 8, 5)
    windows, padded = window_partition(x, 14)
    assert windows.shape == (1, 14, 14, 14, 5)
    assert padded == (14, 14, 14)
    assert torch.equal(windows[0, :8, :8, :8], x[0])
    assert not windows[0, 8:].any() and not windows[0, :, 8:].any() and not windows[0, :, :, 8:].any()
    assert torch.equal(window_unpartition(windows, 14, padded, (8, 8, 8)), x)


def test_window_partition_round_trips_several_windows():
    x = torch.randn(2, 10, 10, 10, 3)
    windows, padded = window_partition(x, 4)
    assert windows.shape == (2 * 27, 4, 4, 4, 3)
    assert torch.equal(window_unpartition(windows, 4, padded, (10, 10, 10)), x)


def test_vit_b_ori_blocks_use_window_14_except_the_global_ones():
    model = meta_model(VIT_B_ORI)
    windows = [block.window_size for block in model.image_encoder.blocks]
    assert windows == [0 if i in (2, 5, 8, 11) else 14 for i in range(12)]


def _deterministic_block(window: int) -> Block3D:
    block = Block3D(
        dim=8, num_heads=2, mlp_ratio=4.0, qkv_bias=True, window_size=window, grid=(4, 4, 4)
    ).double()
    with torch.no_grad():
        for i, (_, p) in enumerate(sorted(block.named_parameters())):
            values = 0.4 * torch.sin(torch.arange(p.numel(), dtype=torch.float64) * 0.731 + 1.3 * i)
            p.copy_(values.reshape(p.shape))
    return block


@pytest.mark.parametrize(
    ("window", "expected_row", "expected_sum"),
    [
        # Produced by the published SAM-Med3D/SegAnyPET Block3D (float64) with the same weights and input.
        (
            6,
            [1.9548908160323288, 0.5194908827024151, 0.8215935218988641, 1.827819062489533],
            -19.68849881668629,
        ),
        (
            0,
            [2.1649332635882725, 0.7014634075151625, 1.0638976233529422, 2.016004468245026],
            56.99914601152889,
        ),
    ],
)
def test_blocks_reproduce_the_reference_outputs(window, expected_row, expected_sum):
    block = _deterministic_block(window)
    x = torch.cos(torch.arange(4 * 4 * 4 * 8, dtype=torch.float64) * 0.117).reshape(1, 4, 4, 4, 8)
    with torch.no_grad():
        for skip_padded_queries in (True, False):
            block.skip_padded_queries = skip_padded_queries
            out = block(x)
            assert out[0, :, 1, 2, 3].tolist() == pytest.approx(expected_row, abs=1e-10)
            assert out.sum().item() == pytest.approx(expected_sum, abs=1e-9)


def test_skipping_padded_queries_equals_the_literal_pad_and_partition_path():
    torch.manual_seed(3)
    block = Block3D(
        dim=24, num_heads=3, mlp_ratio=2.0, qkv_bias=True, window_size=14, grid=(8, 8, 8)
    ).double()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
    x = torch.randn(1, 8, 8, 8, 24, dtype=torch.float64)
    with torch.no_grad():
        fast = block(x)
        block.skip_padded_queries = False
        literal = block(x)
    torch.testing.assert_close(fast, literal, rtol=0, atol=1e-10)


def test_relative_position_bias_follows_the_reference_broadcasting():
    torch.manual_seed(0)
    size, channels = 3, 2
    q = torch.randn(1, size, size, size, channels, dtype=torch.float64)
    tables = tuple(torch.randn(2 * size - 1, channels, dtype=torch.float64) for _ in range(3))
    bias = decomposed_rel_pos_bias(q, q, tables, size).reshape(1, *(size,) * 6)
    r_d, r_h, r_w = tables
    offset = size - 1
    for d, h, w, kd, kh, kw in torch.cartesian_prod(*(torch.arange(size),) * 6).tolist():
        # q[d,h,w]·Rd[d-kw] + q[d,h,kd]·Rh[h-kw] + q[d,h,kh]·Rw[kh-kw] (see decomposed_rel_pos_bias)
        expected = (
            q[0, d, h, w] @ r_d[d - kw + offset]
            + q[0, d, h, kd] @ r_h[h - kw + offset]
            + q[0, d, h, kh] @ r_w[kh - kw + offset]
        )
        assert bias[0, d, h, w, kd, kh, kw].item() == pytest.approx(expected.item(), abs=1e-12)


def test_attention_rejects_a_non_cubic_grid():
    attention = Attention3D(8, 2, True, (4, 4, 4))
    with pytest.raises(ValueError, match="cubic"):
        attention(torch.randn(1, 4, 4, 3, 8))


def _prompt_encoder() -> PromptEncoder3D:
    torch.manual_seed(1)
    return PromptEncoder3D(
        embed_dim=384, image_embedding_size=(8, 8, 8), input_image_size=(128, 128, 128), mask_in_chans=16
    )


def test_fourier_features_are_sin_cos_sin():
    encoder = _prompt_encoder()
    features = encoder.pe_layer.encode_points(torch.rand(1, 5, 3) * 128, (128, 128, 128))
    third = 128
    torch.testing.assert_close(features[..., :third], features[..., 2 * third :])
    torch.testing.assert_close(
        features[..., :third] ** 2 + features[..., third : 2 * third] ** 2, torch.ones(1, 5, third)
    )


def test_dense_positional_grid_swaps_axes_0_and_1():
    encoder = _prompt_encoder()
    dense = encoder.get_dense_pe()[0]  # (C, 8, 8, 8)
    for a, b, c in [(0, 5, 2), (3, 1, 7), (6, 6, 0)]:
        # Token (a, b, c) covers crop voxels 16a..16a+15 etc.; its encoding is that of the point whose
        # *first* coordinate is along axis 1 (the voxel-centre +0.5 is already in the 16·i + 8).
        point = torch.tensor([[[16.0 * b + 8, 16.0 * a + 8, 16.0 * c + 8]]])
        encoded = encoder.pe_layer.encode_points(point, (128, 128, 128))[0, 0]
        torch.testing.assert_close(dense[:, a, b, c], encoded, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(dense[:, 0, 5, 2], dense[:, 5, 0, 2])


def test_points_get_label_embeddings_and_one_padding_token():
    encoder = _prompt_encoder()
    coords = torch.tensor([[[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]]])
    labels = torch.tensor([[1, 0]])
    sparse, dense = encoder(points=(coords, labels), masks=torch.zeros(1, 1, 32, 32, 32))
    assert sparse.shape == (1, 3, 384)
    assert dense.shape == (1, 384, 8, 8, 8)
    encoding = encoder.pe_layer.encode_points(coords + 0.5, (128, 128, 128))
    torch.testing.assert_close(sparse[0, 0], encoding[0, 0] + encoder.point_embeddings[1].weight[0])
    torch.testing.assert_close(sparse[0, 1], encoding[0, 1] + encoder.point_embeddings[0].weight[0])
    torch.testing.assert_close(sparse[0, 2], encoder.not_a_point_embed.weight[0])


def test_demo_variant_forward_shapes():
    torch.manual_seed(0)
    model = Sam3D(DEMO).eval()
    with torch.inference_mode():
        embedding = model.encode_image(torch.randn(1, 1, 64, 64, 64))
        logits, iou = model.decode(embedding, torch.tensor([[[32.0, 32.0, 32.0]]]), torch.tensor([[1]]))
    assert embedding.shape == (1, 192, 8, 8, 8)
    assert logits.shape == (1, 1, 32, 32, 32)
    assert iou.shape == (1, 1)
    assert torch.isfinite(logits).all()


def test_encoder_rejects_a_crop_of_another_size():
    model = Sam3D(
        Sam3DConfig(
            encoder_embed_dim=24, encoder_depth=1, encoder_num_heads=2, encoder_global_attn_indexes=()
        )
    )
    with pytest.raises(ValueError, match="128"):
        model.encode_image(torch.zeros(1, 1, 96, 96, 96))


@pytest.mark.slow
def test_vit_b_ori_forward_shapes():
    torch.manual_seed(0)
    model = build_sam3d_vit_b_ori().eval()
    with torch.inference_mode():
        embedding = model.encode_image(torch.randn(1, 1, 128, 128, 128))
        points = torch.tensor([[[64.0, 60.0, 70.0], [30.0, 64.0, 64.0]]])
        logits, iou = model.decode(embedding, points, torch.tensor([[1, 0]]), torch.zeros(1, 1, 32, 32, 32))
    assert embedding.shape == (1, 384, 8, 8, 8)
    assert logits.shape == (1, 1, 32, 32, 32)
    assert iou.shape == (1, 1)
    assert torch.isfinite(logits).all() and not math.isnan(iou.item())
