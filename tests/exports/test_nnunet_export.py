"""The nnU-Net v2 export passes nnU-Net's own dataset integrity check."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tests.exports import helpers

pytestmark = pytest.mark.slow


def test_nnunet_accepts_the_dataset(dicom_world, eager_tasks, django_capture_on_commit_callbacks, tmp_path,
                                    monkeypatch):
    client = helpers.client_for(dicom_world["manager"])
    job = helpers.export(client, dicom_world["project"].pk, django_capture_on_commit_callbacks,
                         {"formats": ["nnunet"], "nnunet": {"dataset_id": 42, "dataset_name": "Phantoms"}})
    archive, manifest = helpers.open_archive(helpers.download(client, job))
    archive.extractall(tmp_path)
    root = tmp_path / "nnunet"
    folder = root / "Dataset042_Phantoms"
    dataset = json.loads((folder / "dataset.json").read_text())
    # Channel 0 is PET and is NOT called CT (nnU-Net would clip SUVs with its CT normalisation).
    assert dataset["channel_names"] == {"0": "PET", "1": "CT"}
    # Project values 1 (liver) and 13 (lesion) become consecutive 1 and 2.
    assert dataset["labels"] == {"background": 0, "liver": 1, "lesion": 2}
    assert dataset["numTraining"] == 2 and dataset["file_ending"] == ".nii.gz"

    monkeypatch.setenv("nnUNet_raw", str(root))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any problem

    for scan, phantom in zip(dicom_world["phantom_scans"], dicom_world["phantoms"], strict=True):
        case = f"scan{scan.pk:05d}"
        labels = np.asarray(nib.load(folder / "labelsTr" / f"{case}.nii.gz").dataobj).transpose(2, 1, 0)
        expected = np.zeros(phantom.shape, dtype=np.uint8)
        expected[phantom.labels == helpers.LIVER] = 1
        expected[phantom.lesion_labels > 0] = 2
        assert np.array_equal(labels, expected)
        pet = nib.load(folder / "imagesTr" / f"{case}_0000.nii.gz").get_fdata().transpose(2, 1, 0)
        assert np.allclose(pet, phantom.suv, rtol=1e-3, atol=1e-3)  # SUV, through the DICOM round trip


def test_pet_channel_can_be_left_unnormalised(dicom_world, eager_tasks, django_capture_on_commit_callbacks):
    client = helpers.client_for(dicom_world["manager"])
    job = helpers.export(client, dicom_world["project"].pk, django_capture_on_commit_callbacks,
                         {"formats": ["nnunet"], "nnunet": {"pet_channel": "noNorm"}})
    archive, manifest = helpers.open_archive(helpers.download(client, job))
    name = next(n for n in archive.namelist() if n.endswith("dataset.json"))
    assert json.loads(archive.read(name))["channel_names"]["0"] == "noNorm"
    assert "noNorm" in manifest["conventions"]["nnunet_pet_channel"]
