"""A real Orthanc with DICOMweb per test, phantom PET/CT studies to load into it, and a project world."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from django.test import Client

from backend.pacs import secrets
from backend.pacs.models import AuthKind, DicomWebSource
from tests.base import make_project_world
from worker import phantoms as phantom_module

from .orthanc import PASSWORD, USER, Orthanc


@dataclass
class Study:
    written: phantom_module.WrittenSeries
    phantom: phantom_module.Phantom

    @property
    def uid(self) -> str:
        return self.written.study_instance_uid

    @property
    def files(self) -> list[Path]:
        return list(self.written.pet_files) + list(self.written.ct_files)


def _study(folder: Path, seed: int, **kwargs) -> Study:
    phantom = phantom_module.make_phantom(seed=seed, shape=(24, 32, 32), spacing=(4.0, 4.0, 4.0), n_lesions=2,
                                          **kwargs)
    return Study(phantom_module.write_dicom_series(phantom, folder), phantom)


@pytest.fixture(scope="session")
def pet_ct_study(tmp_path_factory) -> Study:
    """A PET/CT study of 24 PET and 24 CT slices."""
    return _study(tmp_path_factory.mktemp("pacs-study"), seed=21)


@pytest.fixture(scope="session")
def second_study(tmp_path_factory) -> Study:
    """Another patient, another year: for search filters."""
    from datetime import datetime

    return _study(tmp_path_factory.mktemp("pacs-study-2"), seed=22, injection_datetime=datetime(2019, 5, 6, 9, 30))


@pytest.fixture
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()


@pytest.fixture
def world(db):
    return make_project_world("alice")


@pytest.fixture
def other_world(db):
    return make_project_world("charlie")


def make_source(project, orthanc: Orthanc, *, password: str = PASSWORD, name: str = "orthanc",
                push_on_approval: bool = False) -> DicomWebSource:
    return DicomWebSource.objects.create(
        project=project, name=name, qido_url=orthanc.dicomweb_url, wado_url=orthanc.dicomweb_url,
        stow_url=orthanc.dicomweb_url, auth=AuthKind.BASIC, username=USER, secret_encrypted=secrets.encrypt(password),
        push_on_approval=push_on_approval)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client
