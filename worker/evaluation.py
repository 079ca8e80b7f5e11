"""Click-simulation evaluation of interactive engines (engine-agnostic, no Django).

Protocol (as in the SegAnyPET paper: positive clicks in false negatives, negative clicks in false
positives, prompts accumulated, the previous mask fed back, Dice after 1, 3 and 5 clicks), with one
deliberate difference: **each click is placed deterministically at the centre of the largest error
region** — the voxel farthest (Euclidean distance in mm) from the region's boundary — whereas the released
SegAnyPET code samples the click uniformly at random inside the error region. The deterministic rule
makes runs repeatable and fairer when engines are compared.

* First click: the centre of the ground truth (its largest 6-connected component; distance-transform
  maximum), positive.
* Next clicks: the error voxels are split into false-negative and false-positive 6-connected regions;
  the largest by voxel count is chosen (a false-negative region wins a tie, then the first in array
  order) and clicked at its centre: positive for a false negative, negative for a false positive.
  Distance-transform ties go to the tied voxel nearest their centroid, then to the first in C order.
* When the prediction is already perfect no click is possible; the remaining clicks keep the last Dice.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from worker.engines.base import Engine, Point, Prompts
from worker.engines.orientation import Canonical

REPORT_CLICKS: tuple[int, ...] = (1, 3, 5)
DEFAULT_ORGANS: tuple[str, ...] = ("liver", "spleen", "kidney_left", "kidney_right", "heart")
LESION_GROUP = "lesions"

_FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)
_GROUP_OF_LABEL = {
    "kidney_left": "kidneys",
    "kidney_right": "kidneys",
    "lung_left": "lungs",
    "lung_right": "lungs",
    "lesion": LESION_GROUP,
}


@dataclass(frozen=True)
class Case:
    """One object to segment in one volume."""

    case_id: str
    volume: np.ndarray  # SUV, float32, RAS-canonical (the engine boundary's convention)
    spacing: tuple[float, float, float]
    target: np.ndarray  # bool, same shape: the ground truth of this one object
    label: str  # e.g. "kidney_left", "lesion"
    group: str  # reporting group, e.g. "kidneys", "lesions"
    session_key: str  # identifies the volume, for engines that cache per image
    kind: str | None = None  # "lesion" / "organ", as the app passes its label's kind (None: not known)


@dataclass
class CaseResult:
    case_id: str
    label: str
    group: str
    engine: str
    target_voxels: int
    clicks: list[Point] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)  # after click 1, 2, …, n_clicks
    latency_ms: list[float] = field(default_factory=list)  # wall time of each segment() call
    scores: list[float] = field(default_factory=list)
    timings_ms: list[dict[str, float]] = field(default_factory=list)  # as reported by the engine

    def dice_after(self, clicks: int) -> float:
        return self.dice[min(clicks, len(self.dice)) - 1]

    def clicks_to_reach(self, dice: float) -> int:
        """NoC@dice: the first click count whose Dice reaches ``dice``; ``len(self.dice) + 1`` if none did
        (the usual convention counts a miss as the click budget; one more says it was missed)."""
        for number, value in enumerate(self.dice, start=1):
            if value >= dice:
                return number
        return len(self.dice) + 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["clicks"] = [{"index": list(p.index), "positive": p.positive} for p in self.clicks]
        return data


@dataclass
class EngineSummary:
    engine: str
    cases: int
    mean_dice: dict[int, float]  # clicks → mean Dice over all cases
    dice_by_label: dict[str, dict[int, float]]  # label → clicks → mean Dice
    dice_by_group: dict[str, dict[int, float]]  # group → clicks → mean Dice
    cases_by_group: dict[str, int]
    latency_ms: dict[str, float]  # per click: median, p95, mean
    timing_medians_ms: dict[
        str, float
    ]  # engine-reported timing keys → median per click (a skipped step is 0)
    timing_means_ms: dict[str, float]  # the same keys → mean per click


@dataclass
class EvaluationReport:
    n_clicks: int
    report_clicks: tuple[int, ...]
    click_rule: str
    summaries: list[EngineSummary]
    cases: list[CaseResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_clicks": self.n_clicks,
            "report_clicks": list(self.report_clicks),
            "click_rule": self.click_rule,
            "summaries": [asdict(s) for s in self.summaries],
            "cases": [c.to_dict() for c in self.cases],
        }


CLICK_RULE = "centre (distance-transform maximum) of the largest error region; deterministic"


# ---------------------------------------------------------------------- metrics and click placement


def dice_score(prediction: np.ndarray, target: np.ndarray) -> float:
    """Dice = 2|P∩T| / (|P| + |T|); 1.0 when both are empty."""
    prediction = prediction.astype(bool, copy=False)
    target = target.astype(bool, copy=False)
    total = int(prediction.sum()) + int(target.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(prediction, target).sum()) / total


def _bounding_slices(mask: np.ndarray, pad: int) -> tuple[slice, ...] | None:
    slices: list[slice] = []
    for axis in range(mask.ndim):
        other_axes = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other_axes))
        if present.size == 0:
            return None
        slices.append(slice(max(0, int(present[0]) - pad), min(mask.shape[axis], int(present[-1]) + 1 + pad)))
    return tuple(slices)


def _largest_component(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 6-connected component (first label on ties) and its voxel count."""
    labels, count = ndimage.label(mask, structure=_FACE_CONNECTIVITY)
    if count == 0:
        return np.zeros_like(mask, dtype=bool), 0
    sizes = np.bincount(labels.ravel())[1:]
    best = int(np.argmax(sizes)) + 1
    return labels == best, int(sizes[best - 1])


def region_centre(
    region: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> tuple[int, int, int]:
    """The voxel of ``region`` farthest (mm) from its boundary; the volume border counts as boundary.

    Ties (a plateau of the distance transform) go to the tied voxel nearest the plateau's centroid, then
    to the first in C order.
    """
    padded = np.pad(region.astype(bool), 1)
    distance = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    # The maximum is often a plateau (a slab, a rim): take the plateau voxel nearest its own centroid,
    # then the first in C order, so the click lands in the middle rather than at one end.
    maxima = np.argwhere(distance >= distance.max() - 1e-9)
    offsets = (maxima - maxima.mean(axis=0)) * np.asarray(spacing, dtype=np.float64)
    i, j, k = maxima[int(np.argmin(np.einsum("ij,ij->i", offsets, offsets)))]
    return int(i), int(j), int(k)


def next_click(
    target: np.ndarray, prediction: np.ndarray | None, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> Point | None:
    """The next simulated click (rule in the module docstring), or ``None`` when nothing is wrong."""
    target = target.astype(bool, copy=False)
    prediction = np.zeros_like(target) if prediction is None else prediction.astype(bool, copy=False)
    crop = _bounding_slices(target | prediction, pad=0)
    if crop is None:
        return None
    target_crop, prediction_crop = target[crop], prediction[crop]
    false_negative, fn_size = _largest_component(target_crop & ~prediction_crop)
    false_positive, fp_size = _largest_component(prediction_crop & ~target_crop)
    if fn_size == 0 and fp_size == 0:
        return None
    positive = fn_size >= fp_size
    local = region_centre(false_negative if positive else false_positive, spacing)
    index = (local[0] + crop[0].start, local[1] + crop[1].start, local[2] + crop[2].start)
    return Point(index, positive)


# ---------------------------------------------------------------------- simulation


def simulate_clicks(engine: Engine, case: Case, n_clicks: int = 5) -> CaseResult:
    """Runs ``n_clicks`` simulated clicks on one case; prompts accumulate, the previous mask is fed back."""
    if n_clicks < 1:
        raise ValueError("n_clicks must be >= 1")
    result = CaseResult(case.case_id, case.label, case.group, engine.name, int(case.target.sum()))
    prediction: np.ndarray | None = None
    points: list[Point] = []
    for _ in range(n_clicks):
        click = next_click(case.target, prediction, case.spacing)
        if click is None:
            break
        points.append(click)
        started = time.perf_counter()
        output = engine.segment(
            case.volume,
            case.spacing,
            Prompts(points=tuple(points)),
            previous_mask=prediction,
            session_key=case.session_key,
            kind=case.kind,
        )
        result.latency_ms.append(1000.0 * (time.perf_counter() - started))
        prediction = output.mask.astype(bool, copy=False)
        result.clicks.append(click)
        result.dice.append(dice_score(prediction, case.target))
        result.scores.append(float(output.score))
        result.timings_ms.append(dict(output.timings_ms))
    while len(result.dice) < n_clicks:  # perfect before the last click: the Dice stays
        result.dice.append(result.dice[-1] if result.dice else 1.0)
    return result


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def _mean_by(
    results: Iterable[CaseResult], key: str, report_clicks: Sequence[int]
) -> dict[str, dict[int, float]]:
    grouped: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        grouped[getattr(r, key)].append(r)
    return {
        name: {k: float(np.mean([r.dice_after(k) for r in members])) for k in report_clicks}
        for name, members in sorted(grouped.items())
    }


def summarise(engine_name: str, results: Sequence[CaseResult], report_clicks: Sequence[int]) -> EngineSummary:
    latencies = [ms for r in results for ms in r.latency_ms]
    timing_values: dict[str, list[float]] = defaultdict(list)
    for r in results:
        for timings in r.timings_ms:
            for name, ms in timings.items():
                timing_values[name].append(float(ms))
    groups: dict[str, int] = defaultdict(int)
    for r in results:
        groups[r.group] += 1
    return EngineSummary(
        engine=engine_name,
        cases=len(results),
        mean_dice={
            k: float(np.mean([r.dice_after(k) for r in results])) if results else float("nan")
            for k in report_clicks
        },
        dice_by_label=_mean_by(results, "label", report_clicks),
        dice_by_group=_mean_by(results, "group", report_clicks),
        cases_by_group=dict(sorted(groups.items())),
        latency_ms={
            "median": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "mean": float(statistics.fmean(latencies)) if latencies else float("nan"),
        },
        timing_medians_ms={name: _percentile(v, 50) for name, v in sorted(timing_values.items())},
        timing_means_ms={name: float(statistics.fmean(v)) for name, v in sorted(timing_values.items())},
    )


def evaluate_engines(
    engines: Mapping[str, Engine] | Sequence[Engine],
    cases: Sequence[Case],
    n_clicks: int = 5,
    report_clicks: Sequence[int] = REPORT_CLICKS,
) -> EvaluationReport:
    """Click-simulates every engine on every case; per-case results plus per-engine summaries."""
    named = dict(engines) if isinstance(engines, Mapping) else {e.name: e for e in engines}
    shown = tuple(k for k in report_clicks if k <= n_clicks)
    all_results: list[CaseResult] = []
    summaries: list[EngineSummary] = []
    for name, engine in named.items():
        results = [simulate_clicks(engine, case, n_clicks) for case in cases]
        for r in results:
            r.engine = name
        all_results.extend(results)
        summaries.append(summarise(name, results, shown))
    return EvaluationReport(n_clicks, shown, CLICK_RULE, summaries, all_results)


# ---------------------------------------------------------------------- cases from a phantom


class PhantomLike(Protocol):
    """What :func:`cases_from_phantom` reads (``worker.phantoms.Phantom`` has it)."""

    seed: int
    tracer: str
    suv: np.ndarray
    labels: np.ndarray
    lesion_labels: np.ndarray
    label_names: dict[int, str]
    pet_affine: np.ndarray  # stored [slice, row, col] index -> LPS mm

    @property
    def pet_spacing(self) -> tuple[float, float, float]: ...


def group_of(label: str) -> str:
    return _GROUP_OF_LABEL.get(label, label)


def cases_from_phantom(
    phantom: PhantomLike,
    organs: Iterable[str] | None = DEFAULT_ORGANS,
    include_lesions: bool = True,
    min_voxels: int = 1,
    lesion_groups: Mapping[int, str] | None = None,
    organ_group: str | None = None,
) -> list[Case]:
    """One case per organ label (``organs``; ``None`` means every organ label) and per lesion.

    An organ's ground truth is its label in the label map, where lesions are painted over organs, so an
    organ excludes the lesions inside it; each lesion instance is its own case. Objects with fewer than
    ``min_voxels`` voxels are skipped. ``lesion_groups`` (lesion index → group, e.g. by diameter) and
    ``organ_group`` (one group for every organ) replace the default reporting groups.
    """
    stored = np.asarray(phantom.suv, dtype=np.float32)
    # Engines see what the app gives them: RAS-canonical views of the stored [slice, row, col] arrays.
    canonical = Canonical.from_lps_affine(phantom.pet_affine, stored.shape)
    volume = canonical.to_ras(stored)
    spacing = canonical.spacing(phantom.pet_spacing)
    session_key = f"phantom-{phantom.tracer}-{phantom.seed}-{'x'.join(map(str, volume.shape))}"
    wanted = None if organs is None else set(organs)
    cases: list[Case] = []
    for value, name in sorted(phantom.label_names.items()):
        if name == "lesion" or (wanted is not None and name not in wanted):
            continue
        target = canonical.to_ras(phantom.labels == value)
        if int(target.sum()) >= min_voxels:
            cases.append(
                Case(
                    f"{session_key}/{name}",
                    volume,
                    spacing,
                    target,
                    name,
                    organ_group or group_of(name),
                    session_key,
                    "organ",
                )
            )
    if include_lesions:
        for value in np.unique(phantom.lesion_labels):
            if value == 0:
                continue
            target = canonical.to_ras(phantom.lesion_labels == value)
            if int(target.sum()) >= min_voxels:
                case_id = f"{session_key}/lesion-{int(value)}"
                group = (lesion_groups or {}).get(int(value), LESION_GROUP)
                cases.append(Case(case_id, volume, spacing, target, "lesion", group, session_key, "lesion"))
    return cases
