"""Standardised uptake values (SUV) from PET DICOM headers: pure Python (numpy, optional pydicom), no Django.

Modules: header (DICOM attributes and times), timing (dose, decay, scan start), body (SUV types and body-size
formulas), result (what goes in and comes out), compute (the Units branches). Definitions follow
/work/shared/PET_NOTES.md and the QIBA vendor-neutral SUV pseudo-code; see each module's docstring.
"""

from .body import (
    SEX_RULE,
    SUV_TYPES,
    Normalisers,
    body_normalisers,
    bsa_dubois,
    ibw_devine,
    lbm_james,
    lbm_janmahasatian,
    normalise_sex,
)
from .compute import SUV_TYPE_OF_HEADER, compute_suv_factors, compute_suv_from_parameters
from .header import (
    GE_PET_PRIVATE_CREATOR,
    PHILIPS_PRIVATE_CREATOR,
    TAG_NAMES,
    SuvHeader,
    combine_date_time,
    parse_dicom_date,
    parse_dicom_datetime,
    parse_dicom_time,
    suv_header_from_dataset,
)
from .result import SuvOverrides, SuvParameters, SuvResult, describe_types
from .timing import (
    KNOWN_HALF_LIVES_S,
    average_count_rate_time,
    back_computed_scan_start,
    decayed_dose,
    frame_average_factor,
    identify_radionuclide,
    suv_bw_factor,
)

__all__ = [
    "GE_PET_PRIVATE_CREATOR", "PHILIPS_PRIVATE_CREATOR", "KNOWN_HALF_LIVES_S", "SEX_RULE", "SUV_TYPES", "SUV_TYPE_OF_HEADER", "TAG_NAMES", "Normalisers", "SuvHeader",
    "SuvOverrides", "SuvParameters", "SuvResult", "average_count_rate_time", "back_computed_scan_start",
    "body_normalisers", "bsa_dubois", "combine_date_time", "compute_suv_factors", "compute_suv_from_parameters",
    "decayed_dose", "describe_types", "frame_average_factor", "ibw_devine", "identify_radionuclide", "lbm_james",
    "lbm_janmahasatian", "normalise_sex", "parse_dicom_date", "parse_dicom_datetime", "parse_dicom_time",
    "suv_bw_factor", "suv_header_from_dataset",
]
