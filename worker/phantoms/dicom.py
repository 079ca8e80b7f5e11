"""Write a phantom as real DICOM PET and CT series (pydicom), one file per slice.

Variants cover the SUV paths a reader must handle: Bq/ml, Philips counts with private scale factors,
values already in SUV, the three decay corrections, missing or implausible tags, GE's private scan
time, scrambled instance numbers. The files read back (backend.imaging.dicom_series) into exactly
the phantom's arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from worker.phantoms.phantom import Phantom
from worker.phantoms.physics import TRACERS

PetUnits = Literal["BQML", "CNTS", "GML"]
DecayCorrection = Literal["START", "ADMIN", "NONE"]
Vendor = Literal["generic", "GE", "Philips", "Siemens"]

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# Private creators of the vendor blocks written below (Philips counts scale factors, GE scan date/time);
# backend.imaging.suv reads them back under the same names.
PHILIPS_PRIVATE_CREATOR = "Philips PET Private Group"
GE_PET_PRIVATE_CREATOR = "GEMS_PETD_01"

_INT16_MAX = 32767


def _ds(value: float) -> str:
    """DS text of at most 16 characters; what a reader parses back is exactly float(_ds(value))."""
    return format_number_as_ds(float(value))


def _da(moment: date) -> str:
    return moment.strftime("%Y%m%d")


def _tm(moment: datetime) -> str:
    return moment.strftime("%H%M%S")


def _dt(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


@dataclass
class WrittenSeries:
    pet_dir: Path
    ct_dir: Path | None
    pet_files: list[Path]  # PET array slice order
    ct_files: list[Path]
    study_instance_uid: str
    pet_series_instance_uid: str
    ct_series_instance_uid: str | None
    frame_of_reference_uid: str
    pet_rescale_slopes: list[float]  # as written, PET array slice order
    pet_written_values: str  # "BQML START", "CNTS", ...


_MANUFACTURERS = {
    "generic": ("SegAnyPET Phantom", "Synthetic PET/CT"),
    "GE": ("GE MEDICAL SYSTEMS", "Discovery MI"),
    "Philips": ("Philips Medical Systems", "Vereos PET/CT"),
    "Siemens": ("SIEMENS", "Biograph Vision"),
}


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


class _SliceFileWriter:
    """Writes many single-slice files that share most elements.

    The shared elements are encoded once (explicit VR little endian) and spliced, in tag order, with the
    few per-slice ones; pydicom's dcmwrite per file spends most of its time re-encoding the shared part.
    The output is an ordinary Part 10 file (preamble, DICM, file meta group, dataset).
    """

    def __init__(self, shared: Dataset, sop_class_uid: str, omit_tags: Iterable[str]) -> None:
        self._sop_class_uid = sop_class_uid
        self._omit = tuple(omit_tags)
        self._character_set = shared.get("SpecificCharacterSet", "ISO_IR 100")
        self._shared = {int(tag): self._encode(shared[tag]) for tag in shared.keys() if not self._skip(tag)}

    @staticmethod
    def _skip(tag: int) -> bool:
        # Group length elements (gggg,0000) are retired outside the file meta group.
        return (tag & 0xFFFF) == 0 and (tag >> 16) > 6

    def _encode(self, element: object) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_data_element(buffer, element, self._character_set)  # type: ignore[arg-type]
        return buffer.getvalue()

    def write(self, path: Path, varying: Dataset) -> Path:
        _remove_tags(varying, self._omit)
        encoded = dict(self._shared)
        encoded.update({int(tag): self._encode(varying[tag]) for tag in varying.keys()})
        meta = DicomBytesIO()
        meta.is_little_endian, meta.is_implicit_VR = True, False
        write_file_meta_info(meta, _file_meta(self._sop_class_uid, str(varying.SOPInstanceUID)))
        with open(path, "wb") as handle:
            handle.write(b"\0" * 128 + b"DICM")
            handle.write(meta.getvalue())
            handle.write(b"".join(encoded[tag] for tag in sorted(encoded)))
        return path


def _common_dataset(phantom: Phantom, vendor: Vendor, study_uid: str, frame_uid: str) -> Dataset:
    patient = phantom.patient
    manufacturer, model = _MANUFACTURERS[vendor]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = _da(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{patient.age_years:03d}Y"
    ds.PatientWeight = _ds(patient.weight_kg)
    ds.PatientSize = _ds(patient.height_m)
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = _da(phantom.ct_scan_datetime)
    ds.StudyTime = _tm(phantom.ct_scan_datetime)
    ds.StudyID = f"{phantom.seed}"
    ds.AccessionNumber = f"ACC{phantom.seed:07d}"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"PET/CT whole body {phantom.tracer} (synthetic)"
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.InstitutionName = "SegAnyPET Phantom Clinic"
    ds.BodyPartExamined = "WHOLEBODY"
    ds.PatientPosition = phantom.patient_position
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    return ds


def _orientation_strings(affine: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    column_cosine = affine[:3, 1] / np.linalg.norm(affine[:3, 1])
    row_cosine = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    return [_ds(v) for v in (*row_cosine, *column_cosine)], row_cosine, column_cosine


def _instance_order(count: int, scramble: bool, seed: int, first_acquired_last: bool) -> list[int]:
    """InstanceNumber per array slice: acquisition order (from the last array slice) unless scrambled."""
    numbers = list(range(count, 0, -1)) if first_acquired_last else list(range(1, count + 1))
    if scramble:
        permutation = np.random.default_rng(seed + 7919).permutation(count)
        numbers = [int(p) + 1 for p in permutation]
    return numbers


def _remove_tags(dataset: Dataset, keywords: Iterable[str]) -> None:
    for keyword in keywords:
        if keyword in dataset:
            delattr(dataset, keyword)
        for item in dataset.get("RadiopharmaceuticalInformationSequence", []) or []:
            if keyword in item:
                delattr(item, keyword)


def _quantise(values: np.ndarray) -> tuple[np.ndarray, float]:
    """int16 pixels and the per-slice RescaleSlope (GE style: the slice maximum maps to 32767)."""
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    slope = float(_ds(peak / _INT16_MAX)) if peak > 0 else 1.0
    stored = np.clip(np.rint(values / slope), -_INT16_MAX - 1, _INT16_MAX).astype(np.int16)
    return stored, slope


def _pet_slice_values(
    phantom: Phantom, units: PetUnits, decay_correction: DecayCorrection, counts_scale: float
) -> list[np.ndarray]:
    """Per-slice pixel values (before quantisation) in the written units."""
    weight_g = phantom.patient.weight_kg * 1000.0
    suv = phantom.suv.astype(np.float64)
    if units == "GML":
        return list(suv)
    if decay_correction == "ADMIN":
        activity = suv * phantom.injected_dose_bq / weight_g
        slices = list(activity)
    elif decay_correction == "NONE":
        slices = []
        for index, moment in enumerate(phantom.slice_acquisition_datetimes):
            elapsed = (moment - phantom.injection_datetime).total_seconds()
            remaining = phantom.injected_dose_bq * 2.0 ** (-elapsed / phantom.half_life_s)
            slices.append(suv[index] * remaining / weight_g)
    else:
        slices = list(suv / phantom.suv_factor)
    if units == "CNTS":
        slices = [values / counts_scale for values in slices]
    return slices


def _radiopharmaceutical_item(phantom: Phantom, dose_in_mbq: bool) -> Dataset:
    spec = TRACERS[phantom.tracer]
    item = Dataset()
    item.Radiopharmaceutical = spec.radiopharmaceutical
    item.RadiopharmaceuticalStartTime = _tm(phantom.injection_datetime)
    item.RadiopharmaceuticalStartDateTime = _dt(phantom.injection_datetime)
    item.RadionuclideTotalDose = _ds(
        phantom.injected_dose_bq / 1e6 if dose_in_mbq else phantom.injected_dose_bq
    )
    item.RadionuclideHalfLife = _ds(spec.nuclide.half_life_s)
    item.RadionuclidePositronFraction = _ds(spec.nuclide.positron_fraction)
    code = Dataset()
    code.CodeValue = spec.nuclide.code_value
    code.CodingSchemeDesignator = "SRT"
    code.CodeMeaning = spec.nuclide.code_meaning
    item.RadionuclideCodeSequence = DicomSequence([code])
    if spec.code is not None:
        drug = Dataset()
        drug.CodeValue, drug.CodingSchemeDesignator, drug.CodeMeaning = spec.code
        item.RadiopharmaceuticalCodeSequence = DicomSequence([drug])
    return item


def write_pet_series(
    phantom: Phantom,
    out_dir: str | Path,
    *,
    units: PetUnits = "BQML",
    decay_correction: DecayCorrection = "START",
    vendor: Vendor = "generic",
    corrected_image: Sequence[str] | None = None,
    omit_tags: Iterable[str] = (),
    dose_in_mbq: bool = False,
    series_time_offset_s: float = 0.0,
    ge_scan_datetime_tag: bool | None = None,
    philips_scale_tags: Sequence[str] = ("suv", "activity"),
    counts_scale: float = 2.5,
    scramble_instance_numbers: bool = False,
    file_prefix: str = "PT",
    study_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
) -> tuple[list[Path], list[float], str]:
    """Write the PET as one DICOM file per slice; returns (files in array slice order, slopes, series UID).

    ``units``/``decay_correction`` choose the stored values (see _pet_slice_values). ``corrected_image``
    defaults to a GE-like list with DECY dropped for DecayCorrection NONE. ``series_time_offset_s`` > 0
    imitates a post-processed series whose SeriesTime is after the acquisition. GE vendor writes the
    private scan date/time (0009,100D) unless ``ge_scan_datetime_tag`` is False. CNTS writes Philips
    (7053,1000) SUV scale ('suv') and/or (7053,1009) activity concentration scale ('activity').
    ``counts_scale`` is Bq/ml per count for CNTS.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = study_instance_uid or phantom.uid("study")
    frame_uid = frame_of_reference_uid or phantom.uid("frame")
    series_uid = phantom.uid(f"pet-series:{units}:{decay_correction}:{vendor}")
    if corrected_image is None:
        corrected_image = ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"]
        if decay_correction == "NONE":
            corrected_image = [c for c in corrected_image if c != "DECY"]
    write_ge_tag = vendor == "GE" if ge_scan_datetime_tag is None else ge_scan_datetime_tag

    base = _common_dataset(phantom, vendor, study_uid, frame_uid)
    series_moment = phantom.scan_datetime + timedelta(seconds=series_time_offset_s)
    base.SOPClassUID = PET_IMAGE_STORAGE
    base.Modality = "PT"
    base.SeriesInstanceUID = series_uid
    base.SeriesNumber = 3
    base.SeriesDescription = f"PET WB {phantom.tracer} {'AC' if 'ATTN' in corrected_image else 'NAC'}"
    base.SeriesDate = _da(series_moment)
    base.SeriesTime = _tm(series_moment)
    base.ImageType = ["ORIGINAL", "PRIMARY"]
    base.SeriesType = ["WHOLE BODY", "IMAGE"]
    base.Units = units
    base.CountsSource = "EMISSION"
    base.CorrectedImage = list(corrected_image)
    base.DecayCorrection = decay_correction
    base.RandomsCorrectionMethod = "DLYD"
    base.AttenuationCorrectionMethod = "CT"
    base.ReconstructionMethod = "OSEM 3i18s"
    base.NumberOfSlices = phantom.shape[0]
    if units == "GML":
        base.SUVType = "BW"
    base.RadiopharmaceuticalInformationSequence = DicomSequence(
        [_radiopharmaceutical_item(phantom, dose_in_mbq)]
    )
    base.CollimatorType = "NONE"
    # NM/PET Patient Orientation module: both Type 2, present even when empty.
    base.PatientOrientationCodeSequence = DicomSequence([])
    base.PatientGantryRelationshipCodeSequence = DicomSequence([])
    if write_ge_tag:
        block = base.private_block(0x0009, GE_PET_PRIVATE_CREATOR, create=True)
        block.add_new(0x0D, "DT", _dt(phantom.scan_datetime))
    base.Rows, base.Columns = phantom.shape[1], phantom.shape[2]
    base.PixelSpacing = [_ds(phantom.pet_spacing[1]), _ds(phantom.pet_spacing[2])]
    base.SliceThickness = _ds(phantom.pet_spacing[0])
    orientation, row_cosine, column_cosine = _orientation_strings(phantom.pet_affine)
    base.ImageOrientationPatient = orientation
    base.BitsStored, base.HighBit, base.PixelRepresentation = 16, 15, 1
    base.RescaleIntercept = "0"
    base.ActualFrameDuration = int(round(phantom.frame_duration_s * 1000.0))
    _remove_tags(base, omit_tags)

    normal = np.cross(row_cosine, column_cosine)
    values = _pet_slice_values(phantom, units, decay_correction, counts_scale)
    instances = _instance_order(
        phantom.shape[0], scramble_instance_numbers, phantom.seed, first_acquired_last=True
    )
    if units == "CNTS":
        block = base.private_block(0x7053, PHILIPS_PRIVATE_CREATOR, create=True)
        if "suv" in philips_scale_tags:
            block.add_new(0x00, "DS", _ds(counts_scale * phantom.suv_factor))
        if "activity" in philips_scale_tags:
            block.add_new(0x09, "DS", _ds(counts_scale))
    files: list[Path] = []
    slopes: list[float] = []
    # One dataset reused for every slice: only per-slice elements are reassigned (copying is the slow part).
    base.ContentDate, base.ContentTime = _da(series_moment), _tm(series_moment)
    writer = _SliceFileWriter(base, PET_IMAGE_STORAGE, omit_tags)
    for index, slice_values in enumerate(values):
        stored, slope = _quantise(slice_values)
        acquired = phantom.slice_acquisition_datetimes[index]
        since_start = (acquired - phantom.scan_datetime).total_seconds()
        position = phantom.pet_affine[:3, :3] @ np.array([index, 0.0, 0.0]) + phantom.pet_affine[:3, 3]
        ds = Dataset()
        ds.SOPInstanceUID = phantom.uid(f"pet:{series_uid}:{index}")
        ds.InstanceNumber = instances[index]
        ds.ImageIndex = phantom.shape[0] - index
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(position @ normal))
        ds.AcquisitionDate, ds.AcquisitionTime = _da(acquired), _tm(acquired)
        # One static frame for the whole series, as scanners write it for a whole-body acquisition;
        # a per-bed value makes converters such as dcm2niix split the series into several volumes.
        ds.FrameReferenceTime = _ds(phantom.frame_duration_s / 2.0 * 1000.0)
        ds.DecayFactor = (
            _ds(2.0 ** (since_start / phantom.half_life_s)) if decay_correction == "START" else "1"
        )
        ds.RescaleSlope = _ds(slope)
        ds.add_new(0x7FE00010, "OW", stored.tobytes())
        files.append(writer.write(directory / f"{file_prefix}{instances[index]:04d}.dcm", ds))
        slopes.append(slope)
    return files, slopes, series_uid


def write_ct_series(
    phantom: Phantom,
    out_dir: str | Path,
    *,
    vendor: Vendor = "generic",
    omit_tags: Iterable[str] = (),
    scramble_instance_numbers: bool = False,
    study_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
) -> tuple[list[Path], str]:
    """Write the CT (HU = stored − 1024) as one file per slice; returns (files in array order, series UID)."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    study_uid = study_instance_uid or phantom.uid("study")
    frame_uid = frame_of_reference_uid or phantom.uid("frame")
    series_uid = phantom.uid("ct-series")
    base = _common_dataset(phantom, vendor, study_uid, frame_uid)
    base.SOPClassUID = CT_IMAGE_STORAGE
    base.Modality = "CT"
    base.SeriesInstanceUID = series_uid
    base.SeriesNumber = 2
    base.SeriesDescription = "CT WB attenuation correction (synthetic)"
    base.SeriesDate, base.SeriesTime = _da(phantom.ct_scan_datetime), _tm(phantom.ct_scan_datetime)
    base.AcquisitionDate, base.AcquisitionTime = base.SeriesDate, base.SeriesTime
    base.ContentDate, base.ContentTime = base.SeriesDate, base.SeriesTime
    base.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    base.KVP = "120"
    base.AcquisitionNumber = 1
    base.ConvolutionKernel = "STANDARD"
    ct_shape = phantom.ct_hu.shape
    base.Rows, base.Columns = ct_shape[1], ct_shape[2]
    spacing = phantom.ct_spacing
    base.PixelSpacing = [_ds(spacing[1]), _ds(spacing[2])]
    base.SliceThickness = _ds(spacing[0])
    orientation, row_cosine, column_cosine = _orientation_strings(phantom.ct_affine)
    base.ImageOrientationPatient = orientation
    base.BitsStored, base.HighBit, base.PixelRepresentation = 12, 11, 0
    base.RescaleIntercept, base.RescaleSlope, base.RescaleType = "-1024", "1", "HU"
    base.WindowCenter, base.WindowWidth = "40", "400"
    _remove_tags(base, omit_tags)
    normal = np.cross(row_cosine, column_cosine)
    instances = _instance_order(
        ct_shape[0], scramble_instance_numbers, phantom.seed + 1, first_acquired_last=True
    )
    files: list[Path] = []
    writer = _SliceFileWriter(base, CT_IMAGE_STORAGE, omit_tags)
    for index in range(ct_shape[0]):
        position = phantom.ct_affine[:3, :3] @ np.array([index, 0.0, 0.0]) + phantom.ct_affine[:3, 3]
        ds = Dataset()
        ds.SOPInstanceUID = phantom.uid(f"ct:{index}")
        ds.InstanceNumber = instances[index]
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(position @ normal))
        ds.add_new(
            0x7FE00010, "OW", (phantom.ct_hu[index].astype(np.int32) + 1024).astype(np.uint16).tobytes()
        )
        files.append(writer.write(directory / f"CT{instances[index]:04d}.dcm", ds))
    return files, series_uid


def write_dicom_series(
    phantom: Phantom,
    out_dir: str | Path,
    *,
    write_ct: bool = True,
    units: PetUnits = "BQML",
    decay_correction: DecayCorrection = "START",
    vendor: Vendor = "generic",
    corrected_image: Sequence[str] | None = None,
    omit_tags: Iterable[str] = (),
    dose_in_mbq: bool = False,
    series_time_offset_s: float = 0.0,
    ge_scan_datetime_tag: bool | None = None,
    philips_scale_tags: Sequence[str] = ("suv", "activity"),
    counts_scale: float = 2.5,
    scramble_instance_numbers: bool = False,
) -> WrittenSeries:
    """Write PET (``out_dir/PT``) and, by default, CT (``out_dir/CT``) of one study / frame of reference.

    Variants: ``units='CNTS', vendor='Philips'`` (Philips counts with private scale factors),
    ``units='GML'`` (values already SUV), ``decay_correction`` START/ADMIN/NONE, ``omit_tags`` (keywords
    removed everywhere, including inside RadiopharmaceuticalInformationSequence) and ``dose_in_mbq``
    for the "missing/implausible SUV tags" paths. See write_pet_series for the rest.
    """
    root = Path(out_dir)
    omitted = tuple(omit_tags)
    study_uid, frame_uid = phantom.uid("study"), phantom.uid("frame")
    pet_files, slopes, pet_uid = write_pet_series(
        phantom,
        root / "PT",
        units=units,
        decay_correction=decay_correction,
        vendor=vendor,
        corrected_image=corrected_image,
        omit_tags=omitted,
        dose_in_mbq=dose_in_mbq,
        series_time_offset_s=series_time_offset_s,
        ge_scan_datetime_tag=ge_scan_datetime_tag,
        philips_scale_tags=philips_scale_tags,
        counts_scale=counts_scale,
        scramble_instance_numbers=scramble_instance_numbers,
        study_instance_uid=study_uid,
        frame_of_reference_uid=frame_uid,
    )
    ct_files: list[Path] = []
    ct_uid = None
    if write_ct:
        ct_files, ct_uid = write_ct_series(
            phantom,
            root / "CT",
            vendor=vendor,
            omit_tags=omitted,
            scramble_instance_numbers=scramble_instance_numbers,
            study_instance_uid=study_uid,
            frame_of_reference_uid=frame_uid,
        )
    return WrittenSeries(
        pet_dir=root / "PT",
        ct_dir=root / "CT" if write_ct else None,
        pet_files=pet_files,
        ct_files=ct_files,
        study_instance_uid=study_uid,
        pet_series_instance_uid=pet_uid,
        ct_series_instance_uid=ct_uid,
        frame_of_reference_uid=frame_uid,
        pet_rescale_slopes=slopes,
        pet_written_values=f"{units} {decay_correction}",
    )
