from __future__ import annotations

from pathlib import Path

import pytest

from worker import phantoms as phantom_module


@pytest.fixture(scope="session")
def small_phantom():
    return phantom_module.make_phantom(seed=3, n_lesions=3)


@pytest.fixture(scope="session")
def phantom_dicom_dir(small_phantom, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantom-dicom")
    phantom_module.write_dicom_series(small_phantom, out)
    return out
