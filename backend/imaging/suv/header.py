"""The PET header attributes SUV needs: DICOM date/time parsing and the per-slice SuvHeader record.

Times are handled as naive local date-times; DICOM timezone offsets (&ZZXX) are dropped because
SeriesTime/AcquisitionTime carry none, and mixing aware and naive times would be wrong either way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, time
from typing import Any

import numpy as np

TAG_NAMES = {
    "weight": "PatientWeight (0010,1030)",
    "height": "PatientSize (0010,1020)",
    "sex": "PatientSex (0010,0040)",
    "dose": "RadionuclideTotalDose (0018,1074)",
    "half_life": "RadionuclideHalfLife (0018,1075)",
    "injection": "RadiopharmaceuticalStartDateTime (0018,1078) or RadiopharmaceuticalStartTime (0018,1072)",
    "series_time": "SeriesDate/SeriesTime (0008,0021)/(0008,0031)",
    "acquisition_time": "AcquisitionDate/AcquisitionTime (0008,0022)/(0008,0032) on every slice",
    "frame_duration": "ActualFrameDuration (0018,1242) on every slice",
    "frame_reference": "FrameReferenceTime (0054,1300)",
    "corrected_image": "CorrectedImage (0028,0051)",
    "decay_correction": "DecayCorrection (0054,1102)",
    "units": "Units (0054,1001)",
    "suv_type": "SUVType (0054,1006)",
}

PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"
GE_PET_PRIVATE_CREATOR = "GEMS_PETD_01"

# --------------------------------------------------------------------------------------------------
# DICOM date/time parsing
# --------------------------------------------------------------------------------------------------


def parse_dicom_date(value: str | None) -> date | None:
    """DA 'YYYYMMDD' (also the old 'YYYY.MM.DD'); None when absent or malformed."""
    if not value:
        return None
    text = str(value).strip().replace(".", "").replace("-", "")
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def parse_dicom_time(value: str | None) -> time | None:
    """TM 'HH[MM[SS[.FFFFFF]]]' (also ACR-NEMA 'HH:MM:SS.frac'); None when absent or malformed."""
    if not value:
        return None
    text = str(value).strip().replace(":", "")
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text)
    if not match:
        return None
    hours, minutes, seconds, fraction = match.groups()
    try:
        return time(
            int(hours),
            int(minutes or 0),
            # DICOM allows second 60 (leap second); clamp rather than reject the whole series.
            min(int(seconds or 0), 59),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


def parse_dicom_datetime(value: str | None) -> datetime | None:
    """DT 'YYYYMMDDHHMMSS.FFFFFF&ZZXX' with optional trailing parts; the UTC offset is dropped."""
    if not value:
        return None
    text = re.split(r"[+\-]", str(value).strip(), maxsplit=1)[0]
    day = parse_dicom_date(text[:8])
    if day is None:
        return None
    clock = parse_dicom_time(text[8:]) if len(text) > 8 else time(0, 0)
    if clock is None:
        return None
    return datetime.combine(day, clock)


def combine_date_time(day: str | None, clock: str | None) -> datetime | None:
    parsed_day = parse_dicom_date(day)
    parsed_clock = parse_dicom_time(clock)
    if parsed_day is None or parsed_clock is None:
        return None
    return datetime.combine(parsed_day, parsed_clock)


# --------------------------------------------------------------------------------------------------
# Per-slice header extract
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuvHeader:
    """The attributes of one PET slice that SUV needs; JSON-able via to_dict()/from_dict().

    Dates/times stay DICOM strings so that the record can be stored and re-evaluated later.
    ``corrected_image`` is None when the attribute is absent (distinct from present but empty).
    """

    units: str | None = None
    decay_correction: str | None = None
    corrected_image: tuple[str, ...] | None = None
    suv_type: str | None = None
    patient_weight_kg: float | None = None
    patient_size_m: float | None = None
    patient_sex: str | None = None
    series_date: str | None = None
    series_time: str | None = None
    acquisition_date: str | None = None
    acquisition_time: str | None = None
    acquisition_datetime: str | None = None
    radiopharmaceutical: str | None = None
    radionuclide: str | None = None
    radionuclide_total_dose: float | None = None
    radionuclide_half_life: float | None = None
    radiopharmaceutical_start_datetime: str | None = None
    radiopharmaceutical_start_time: str | None = None
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    frame_reference_time_ms: float | None = None
    actual_frame_duration_ms: float | None = None
    decay_factor: float | None = None
    manufacturer: str | None = None
    philips_suv_scale_factor: float | None = None
    philips_activity_concentration_scale_factor: float | None = None
    ge_scan_datetime: str | None = None
    sop_instance_uid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.corrected_image is not None:
            data["corrected_image"] = list(self.corrected_image)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SuvHeader:
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if values.get("corrected_image") is not None:
            values["corrected_image"] = tuple(values["corrected_image"])
        return cls(**values)

    def acquisition(self) -> datetime | None:
        """AcquisitionDateTime (0008,002A) if present, else AcquisitionDate + AcquisitionTime."""
        return parse_dicom_datetime(self.acquisition_datetime) or combine_date_time(
            self.acquisition_date or self.series_date, self.acquisition_time
        )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="ignore")
    text = str(value).strip().strip("\x00").strip()
    return text or None


def _number(value: Any) -> float | None:
    """Float from DS/IS/FD or raw private bytes (UN VR in implicit files); None when absent/unparsable."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        text = value.decode("ascii", errors="ignore").strip("\x00 ")
        try:
            return float(text)
        except ValueError:
            if len(value) == 8:
                return float(np.frombuffer(bytes(value), dtype="<f8")[0])
            if len(value) == 4:
                return float(np.frombuffer(bytes(value), dtype="<f4")[0])
            return None
    if isinstance(value, list | tuple):
        return _number(value[0]) if value else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _private_value(dataset: Any, group: int, offset: int, creator: str) -> Any:
    """Private element by creator; falls back to the conventional block 0x10 when the creator is absent."""
    try:
        return dataset.get_private_item(group, offset, creator).value
    except (KeyError, ValueError):
        pass
    creator_tag = (group << 16) | 0x0010
    if creator_tag in dataset:
        # The block is reserved by some other creator: its elements mean something else.
        return None
    fixed_tag = (group << 16) | 0x1000 | offset
    return dataset[fixed_tag].value if fixed_tag in dataset else None


def _coded_meaning(item: Any, sequence_keyword: str) -> str | None:
    sequence = item.get(sequence_keyword) if item is not None else None
    if sequence:
        return _text(sequence[0].get("CodeMeaning"))
    return None


def suv_header_from_dataset(dataset: Any) -> SuvHeader:
    """Extract the SUV-relevant attributes from one pydicom Dataset (pixels not needed)."""
    info_sequence = dataset.get("RadiopharmaceuticalInformationSequence")
    info = info_sequence[0] if info_sequence else None

    def from_info(keyword: str) -> Any:
        return info.get(keyword) if info is not None else None

    corrected = dataset.get("CorrectedImage")
    if corrected is None:
        corrected_image = None
    elif isinstance(corrected, str):
        corrected_image = tuple(part.strip().upper() for part in corrected.split("\\") if part.strip())
    else:
        corrected_image = tuple(str(part).strip().upper() for part in corrected)

    return SuvHeader(
        units=_text(dataset.get("Units")),
        decay_correction=_text(dataset.get("DecayCorrection")),
        corrected_image=corrected_image,
        suv_type=_text(dataset.get("SUVType")),
        patient_weight_kg=_number(dataset.get("PatientWeight")),
        patient_size_m=_number(dataset.get("PatientSize")),
        patient_sex=_text(dataset.get("PatientSex")),
        series_date=_text(dataset.get("SeriesDate")),
        series_time=_text(dataset.get("SeriesTime")),
        acquisition_date=_text(dataset.get("AcquisitionDate")),
        acquisition_time=_text(dataset.get("AcquisitionTime")),
        acquisition_datetime=_text(dataset.get("AcquisitionDateTime")),
        radiopharmaceutical=_text(from_info("Radiopharmaceutical"))
        or _coded_meaning(info, "RadiopharmaceuticalCodeSequence"),
        radionuclide=_coded_meaning(info, "RadionuclideCodeSequence"),
        radionuclide_total_dose=_number(from_info("RadionuclideTotalDose")),
        radionuclide_half_life=_number(from_info("RadionuclideHalfLife")),
        radiopharmaceutical_start_datetime=_text(from_info("RadiopharmaceuticalStartDateTime")),
        radiopharmaceutical_start_time=_text(from_info("RadiopharmaceuticalStartTime")),
        rescale_slope=_number(dataset.get("RescaleSlope")) or 1.0,
        rescale_intercept=_number(dataset.get("RescaleIntercept")) or 0.0,
        frame_reference_time_ms=_number(dataset.get("FrameReferenceTime")),
        actual_frame_duration_ms=_number(dataset.get("ActualFrameDuration")),
        decay_factor=_number(dataset.get("DecayFactor")),
        manufacturer=_text(dataset.get("Manufacturer")),
        philips_suv_scale_factor=_number(_private_value(dataset, 0x7053, 0x00, PHILIPS_PRIVATE_CREATOR)),
        philips_activity_concentration_scale_factor=_number(
            _private_value(dataset, 0x7053, 0x09, PHILIPS_PRIVATE_CREATOR)
        ),
        ge_scan_datetime=_text(_private_value(dataset, 0x0009, 0x0D, GE_PET_PRIVATE_CREATOR)),
        sop_instance_uid=_text(dataset.get("SOPInstanceUID")),
    )


