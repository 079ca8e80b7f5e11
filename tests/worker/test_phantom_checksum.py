"""The phantom generator gives bit-identical phantoms and files after its move to worker/phantoms.

The expected digests were computed from ``backend/imaging/phantom.py`` as it was before the move
(commit ca13436) with the same calls. They depend on numpy/scipy's arithmetic and on pydicom's and
nibabel's encoders, so a dependency upgrade may change them: recompute them at the commit before a
change to the generator, never from the changed code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from worker import phantoms

CASES = {
    "axial": {"seed": 5, "shape": (40, 24, 24), "spacing": (6.0, 8.0, 8.0), "n_lesions": 3},
    "oblique": {
        "seed": 6,
        "shape": (32, 20, 20),
        "spacing": (8.0, 8.0, 8.0),
        "tracer": "PSMA",
        "feet_first": True,
        "orientation": "oblique",
        "n_lesions": 2,
        "arms": True,
    },
}
DICOM_VARIANTS = {
    "bqml": {},
    "philips": {"units": "CNTS", "vendor": "Philips"},
    "ge": {"vendor": "GE", "decay_correction": "NONE", "scramble_instance_numbers": True},
}
BEFORE_THE_MOVE = {
    "axial/arrays": "0236a3e74d207652835eced318035355023ab68ebabd1a09d8fefcc5f8d9f4f1",
    "axial/dicom-bqml": "1feaf686123b9ed2c195380ea997585814cfedc0444b00b673a736cbc47fc73e",
    "axial/dicom-philips": "76ad7f53b7d93751414129161b8abe65026c7de60b84e2829cdfaddb3b9b19ef",
    "axial/dicom-ge": "5a1459eb56f9eb2a0559e4ce005e23c6712d777e5c462feb4c1679e14feb81a5",
    "axial/nifti": "8e96286db04139d2752a5aba54e21d1d434d173b1658e9c7c943e321716f1278",
    "oblique/arrays": "dc8506acf49c3fb1511ef366129ea71394e6dbdc3113de94fab903d4003fb72e",
    "oblique/dicom-bqml": "e5db1e6c0a8de86fd12613fbf13de507440d8e85750980141acb9e82467d9cd8",
    "oblique/dicom-philips": "db9ad120db52d839895643785f66bd3f9fd25184bf2e4c692fee576d25c5a303",
    "oblique/dicom-ge": "b706e98c1cca5f27023ab6ecca0a3ef9933dc03fd5e8194729a7a614a71091bf",
    "oblique/nifti": "df3f5343803a1a2f86fdf2424bb0783ae50325c76bf4a1ddd8d8f51c65f18366",
}


def dataset_bytes(path: Path) -> bytes:
    """A DICOM file without its file meta group, which names the pydicom version that wrote it."""
    data = path.read_bytes()
    # 128-byte preamble, "DICM", then (0002,0000) UL: the length of the rest of the meta group.
    meta_length = int.from_bytes(data[140:144], "little")
    return data[144 + meta_length :]


def array_digest(phantom: phantoms.Phantom) -> str:
    digest = hashlib.sha256()
    for array in (
        phantom.suv,
        phantom.activity_bqml,
        phantom.true_suv,
        phantom.labels,
        phantom.lesion_labels,
        phantom.body_mask,
        phantom.ct_hu,
        phantom.pet_affine,
        phantom.ct_affine,
    ):
        digest.update(str((array.dtype, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(phantoms.lesion_table(phantom).encode())
    facts = (
        phantom.patient,
        phantom.injected_dose_bq,
        phantom.injection_datetime,
        phantom.scan_datetime,
        phantom.slice_acquisition_datetimes,
        phantom.extra,
        phantom.uid("study"),
    )
    digest.update(repr(facts).encode())
    return digest.hexdigest()


def file_digest(paths: list[Path], content=Path.read_bytes) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(content(path))
    return digest.hexdigest()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_phantom_is_bit_identical_to_before_the_move(case: str, tmp_path: Path) -> None:
    phantom = phantoms.make_phantom(**CASES[case])  # type: ignore[arg-type]
    found = {f"{case}/arrays": array_digest(phantom)}
    for variant, options in DICOM_VARIANTS.items():
        written = phantoms.write_dicom_series(phantom, tmp_path / variant, **options)  # type: ignore[arg-type]
        found[f"{case}/dicom-{variant}"] = file_digest(written.pet_files + written.ct_files, dataset_bytes)
    nifti_files = [
        phantoms.write_label_nifti(phantom, tmp_path / "labels.nii"),
        tmp_path / "labels.labels.json",
        phantoms.write_pet_nifti(phantom, tmp_path / "pet.nii"),
        phantoms.write_pet_nifti(phantom, tmp_path / "bqml.nii", values="bqml"),
        phantoms.write_ct_nifti(phantom, tmp_path / "ct.nii"),
    ]
    found[f"{case}/nifti"] = file_digest(nifti_files)
    assert found == {key: value for key, value in BEFORE_THE_MOVE.items() if key.startswith(f"{case}/")}
