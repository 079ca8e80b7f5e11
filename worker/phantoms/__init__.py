"""Synthetic whole-body PET/CT phantoms for tests, benchmarks, demo data and training; pure compute.

``make_phantom`` builds one from a seed (``phantom``: the Phantom record; ``anatomy``: organ, body and
lesion geometry on voxel grids; ``physics``: uptake, PSF, noise, CT HU, acquisition timing); ``dicom``
writes it as PET and CT DICOM series and ``nifti`` as NIfTI volumes. ``make_clinical_phantom``
(``clinical``) builds a PET-only whole-body phantom with adult organ sizes on a chosen PET grid, for
evaluations at reading scale.
"""

from worker.phantoms.anatomy import (
    LABEL_NAMES,
    LESION_LABEL,
    LPS_TO_RAS,
    Cylinder,
    Ellipsoid,
    Grid,
    Orientation,
    contains,
    image_orientation,
    make_grid,
)
from worker.phantoms.clinical import (
    CLINICAL_GRIDS,
    ClinicalLesion,
    ClinicalPhantom,
    make_clinical_phantom,
)
from worker.phantoms.dicom import (
    CT_IMAGE_STORAGE,
    PET_IMAGE_STORAGE,
    DecayCorrection,
    PetUnits,
    Vendor,
    WrittenSeries,
    write_ct_series,
    write_dicom_series,
    write_pet_series,
)
from worker.phantoms.nifti import write_ct_nifti, write_label_nifti, write_pet_nifti
from worker.phantoms.phantom import (
    REALISTIC_SIZE,
    TEST_SIZE,
    Lesion,
    PatientInfo,
    Phantom,
    lesion_table,
    make_phantom,
)
from worker.phantoms.physics import Tracer

__all__ = [
    "CLINICAL_GRIDS",
    "ClinicalLesion",
    "ClinicalPhantom",
    "make_clinical_phantom",
    "CT_IMAGE_STORAGE",
    "LABEL_NAMES",
    "LESION_LABEL",
    "LPS_TO_RAS",
    "PET_IMAGE_STORAGE",
    "REALISTIC_SIZE",
    "TEST_SIZE",
    "Cylinder",
    "DecayCorrection",
    "Ellipsoid",
    "Grid",
    "Lesion",
    "Orientation",
    "PatientInfo",
    "PetUnits",
    "Phantom",
    "Tracer",
    "Vendor",
    "WrittenSeries",
    "contains",
    "image_orientation",
    "lesion_table",
    "make_grid",
    "make_phantom",
    "write_ct_nifti",
    "write_ct_series",
    "write_dicom_series",
    "write_label_nifti",
    "write_pet_nifti",
    "write_pet_series",
]
