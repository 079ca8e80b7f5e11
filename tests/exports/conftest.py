from __future__ import annotations

from pathlib import Path

import pytest

from tests.base import make_project_world
from tests.exports import helpers
from worker import phantoms as phantom_module


@pytest.fixture(scope="session")
def phantoms() -> list:
    return [phantom_module.make_phantom(seed=seed, n_lesions=3) for seed in (5, 6)]


@pytest.fixture(scope="session")
def phantom_dicom_dirs(phantoms, tmp_path_factory) -> list[Path]:
    dirs = []
    for phantom in phantoms:
        out = tmp_path_factory.mktemp(f"phantom-{phantom.seed}")
        phantom_module.write_dicom_series(phantom, out)
        dirs.append(out)
    return dirs


@pytest.fixture
def dicom_world(db, phantoms, phantom_dicom_dirs) -> dict:
    """The fixture project plus two scans ingested from phantom DICOM, each with an approved annotation."""
    world = make_project_world("alice")
    world["lesion_label"] = helpers.lesion_label(world["project"])
    world["phantom_scans"] = []
    for phantom, folder in zip(phantoms, phantom_dicom_dirs, strict=True):
        scan = helpers.ingest_phantom(world["project"], f"phantom {phantom.seed}", folder)
        helpers.approved_annotation(scan, world["annotator"], world["reviewer"], phantom)
        world["phantom_scans"].append(scan)
    world["phantoms"] = phantoms
    return world
