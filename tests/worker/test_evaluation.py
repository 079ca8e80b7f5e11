"""Click-simulation evaluation: Dice, deterministic click placement, accumulation, summaries."""

from __future__ import annotations

import numpy as np
import pytest

from worker.engines.base import Point, Prompts, SegmentationResult
from worker.engines.orientation import Canonical
from worker.evaluation import (
    DEFAULT_ORGANS,
    Case,
    cases_from_phantom,
    dice_score,
    evaluate_engines,
    next_click,
    region_centre,
    simulate_clicks,
)

SHAPE = (20, 24, 28)
SPACING = (2.0, 2.0, 2.0)


def cuboid(lower: tuple[int, int, int], upper: tuple[int, int, int], shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[lower[0] : upper[0], lower[1] : upper[1], lower[2] : upper[2]] = True
    return mask


TARGET = cuboid((4, 4, 4), (13, 15, 17))  # 9 × 11 × 13: a unique centre at (8, 9, 10)


def make_case(
    target: np.ndarray = TARGET, label: str = "liver", group: str = "liver", case_id: str = "c1"
) -> Case:
    volume = np.where(target, 5.0, 1.0).astype(np.float32)
    return Case(case_id, volume, SPACING, target, label, group, "session-1")


class RecordingEngine:
    """Returns a scripted sequence of masks and records what it was given."""

    def __init__(
        self, masks: list[np.ndarray], name: str = "scripted", timings: dict[str, float] | None = None
    ):
        self.name = name
        self.masks = masks
        self.timings = timings or {}
        self.calls: list[tuple[Prompts, np.ndarray | None, str | None]] = []

    def segment(self, volume, spacing, prompts, previous_mask=None, session_key=None, *, kind=None) -> SegmentationResult:
        self.calls.append((prompts, None if previous_mask is None else previous_mask.copy(), session_key))
        mask = self.masks[min(len(self.calls), len(self.masks)) - 1]
        return SegmentationResult(mask=mask.copy(), score=0.5, timings_ms=dict(self.timings))


class PerfectEngine:
    name = "perfect"

    def __init__(self, target: np.ndarray) -> None:
        self.target = target

    def segment(self, volume, spacing, prompts, previous_mask=None, session_key=None, *, kind=None) -> SegmentationResult:
        return SegmentationResult(mask=self.target.copy(), score=1.0)


# ---------------------------------------------------------------------- Dice


def test_dice_matches_a_hand_computed_example():
    prediction = np.zeros((2, 2, 2), dtype=bool)
    target = np.zeros((2, 2, 2), dtype=bool)
    prediction[0, 0, :] = True  # 2 voxels
    prediction[0, 1, 0] = True  # 3 voxels in all
    target[0, 0, 0] = True
    target[0, 1, :] = True  # 3 voxels; overlap {(0,0,0), (0,1,0)} = 2
    assert dice_score(prediction, target) == pytest.approx(2 * 2 / (3 + 3))
    assert dice_score(prediction, prediction) == 1.0
    assert dice_score(prediction, ~prediction) == 0.0


def test_dice_of_two_empty_masks_is_one():
    empty = np.zeros((3, 3, 3), dtype=bool)
    assert dice_score(empty, empty) == 1.0


# ---------------------------------------------------------------------- click placement


def test_region_centre_is_the_distance_transform_maximum():
    assert region_centre(TARGET) == (8, 9, 10)
    # Anisotropic spacing: a 5 × 5 × 5 cube stays centred.
    assert region_centre(cuboid((2, 3, 4), (7, 8, 9)), (4.0, 1.0, 1.0)) == (4, 5, 6)


def test_plateau_of_the_distance_transform_is_resolved_to_its_middle():
    rod = cuboid((8, 8, 3), (11, 11, 22))  # 3 × 3 × 19: every voxel on the axis is equally deep
    assert region_centre(rod) == (9, 9, 12)


def test_region_touching_the_volume_border_is_centred_inside():
    slab = cuboid((0, 0, 0), (5, 24, 28))
    assert region_centre(slab)[0] == 2


def test_first_click_is_the_positive_centre_of_the_target():
    assert next_click(TARGET, None, SPACING) == Point((8, 9, 10), True)


def test_no_click_when_the_prediction_is_perfect():
    assert next_click(TARGET, TARGET.copy(), SPACING) is None


def test_false_negative_region_gets_a_positive_click_at_its_centre():
    prediction = TARGET & ~cuboid((4, 4, 4), (13, 15, 9))  # the first 5 slices along axis 2 missed
    assert next_click(TARGET, prediction, SPACING) == Point((8, 9, 6), True)


def test_false_positive_region_gets_a_negative_click_at_its_centre():
    leak = cuboid((4, 17, 4), (13, 24, 17))  # 9 × 7 × 13 outside the target
    assert next_click(TARGET, TARGET | leak, SPACING) == Point((8, 20, 10), False)


def test_the_largest_error_region_wins_and_ties_go_to_false_negatives():
    small_miss = cuboid((4, 4, 4), (6, 6, 6))  # 8 voxels
    big_leak = cuboid((15, 4, 4), (20, 9, 9))  # 125 voxels
    assert next_click(TARGET, (TARGET & ~small_miss) | big_leak, SPACING).positive is False
    equal_leak = cuboid((15, 4, 4), (17, 6, 6))  # 8 voxels, like the miss
    click = next_click(TARGET, (TARGET & ~small_miss) | equal_leak, SPACING)
    assert click.positive is True and small_miss[click.index]


def test_click_placement_is_deterministic():
    rng = np.random.default_rng(0)
    prediction = TARGET ^ (rng.random(SHAPE) < 0.05)
    clicks = {next_click(TARGET, prediction, SPACING) for _ in range(3)}
    assert len(clicks) == 1


# ---------------------------------------------------------------------- simulation


def test_perfect_engine_needs_one_click_and_keeps_dice_one():
    result = simulate_clicks(PerfectEngine(TARGET), make_case(), n_clicks=5)
    assert result.dice == [1.0] * 5
    assert len(result.clicks) == 1 and len(result.latency_ms) == 1
    assert result.dice_after(5) == 1.0


def test_prompts_accumulate_and_the_previous_mask_is_fed_back():
    half = TARGET & ~cuboid((4, 4, 4), (13, 15, 9))
    leak = cuboid((4, 17, 4), (13, 24, 17))
    engine = RecordingEngine([half, TARGET | leak, TARGET])
    result = simulate_clicks(engine, make_case(), n_clicks=3)

    assert [c.index for c in result.clicks] == [(8, 9, 10), (8, 9, 6), (8, 20, 10)]
    assert [c.positive for c in result.clicks] == [True, True, False]
    prompts_seen = [call[0].points for call in engine.calls]
    assert prompts_seen == [tuple(result.clicks[:1]), tuple(result.clicks[:2]), tuple(result.clicks[:3])]
    assert engine.calls[0][1] is None
    assert np.array_equal(engine.calls[1][1], half) and np.array_equal(engine.calls[2][1], TARGET | leak)
    assert all(call[2] == "session-1" for call in engine.calls)
    assert result.dice[0] == pytest.approx(dice_score(half, TARGET))
    assert result.dice[1] == pytest.approx(dice_score(TARGET | leak, TARGET))
    assert result.dice[2] == 1.0


def test_simulation_is_repeatable():
    engine_a = RecordingEngine([TARGET & ~cuboid((4, 4, 4), (9, 15, 17))])
    engine_b = RecordingEngine([TARGET & ~cuboid((4, 4, 4), (9, 15, 17))])
    first = simulate_clicks(engine_a, make_case(), n_clicks=3)
    second = simulate_clicks(engine_b, make_case(), n_clicks=3)
    assert first.clicks == second.clicks and first.dice == second.dice


def test_evaluate_engines_summarises_per_label_and_latency():
    liver = make_case(case_id="a/liver")
    kidney_target = cuboid((2, 2, 2), (7, 7, 7))
    kidney = make_case(kidney_target, label="kidney_left", group="kidneys", case_id="a/kidney_left")
    perfect = PerfectEngine(TARGET)
    empty = RecordingEngine([np.zeros(SHAPE, bool)], name="empty", timings={"encoder": 3.0, "decoder": 1.0})
    report = evaluate_engines([perfect, empty], [liver, kidney], n_clicks=5)

    assert report.report_clicks == (1, 3, 5)
    assert "centre" in report.click_rule
    by_engine = {s.engine: s for s in report.summaries}
    assert by_engine["perfect"].dice_by_label["liver"] == {1: 1.0, 3: 1.0, 5: 1.0}
    assert by_engine["perfect"].dice_by_group["kidneys"][1] == pytest.approx(
        dice_score(TARGET, kidney_target)
    )
    assert by_engine["empty"].mean_dice == {1: 0.0, 3: 0.0, 5: 0.0}
    assert by_engine["empty"].cases_by_group == {"kidneys": 1, "liver": 1}
    latency = by_engine["empty"].latency_ms
    assert latency["median"] >= 0 and latency["p95"] >= latency["median"]
    assert by_engine["empty"].timing_medians_ms == {"decoder": 1.0, "encoder": 3.0}
    assert len(report.cases) == 4
    data = report.to_dict()
    assert data["summaries"][0]["engine"] == "perfect" and data["cases"][0]["clicks"][0]["positive"] is True


def test_report_clicks_beyond_n_clicks_are_dropped():
    report = evaluate_engines({"p": PerfectEngine(TARGET)}, [make_case()], n_clicks=3)
    assert report.report_clicks == (1, 3)
    assert report.summaries[0].engine == "p"


# ---------------------------------------------------------------------- cases from a phantom


@pytest.fixture(scope="module")
def phantom():
    from worker.phantoms import TEST_SIZE, make_phantom

    return make_phantom(seed=1, n_lesions=4, **TEST_SIZE)


def test_cases_from_phantom_one_per_organ_and_lesion(phantom):
    cases = cases_from_phantom(phantom)
    organs = [c for c in cases if c.group != "lesions"]
    lesions = [c for c in cases if c.group == "lesions"]
    assert [c.label for c in organs] == [
        name for _, name in sorted(phantom.label_names.items()) if name in DEFAULT_ORGANS
    ]
    assert {c.group for c in organs if c.label.startswith("kidney")} == {"kidneys"}
    assert len(lesions) == len([v for v in np.unique(phantom.lesion_labels) if v])
    # Cases hold what the app gives engines: RAS-canonical views (axis 0 = x, the slice axis last).
    canonical = Canonical.from_lps_affine(phantom.pet_affine, phantom.suv.shape)
    for case in cases:
        assert case.target.dtype == bool and case.target.any()
        assert case.volume.shape == case.target.shape == canonical.shape
        assert case.spacing == canonical.spacing(phantom.pet_spacing)
    assert cases[0].volume.shape[2] == phantom.suv.shape[0]  # an axial phantom: slices on the last axis
    liver = next(c for c in organs if c.label == "liver")
    assert not (liver.target & canonical.to_ras(phantom.lesion_labels > 0)).any()  # lesions painted over organs
    assert len({c.case_id for c in cases}) == len(cases) and len({c.session_key for c in cases}) == 1


def test_classical_engine_on_phantom_improves_with_clicks(phantom):
    from worker.engines.classical import ClassicalPETEngine

    cases = [c for c in cases_from_phantom(phantom) if c.label in ("kidney_left", "spleen")]
    report = evaluate_engines([ClassicalPETEngine()], cases, n_clicks=3)
    summary = report.summaries[0]
    assert summary.mean_dice[3] >= summary.mean_dice[1] - 0.05
    assert summary.mean_dice[3] > 0.7
