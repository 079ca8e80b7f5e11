"""Body-size normalisations and the SUV types a reader can choose between.

Every SUV type is ``value[Bq/ml] × normaliser / decayed dose[Bq]``; the normalisers differ:

=========  =====================================  ===========  ======================================
type       normaliser                             unit         source
=========  =====================================  ===========  ======================================
SUVbw      body weight (g)                        g/ml         QIBA vendor-neutral pseudo-code
SUL        lean body mass, Janmahasatian (g)      g/ml         PERCIST 1.0 (Wahl 2009); Janmahasatian 2005
SULjames   lean body mass, James, 128 male (g)    g/ml         James 1976; DICOM's LBMJAMES128
SUVbsa     body surface area, DuBois (cm²)        cm2/ml       DuBois & DuBois 1916
SUVibw     ideal body weight, Devine (g)          g/ml         Devine 1974
=========  =====================================  ===========  ======================================

So one type converts into another by the ratio of their normalisers, which depends only on the patient:
``SUL = SUVbw × LBM / weight``. That is why a series stores one set of per-slice factors (for the type its
voxels are stored in) plus one scalar per other type.

Rule for PatientSex other than M/F ("O", absent, or anything else): SUVbw and SUVbsa are computed (body
weight and the DuBois formula have no sex term); SUL, SULjames and SUVibw are not, because their formulas
exist only in a male and a female form and choosing one on the patient's behalf would be a guess. The
reason is stored with the series and shown wherever the type would be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Sex = Literal["M", "F"]

SUV_TYPES: dict[str, dict[str, str]] = {
    "SUVbw": {"units": "g/ml", "label": "SUV (body weight)"},
    "SUL": {"units": "g/ml", "label": "SUL (lean body mass, Janmahasatian)"},
    "SULjames": {"units": "g/ml", "label": "SUL (lean body mass, James 128)"},
    "SUVbsa": {"units": "cm2/ml", "label": "SUV (body surface area, DuBois)"},
    "SUVibw": {"units": "g/ml", "label": "SUV (ideal body weight, Devine)"},
}
SEX_SPECIFIC_TYPES = ("SUL", "SULjames", "SUVibw")

SEX_RULE = (
    "{sex}: SUL (Janmahasatian or James lean body mass) and SUVibw (Devine) exist only in male and female "
    "forms, so they are not computed; SUVbw and SUVbsa (DuBois, no sex term) are"
)

MIN_PLAUSIBLE_WEIGHT_KG = 1.0
MAX_PLAUSIBLE_WEIGHT_KG = 500.0
MIN_PLAUSIBLE_HEIGHT_M = 0.3
MAX_PLAUSIBLE_HEIGHT_M = 2.6


def normalise_sex(sex: str | None) -> Sex | None:
    text = (sex or "").strip().upper()
    if text in ("M", "MALE"):
        return "M"
    if text in ("F", "FEMALE"):
        return "F"
    return None


def _require_sex(sex: str) -> Sex:
    known = normalise_sex(sex)
    if known is None:
        raise ValueError(f"sex must be 'M' or 'F', got {sex!r}: " + SEX_RULE.format(sex=f"PatientSex {sex!r}"))
    return known


def lbm_james(weight_kg: float, height_m: float, sex: str, male_coefficient: float = 128.0) -> float:
    """James lean body mass (kg); DICOM's LBMJAMES128. Some software uses 120 for males."""
    height_cm = 100.0 * height_m
    if _require_sex(sex) == "M":
        return 1.10 * weight_kg - male_coefficient * (weight_kg / height_cm) ** 2
    return 1.07 * weight_kg - 148.0 * (weight_kg / height_cm) ** 2


def lbm_janmahasatian(weight_kg: float, height_m: float, sex: str) -> float:
    """Janmahasatian lean body mass (kg), preferred by PERCIST for SUL."""
    bmi = weight_kg / height_m**2
    if _require_sex(sex) == "M":
        return 9270.0 * weight_kg / (6680.0 + 216.0 * bmi)
    return 9270.0 * weight_kg / (8780.0 + 244.0 * bmi)


def bsa_dubois(weight_kg: float, height_m: float) -> float:
    """Body surface area (m²), DuBois & DuBois."""
    return 0.007184 * weight_kg**0.425 * (100.0 * height_m) ** 0.725


def ibw_devine(height_m: float, sex: str) -> float:
    """Ideal body weight (kg), Devine."""
    height_cm = 100.0 * height_m
    if _require_sex(sex) == "M":
        return 48.0 + 1.06 * (height_cm - 152.0)
    return 45.5 + 0.91 * (height_cm - 152.0)


@dataclass(frozen=True)
class Normalisers:
    """Normaliser per SUV type (grams, or cm² for SUVbsa) and, for each type without one, the reason."""

    values: dict[str, float] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    lean_body_mass_kg: float | None = None
    lean_body_mass_james_kg: float | None = None
    body_surface_area_m2: float | None = None
    ideal_body_weight_kg: float | None = None

    def ratio(self, target: str, source: str) -> float | None:
        """Multiplier turning SUV of type `source` into type `target`; None when either is unavailable."""
        if target in self.values and source in self.values:
            return self.values[target] / self.values[source]
        return None


def _usable(value: float, what: str, unavailable: dict[str, str], suv_type: str) -> float | None:
    if math.isfinite(value) and value > 0:
        return value
    unavailable[suv_type] = f"the {what} formula gives a non-positive value ({value:.3g}) for this patient"
    return None


def body_normalisers(weight_kg: float | None, height_m: float | None, sex_text: str | None) -> Normalisers:
    """Every normaliser the body metrics allow (see the module docstring for the sex rule)."""
    unavailable: dict[str, str] = {}
    values: dict[str, float] = {}
    weight = weight_kg if weight_kg is not None and MIN_PLAUSIBLE_WEIGHT_KG <= weight_kg <= MAX_PLAUSIBLE_WEIGHT_KG \
        else None
    height = height_m if height_m is not None and MIN_PLAUSIBLE_HEIGHT_M <= height_m <= MAX_PLAUSIBLE_HEIGHT_M \
        else None
    sex = normalise_sex(sex_text)
    no_weight = "PatientWeight (0010,1030) missing or not a plausible weight in kg"
    no_height = "PatientSize (0010,1020) missing or not a plausible height in m" + (
        " (stored in cm?)" if height_m is not None and height_m > 50 else "")
    if sex is None:
        shown = f"PatientSex {sex_text!r}" if sex_text else "PatientSex (0010,0040) absent"
        for suv_type in SEX_SPECIFIC_TYPES:
            unavailable[suv_type] = SEX_RULE.format(sex=shown)
    if weight is not None:
        values["SUVbw"] = weight * 1000.0
    else:
        unavailable["SUVbw"] = no_weight
    lbm = lbm_j = bsa = ibw = None
    if weight is None or height is None:
        reason = no_weight if weight is None else no_height
        for suv_type in ("SUL", "SULjames", "SUVbsa"):
            unavailable.setdefault(suv_type, reason)
    else:
        bsa = bsa_dubois(weight, height)
        values["SUVbsa"] = bsa * 1e4
        if sex is not None:
            lbm = _usable(lbm_janmahasatian(weight, height, sex), "Janmahasatian LBM", unavailable, "SUL")
            lbm_j = _usable(lbm_james(weight, height, sex), "James LBM", unavailable, "SULjames")
            if lbm is not None:
                values["SUL"] = lbm * 1000.0
            if lbm_j is not None:
                values["SULjames"] = lbm_j * 1000.0
    if height is None:
        unavailable.setdefault("SUVibw", no_height)
    elif sex is not None:
        ibw = _usable(ibw_devine(height, sex), "Devine IBW", unavailable, "SUVibw")
        if ibw is not None:
            values["SUVibw"] = ibw * 1000.0
    return Normalisers(values, unavailable, lbm, lbm_j, bsa, ibw)
