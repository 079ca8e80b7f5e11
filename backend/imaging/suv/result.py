"""What an SUV computation takes from a manager (SuvOverrides) and what it gives back (SuvResult)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

import numpy as np

from .body import SUV_TYPES

SuvStatus = Literal["ok", "needs_parameters", "not_applicable"]


@dataclass(frozen=True)
class SuvOverrides:
    """Values a manager supplies for missing or implausible tags; each, when given, wins over the header.

    ``scan_datetime`` replaces the START reference time (it is ignored for ADMIN and NONE).
    """

    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    patient_sex: str | None = None
    injected_dose_bq: float | None = None
    injection_datetime: datetime | None = None
    half_life_s: float | None = None
    scan_datetime: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuvOverrides:
        values = dict(data)
        for key in ("injection_datetime", "scan_datetime"):
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass(frozen=True)
class SuvParameters:
    """What the computation actually used; ``sources`` says where each value came from."""

    units: str | None = None
    decay_correction: str | None = None
    patient_weight_kg: float | None = None
    patient_height_m: float | None = None
    patient_sex: str | None = None
    injected_dose_bq: float | None = None
    half_life_s: float | None = None
    injection_datetime: datetime | None = None
    scan_datetime: datetime | None = None
    uptake_time_s: float | None = None
    decayed_dose_bq: float | None = None
    frame_duration_s: float | None = None
    lean_body_mass_kg: float | None = None
    lean_body_mass_james_kg: float | None = None
    body_surface_area_m2: float | None = None
    ideal_body_weight_kg: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


@dataclass(frozen=True)
class SuvResult:
    """Outcome of the SUV computation for one series.

    ``slice_factors`` turn rescaled pixel values (stored × slope + intercept) into SUV of type ``suv_type``,
    one per slice in the order of the headers passed in (array slice order for LoadedSeries.slice_headers);
    ``factor`` is set only when every slice shares one. ``suv_type`` is SUVbw whenever the header allows it;
    otherwise the type the values already are (e.g. GML with SUVType LBM and no height): never a mislabel.
    ``conversions[t]`` multiplies values of ``suv_type`` into type t (1.0 for ``suv_type`` itself);
    ``unavailable[t]`` says why type t cannot be given. ``units`` is the unit of ``suv_type`` (g/ml, cm2/ml)
    when status is 'ok', otherwise the raw units (the pixels stay in Bq/ml or counts).
    """

    status: SuvStatus
    reason: str
    units: str
    raw_units: str | None
    rule: str
    factor: float | None = None
    slice_factors: tuple[float, ...] | None = None
    suv_type: str | None = None
    conversions: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    parameters: SuvParameters = field(default_factory=SuvParameters)
    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def varies_per_slice(self) -> bool:
        return self.ok and self.factor is None

    def factors_array(self, suv_type: str | None = None) -> np.ndarray:
        """Per-slice factors from rescaled pixels to `suv_type` (default: the stored type)."""
        if not self.ok or self.slice_factors is None:
            raise ValueError(f"no SUV factors: {self.reason}")
        wanted = suv_type or self.suv_type or ""
        if wanted not in self.conversions:
            raise ValueError(f"no {wanted} factors: {self.unavailable.get(wanted, 'unknown SUV type')}")
        return np.asarray(self.slice_factors, dtype=np.float64) * self.conversions[wanted]

    def apply(self, values: np.ndarray, suv_type: str | None = None) -> np.ndarray:
        """Scale rescaled pixel values (array indexed [slice, row, col]) to SUV of a type, as float32."""
        factors = self.factors_array(suv_type)
        if values.shape[0] != factors.shape[0]:
            raise ValueError(f"array has {values.shape[0]} slices but {factors.shape[0]} factors are known")
        return (values * factors.reshape((-1,) + (1,) * (values.ndim - 1))).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parameters"] = self.parameters.to_dict()
        return jsonable(data)


def describe_types(suv_type: str | None, conversions: Mapping[str, float],
                   unavailable: Mapping[str, str]) -> list[dict[str, Any]]:
    """One entry per SUV type for an API or a viewer unit switch: display value = voxel × multiplier."""
    return [{"type": name, "label": spec["label"], "units": spec["units"], "stored": name == suv_type,
             "available": name in conversions, "multiplier": conversions.get(name),
             "reason": None if name in conversions else unavailable.get(name, "not computed")}
            for name, spec in SUV_TYPES.items()]


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def not_applicable(reason: str, raw_units: str | None, warnings: Sequence[str] = ()) -> SuvResult:
    return SuvResult(status="not_applicable", reason=reason, units=raw_units or "unknown", raw_units=raw_units,
                     rule="no SUV", warnings=tuple(warnings))
