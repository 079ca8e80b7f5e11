"""The SegAnyPET engine: crops, embedding cache, previous logits, paste-back, large objects."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from worker.engines.base import Box, Point, PromptError, Prompts, SegmentationResult
from worker.engines.seganypet_engine import (
    MASK_PRIOR_LOGIT,
    IsotropicGrid,
    LRUByteCache,
    SegAnyPETEngine,
    SegAnyPETUnavailableError,
    create_seganypet_engine,
    mask_to_prior_logits,
    sample_linear,
    shift_logits,
)
from worker.seganypet.checkpoint import save_checkpoint
from worker.seganypet.model import Sam3D, Sam3DConfig

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
EMBEDDING_BYTES = 48 * 8**3 * 4
SESSION_BYTES = 32**3 * 4 + 256


def tiny_model(seed: int = 0) -> Sam3D:
    torch.manual_seed(seed)
    return Sam3D(TINY)


class EncoderCounter:
    def __init__(self, model: Sam3D) -> None:
        self.calls = 0
        model.image_encoder.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1


class BlobModel(Sam3D):
    """Decodes a ball of ``radius`` crop voxels around the first positive point; records its inputs."""

    def __init__(self, radius: float) -> None:
        super().__init__(TINY)
        self.radius = radius
        self.decoded: list[dict[str, object]] = []

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return torch.zeros(1, 48, 8, 8, 8)

    def decode(self, image_embedding, point_coords, point_labels, mask_logits=None):
        self.decoded.append(
            {"coords": point_coords.clone(), "labels": point_labels.clone(), "prior": mask_logits}
        )
        centre = point_coords[0][point_labels[0] == 1][0]
        # Low-res cell j is centred on crop voxel 4j + 1.5 once upsampled (align_corners=False).
        axis = torch.arange(32, dtype=torch.float32) * 4 + 1.5
        dd, hh, ww = torch.meshgrid(axis - centre[0], axis - centre[1], axis - centre[2], indexing="ij")
        distance = torch.sqrt(dd**2 + hh**2 + ww**2)
        return ((self.radius - distance) / 2)[None, None], torch.tensor([[0.9]])


class ThresholdModel(Sam3D):
    """Segments what is closer to the clicked intensity than to the crop's median: follows a hot organ."""

    def __init__(self) -> None:
        super().__init__(TINY)
        self.encodes = 0

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        self.encodes += 1
        return F.avg_pool3d(image, 4)

    def decode(self, image_embedding, point_coords, point_labels, mask_logits=None):
        i, j, k = (point_coords[0, 0] // 4).long().tolist()
        level = (image_embedding[0, 0, i, j, k] + image_embedding.median()) / 2
        return 10 * (image_embedding - level), torch.tensor([[0.8]])


def ball_voxels(shape, spacing, centre, radius_mm) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij")
    distance2 = sum((g - c * s) ** 2 for g, c, s in zip(grids, centre, spacing, strict=True))
    return distance2 <= radius_mm**2


def physical_centroid(mask: np.ndarray, spacing) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0) * np.asarray(spacing)


def one_click(index, positive=True) -> Prompts:
    return Prompts(points=(Point(index, positive),))


# ----------------------------------------------------------------------------- helpers


def test_linear_sampling_matches_scipy_inside_takes_the_edge_within_half_a_voxel_and_is_zero_beyond():
    # As ITK's linear interpolator (what torchio resamples with): up to half a voxel beyond the first and
    # last centres the edge value is used, further out the default value 0.
    rng = np.random.default_rng(0)
    volume = rng.random((9, 11, 7)).astype(np.float32)
    positions = [np.array([-1.0, 0.0, 2.5, 8.0, 8.4]), np.array([0.25, 5.0, 10.0]), np.array([3.3, 6.0, 7.2])]
    sampled = sample_linear(volume, positions)
    grid = np.stack(np.meshgrid(*positions, indexing="ij"))
    expected = ndi.map_coordinates(volume, grid, order=1, mode="nearest")
    inside = np.ones_like(sampled, dtype=bool)
    inside[0] = False  # -1 lies more than half a voxel before axis 0
    inside[:, :, 2] = False  # 7.2 lies more than half a voxel beyond axis 2 (last centre 6)
    np.testing.assert_allclose(sampled[inside], expected[inside], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sampled[4][inside[4]], sampled[3][inside[3]])  # 8.4 takes the edge row 8
    assert not sampled[~inside].any()


def test_isotropic_grid_maps_original_indices_to_1_5_mm_voxels():
    # torchio's grid: floor(n · spacing / 1.5) voxels, centred on the original grid's centre.
    grid = IsotropicGrid((100, 50, 40), (3.0, 1.5, 4.0))
    assert grid.resampled_shape == (200, 50, 106)
    np.testing.assert_allclose(grid.to_resampled((10, 10, 3)), (20.5, 10, 8.5))
    np.testing.assert_allclose(grid.to_resampled((49.5, 24.5, 19.5)), (99.5, 24.5, 52.5))  # shared centre


def test_shift_logits_moves_by_whole_low_res_cells():
    logits = torch.arange(32.0**3).reshape(1, 1, 32, 32, 32)
    shifted = shift_logits(logits, (0, 0, 0), (8, 0, -4))
    assert shifted[0, 0, 0, 0, 1] == logits[0, 0, 2, 0, 0]
    assert not shifted[0, 0, 30:].any() and not shifted[0, 0, :, :, 0].any()
    assert not shift_logits(logits, (0, 0, 0), (200, 0, 0)).any()


def test_lru_cache_evicts_the_least_recently_used_and_stays_within_budget():
    cache = LRUByteCache(max_bytes=250)
    cache.put("a", 1, 100)
    cache.put("b", 2, 100)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3, 100)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.total_bytes == 200 and cache.evictions == 1
    cache.put("huge", 4, 1000)
    assert "huge" not in cache and cache.total_bytes == 200


# ----------------------------------------------------------------------------- paste-back


@pytest.mark.parametrize(
    ("shape", "spacing", "click"),
    [
        ((60, 90, 80), (4.0, 2.0, 2.5), (20, 50, 40)),
        ((60, 90, 80), (4.0, 2.0, 2.5), (58, 2, 40)),  # at the volume border: the crop is zero-padded
        ((40, 200, 200), (3.0, 0.8, 0.8), (30, 150, 20)),
    ],
)
def test_the_decoded_mask_lands_on_the_prompt_in_the_full_volume(shape, spacing, click):
    model = BlobModel(radius=12)  # 12 voxels of 1.5 mm: an 18 mm ball
    engine = SegAnyPETEngine(model, device="cpu")
    result = engine.segment(np.ones(shape, np.float32), spacing, one_click(click))
    assert result.mask.shape == shape and result.mask.dtype == bool
    assert result.mask[click]
    outer = ball_voxels(shape, spacing, click, 18.0 + 2.0)
    inner = ball_voxels(shape, spacing, click, 18.0 - 2.0)
    assert not (result.mask & ~outer).any()
    assert not (inner & ~result.mask).any()
    if click == (20, 50, 40):
        np.testing.assert_allclose(
            physical_centroid(result.mask, spacing), np.multiply(click, spacing), atol=1.0
        )
    assert result.score == pytest.approx(0.9)
    assert {"prepare", "encode", "decode", "paste", "total"} <= set(result.timings_ms)


def test_points_reach_the_decoder_as_crop_voxel_indices():
    model = BlobModel(radius=8)
    engine = SegAnyPETEngine(model, device="cpu")
    spacing = (3.0, 1.5, 2.0)
    engine.segment(
        np.ones((50, 120, 90), np.float32),
        spacing,
        Prompts(points=(Point((20, 60, 40)), Point((22, 70, 44), False))),
    )
    origin = np.asarray(engine.last_crop_origins[0])
    coords = model.decoded[0]["coords"][0].numpy()
    # ((20 + 0.25)·2, 60, (40 + 0.125)·4/3) rounded half to even; the offsets centre the two grids
    np.testing.assert_array_equal(coords[0] + origin, [40, 60, 54])
    np.testing.assert_array_equal(coords[1] + origin, [44, 70, 59])
    assert model.decoded[0]["labels"].tolist() == [[1, 0]]
    assert np.all(np.abs(coords[0] - 64) <= 8)  # the crop is centred on the prompts


def test_a_box_limits_the_mask_and_acts_as_a_point():
    model = BlobModel(radius=40)
    engine = SegAnyPETEngine(model, device="cpu")
    box = Box(lower=(10, 20, 30), upper=(30, 40, 50))
    result = engine.segment(np.ones((60, 80, 80), np.float32), (2.0, 2.0, 2.0), Prompts(box=box))
    assert result.mask[10:30, 20:40, 30:50].all()
    assert result.mask.sum() == 20 * 20 * 20
    centre = model.decoded[0]["coords"][0, 0].numpy() + np.asarray(engine.last_crop_origins[0])
    np.testing.assert_allclose(centre, np.array([19.5, 29.5, 39.5]) * 2 / 1.5, atol=1.0)


def test_invalid_requests_are_prompt_errors():
    engine = SegAnyPETEngine(BlobModel(radius=5), device="cpu")
    volume = np.ones((20, 20, 20), np.float32)
    with pytest.raises(PromptError):
        engine.segment(volume, (2.0, 2.0, 2.0), one_click((25, 1, 1)))
    with pytest.raises(PromptError):
        engine.segment(
            volume, (2.0, 2.0, 2.0), one_click((5, 5, 5)), previous_mask=np.zeros((20, 20, 19), bool)
        )
    with pytest.raises(PromptError):
        engine.segment(volume, (2.0, 0.0, 2.0), one_click((5, 5, 5)))


# ----------------------------------------------------------------------------- sessions and caching


def test_a_second_click_in_the_same_crop_reuses_the_embedding():
    model = tiny_model()
    counter = EncoderCounter(model)
    engine = SegAnyPETEngine(model, device="cpu", max_crops=1)
    volume = np.random.default_rng(0).random((80, 90, 100)).astype(np.float32)
    spacing = (2.0, 2.0, 2.0)
    first = engine.segment(volume, spacing, one_click((40, 45, 50)), session_key="scan-1")
    origin = engine.last_crop_origins[0]
    assert counter.calls == 1
    clicks = Prompts(points=(Point((40, 45, 50)), Point((44, 45, 50), False)))
    engine.segment(volume, spacing, clicks, previous_mask=first.mask, session_key="scan-1")
    assert engine.last_crop_origins == [origin]
    assert counter.calls == 1
    assert engine.stats["embedding_hits"] == 1
    engine.segment(volume, spacing, one_click((40, 45, 50)), session_key="scan-2")
    assert counter.calls == 2  # another scan: nothing shared
    engine.segment(volume, spacing, one_click((40, 45, 50)))
    assert counter.calls == 3  # no session key: nothing cached


def test_the_embedding_cache_is_bounded():
    model = tiny_model()
    counter = EncoderCounter(model)
    budget = 2 * (EMBEDDING_BYTES + SESSION_BYTES) + 1000
    engine = SegAnyPETEngine(model, device="cpu", cache_bytes=budget, max_crops=1)
    volume = np.random.default_rng(1).random((60, 60, 60)).astype(np.float32)
    for key in ("a", "b", "c"):
        engine.segment(volume, (2.0, 2.0, 2.0), one_click((30, 30, 30)), session_key=key)
        assert engine.cache.total_bytes <= budget
    assert counter.calls == 3
    engine.segment(volume, (2.0, 2.0, 2.0), one_click((30, 30, 30)), session_key="c")
    assert counter.calls == 3  # the most recent session is still cached
    engine.segment(volume, (2.0, 2.0, 2.0), one_click((30, 30, 30)), session_key="a")
    assert counter.calls == 4  # the oldest was evicted
    assert engine.cache.evictions > 0


def test_previous_logits_are_fed_back_and_reset_for_a_new_object():
    model = BlobModel(radius=10)
    engine = SegAnyPETEngine(model, device="cpu")
    volume = np.ones((60, 60, 60), np.float32)
    spacing = (2.0, 2.0, 2.0)
    first = engine.segment(volume, spacing, one_click((30, 30, 30)), session_key="s")
    assert model.decoded[-1]["prior"] is None  # zeros on the first click, as the reference

    engine.segment(volume, spacing, one_click((31, 30, 30)), previous_mask=first.mask, session_key="s")
    prior = model.decoded[-1]["prior"]
    expected, _ = BlobModel(radius=10).decode(None, model.decoded[0]["coords"], model.decoded[0]["labels"])
    torch.testing.assert_close(prior, expected)  # our own cached logits, not a re-encoded mask

    edited = first.mask.copy()
    edited[20:40, 20:40, 20:40] = True  # the reader painted: the cache no longer describes the mask
    engine.segment(volume, spacing, one_click((30, 30, 30)), previous_mask=edited, session_key="s")
    prior = model.decoded[-1]["prior"]
    assert prior.shape == (1, 1, 32, 32, 32)
    assert prior.max().item() == pytest.approx(MASK_PRIOR_LOGIT) and prior.min().item() == pytest.approx(
        -MASK_PRIOR_LOGIT
    )

    engine.segment(volume, spacing, one_click((30, 30, 30)), previous_mask=None, session_key="s")
    assert model.decoded[-1]["prior"] is None


# ----------------------------------------------------------------------------- large objects


def liver_phantom() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A hot ellipsoid 340 mm long (axis 0), far longer than a 192 mm crop."""
    shape, spacing = (110, 40, 40), (4.0, 4.0, 4.0)
    grids = np.meshgrid(*(np.arange(n) * 4.0 for n in shape), indexing="ij")
    centre = np.array([220.0, 78.0, 78.0])
    semi_axes = np.array([170.0, 45.0, 45.0])
    organ = sum(((g - c) / a) ** 2 for g, c, a in zip(grids, centre, semi_axes, strict=True)) <= 1
    volume = np.where(organ, 6.0, 1.0).astype(np.float32)
    return volume, organ, spacing


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_an_object_larger_than_one_crop_is_followed_into_further_crops():
    volume, organ, spacing = liver_phantom()
    model = ThresholdModel()
    engine = SegAnyPETEngine(model, device="cpu")
    result = engine.segment(volume, spacing, one_click((55, 19, 19)), session_key="liver")
    assert len(engine.last_crop_origins) >= 3  # both ends of the organ leave the first crop
    assert model.encodes == len(engine.last_crop_origins)
    assert dice(result.mask, organ) > 0.97

    single = SegAnyPETEngine(ThresholdModel(), device="cpu", max_crops=1)
    cut = single.segment(volume, spacing, one_click((55, 19, 19))).mask
    assert dice(cut, organ) < 0.9  # one 192 mm crop cannot hold a 340 mm organ
    assert not (cut & ~result.mask).any()


def test_a_corrective_click_keeps_the_crops_the_object_already_spans():
    volume, organ, spacing = liver_phantom()
    engine = SegAnyPETEngine(ThresholdModel(), device="cpu")
    first = engine.segment(volume, spacing, one_click((55, 19, 19)), session_key="liver")
    first_origins = set(engine.last_crop_origins)
    # A click near one end of the organ moves the primary crop there; the other crops are decoded again.
    prompts = Prompts(points=(Point((55, 19, 19), True), Point((12, 19, 19), True)))
    second = engine.segment(volume, spacing, prompts, first.mask, session_key="liver")
    assert first_origins <= set(engine.last_crop_origins)
    assert dice(second.mask, organ) > 0.96  # partial voxels at 4 mm on the torchio grid


def test_a_lesion_is_segmented_in_one_crop():
    volume, organ, spacing = liver_phantom()
    engine = SegAnyPETEngine(ThresholdModel(), device="cpu")
    engine.segment(volume, spacing, one_click((55, 19, 19)), kind="lesion")
    assert len(engine.last_crop_origins) == 1
    engine.segment(volume, spacing, one_click((55, 19, 19)), kind="organ")
    assert len(engine.last_crop_origins) >= 3


def test_a_thin_leak_through_a_crop_face_is_not_followed():
    shape, spacing = (120, 40, 40), (4.0, 4.0, 4.0)
    hot = np.zeros(shape, bool)
    hot[50:70, 10:30, 10:30] = True  # an 80 mm cube ...
    hot[10:50, 19:22, 19:22] = True  # ... with a 12 mm wide tail that leaves its 192 mm crop
    volume = np.where(hot, 6.0, 1.0).astype(np.float32)
    engine = SegAnyPETEngine(ThresholdModel(), device="cpu")
    engine.segment(volume, spacing, one_click((60, 20, 20)))
    assert len(engine.last_crop_origins) == 1
    following = SegAnyPETEngine(ThresholdModel(), device="cpu", min_continuation_mm2=0.0)
    following.segment(volume, spacing, one_click((60, 20, 20)))
    assert len(following.last_crop_origins) > 1


def test_an_object_touching_only_the_volume_border_needs_one_crop():
    shape, spacing = (50, 50, 50), (2.0, 2.0, 2.0)
    engine = SegAnyPETEngine(ThresholdModel(), device="cpu")
    organ = np.zeros(shape, bool)
    organ[0:20, 10:30, 10:30] = True
    result = engine.segment(np.where(organ, 5.0, 1.0).astype(np.float32), spacing, one_click((5, 20, 20)))
    assert len(engine.last_crop_origins) == 1
    assert dice(result.mask, organ) > 0.9


# ----------------------------------------------------------------------------- real network and factory


def test_a_random_small_network_runs_end_to_end():
    engine = SegAnyPETEngine(tiny_model(), device="cpu")
    volume = np.random.default_rng(2).random((40, 50, 60)).astype(np.float32)
    result = engine.segment(volume, (2.5, 2.0, 2.0), one_click((20, 25, 30)), session_key="k")
    assert result.mask.shape == volume.shape and result.mask.dtype == bool
    assert 0.0 <= result.score <= 1.0
    assert engine.info["variant"] == "custom" and engine.info["demo"] is True


def test_the_mixed_precision_path_agrees_with_float32():
    # bf16 autocast on the CPU stands in for the CUDA path: same casts, same kernels' dtype rules.
    volume = np.random.default_rng(3).random((50, 50, 50)).astype(np.float32)
    exact = SegAnyPETEngine(tiny_model(), device="cpu", max_crops=1)
    mixed = SegAnyPETEngine(tiny_model(), device="cpu", max_crops=1)
    mixed.amp_dtype = torch.bfloat16
    reference = exact.segment(volume, (2.0, 2.0, 2.0), one_click((25, 25, 25))).mask
    first = mixed.segment(volume, (2.0, 2.0, 2.0), one_click((25, 25, 25)), session_key="m")
    assert (first.mask ^ reference).sum() <= 0.02 * max(reference.sum(), 1)
    again = mixed.segment(
        volume, (2.0, 2.0, 2.0), one_click((26, 25, 25)), previous_mask=first.mask, session_key="m"
    )
    assert again.mask.shape == volume.shape


def test_clearing_a_session_drops_its_cache_entries():
    engine = SegAnyPETEngine(BlobModel(radius=6), device="cpu")
    volume = np.ones((40, 40, 40), np.float32)
    engine.segment(volume, (2.0, 2.0, 2.0), one_click((20, 20, 20)), session_key="closing")
    engine.segment(volume, (2.0, 2.0, 2.0), one_click((20, 20, 20)), session_key="staying")
    engine.clear_session("closing")
    assert len(engine.cache) == 2 and all(key[1] == "staying" for key in engine.cache.keys())


def test_the_factory_refuses_to_run_without_weights(tmp_path):
    with pytest.raises(SegAnyPETUnavailableError, match="SEGANYPET_CHECKPOINT"):
        create_seganypet_engine(None)
    with pytest.raises(SegAnyPETUnavailableError, match="not a file"):
        create_seganypet_engine(tmp_path / "missing.pt")


def test_the_registry_builds_the_official_engine_from_the_configured_checkpoint(engine_settings, tmp_path):
    from worker.engines.registry import get_engine

    official, demo = tmp_path / "official.pt", tmp_path / "demo.pt"
    save_checkpoint(tiny_model(1), official)
    save_checkpoint(tiny_model(2), demo)
    engine_settings(checkpoint=str(official), demo_checkpoint=str(demo), device="cpu")
    assert get_engine("seganypet-demo").checkpoint == str(demo)
    engine = get_engine("seganypet")
    assert engine.checkpoint == str(official)
    expected = tiny_model(1).state_dict()["mask_decoder.iou_token.weight"]
    assert torch.equal(engine.model.state_dict()["mask_decoder.iou_token.weight"], expected)


# ----------------------------------------------------------------------------- kind and first-click prior


class TokenBallModel(Sam3D):
    """Mask token t decodes a ball of radius 4 + 4t crop voxels around the first point."""

    def __init__(self) -> None:
        super().__init__(TINY)
        self.mask_decoder.predict_masks = self._predict_masks  # type: ignore[method-assign]
        self.points: torch.Tensor | None = None

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return torch.zeros(1, 48, 8, 8, 8)

    def decode(self, image_embedding, point_coords, point_labels, mask_logits=None):
        self.points = point_coords
        return super().decode(image_embedding, point_coords, point_labels, mask_logits)

    def _predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
        centre = torch.full((3,), 63.5)
        axis = torch.arange(32, dtype=torch.float32) * 4 + 1.5
        dd, hh, ww = torch.meshgrid(axis - centre[0], axis - centre[1], axis - centre[2], indexing="ij")
        distance = torch.sqrt(dd**2 + hh**2 + ww**2)
        masks = torch.stack([(4 + 4 * t - distance) for t in range(4)])[None]
        return masks, torch.tensor([[0.1, 0.2, 0.3, 0.4]])


def test_the_object_kind_selects_the_checkpoints_mask_token():
    volume = np.ones((64, 64, 64), np.float32)
    spacing = (1.5, 1.5, 1.5)
    click = one_click((32, 32, 32))
    engine = SegAnyPETEngine(TokenBallModel(), device="cpu", kind_tokens={"lesion": 1, "organ": 2})
    sizes = {
        kind: int(engine.segment(volume, spacing, click, kind=kind).mask.sum())
        for kind in (None, "lesion", "organ")
    }
    assert sizes[None] < sizes["lesion"] < sizes["organ"]
    assert engine.segment(volume, spacing, click, kind="organ").score == pytest.approx(0.3)
    # Without a mapping (official weights) the kind changes nothing: token 0.
    plain = SegAnyPETEngine(TokenBallModel(), device="cpu")
    assert int(plain.segment(volume, spacing, click, kind="lesion").mask.sum()) == sizes[None]
    with pytest.raises(PromptError, match="kind"):
        engine.segment(volume, spacing, click, kind="tumour")
    with pytest.raises(ValueError):
        SegAnyPETEngine(TokenBallModel(), device="cpu", kind_tokens={"lesion": 4})


class FixedMaskEngine:
    name = "fixed"

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.calls = 0

    def segment(self, volume, spacing, prompts, previous_mask=None, session_key=None):
        self.calls += 1
        return SegmentationResult(mask=self.mask.copy(), score=0.5)


def test_the_first_click_starts_from_the_prior_engines_region():
    volume = np.ones((60, 60, 60), np.float32)
    spacing = (2.0, 2.0, 2.0)
    region = np.zeros(volume.shape, bool)
    region[25:35, 25:35, 25:35] = True
    prior_engine = FixedMaskEngine(region)
    model = BlobModel(radius=10)
    engine = SegAnyPETEngine(model, device="cpu", first_click_prior=prior_engine)
    first = engine.segment(volume, spacing, one_click((30, 30, 30)), session_key="s")
    assert prior_engine.calls == 1
    grid = IsotropicGrid(volume.shape, spacing)
    origin = engine.last_crop_origins[0]
    torch.testing.assert_close(model.decoded[0]["prior"], mask_to_prior_logits(region, grid, origin, 128))
    assert "prior" in first.timings_ms
    # A corrective click continues from the model's own logits: the prior engine is not asked again.
    engine.segment(volume, spacing, one_click((31, 30, 30)), previous_mask=first.mask, session_key="s")
    assert prior_engine.calls == 1
    # An empty region from the prior engine means zeros, as without a prior.
    empty = SegAnyPETEngine(
        BlobModel(radius=10), device="cpu", first_click_prior=FixedMaskEngine(region & False)
    )
    empty.segment(volume, spacing, one_click((30, 30, 30)))
    assert empty.model.decoded[0]["prior"] is None


def test_checkpoint_metadata_switches_on_the_kind_tokens_and_the_threshold_prior(tmp_path):
    from worker.engines.classical import ClassicalPETEngine
    from worker.engines.seganypet_engine import CLASSICAL_PRIOR

    path = tmp_path / "demo.pt"
    metadata = {"kind_tokens": {"lesion": 1, "organ": 2}, "first_click_prior": CLASSICAL_PRIOR}
    save_checkpoint(tiny_model(), path, metadata=metadata)
    engine = SegAnyPETEngine.from_checkpoint(path, device="cpu")
    assert engine.kind_tokens == {"lesion": 1, "organ": 2}
    assert isinstance(engine.first_click_prior, ClassicalPETEngine)
    assert engine.info["first_click_prior"] == ClassicalPETEngine.name
    plain_path = tmp_path / "plain.pt"
    save_checkpoint(tiny_model(), plain_path)
    plain = SegAnyPETEngine.from_checkpoint(plain_path, device="cpu")
    assert plain.kind_tokens == {} and plain.first_click_prior is None


# ----------------------------------------------------------------------------- bad results do not propagate


class CountingPrior:
    """A first-click prior that finds nothing and counts how often it is asked."""

    name = "counting-prior"

    def __init__(self) -> None:
        self.calls = 0

    def segment(self, volume, spacing, prompts, previous_mask=None, session_key=None, *, kind=None):
        self.calls += 1
        return SegmentationResult(mask=np.zeros(volume.shape, bool), score=0.0)


def test_an_empty_result_keeps_the_object_and_the_prior_is_not_asked_again():
    volume, _, spacing = liver_phantom()
    prior = CountingPrior()
    engine = SegAnyPETEngine(BlobModel(radius=0), device="cpu", first_click_prior=prior)
    first = engine.segment(volume, spacing, one_click((55, 19, 19)), session_key="node")
    assert prior.calls == 1
    prompts = Prompts(points=(Point((55, 19, 19)), Point((56, 19, 19))))
    engine.segment(volume, spacing, prompts, np.zeros_like(first.mask), session_key="node")
    assert prior.calls == 1  # the second click corrects the same object; the prior's mistake is not repeated


def test_a_negative_click_always_removes():
    volume, organ, spacing = liver_phantom()
    engine = SegAnyPETEngine(ThresholdModel(), device="cpu")
    first = engine.segment(volume, spacing, one_click((55, 19, 19)), session_key="liver")
    assert first.mask[55, 19, 22]
    prompts = Prompts(points=(Point((55, 19, 19)), Point((55, 19, 22), False)))
    second = engine.segment(volume, spacing, prompts, first.mask, session_key="liver")
    assert not (second.mask & ~first.mask).any()  # nothing added
    assert not second.mask[55, 19, 22] and not second.mask[55, 19, 21]  # within 4 mm of the click: gone
    assert second.mask.sum() < first.mask.sum()
