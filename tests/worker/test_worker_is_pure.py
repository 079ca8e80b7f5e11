"""worker/ is pure compute: importing it loads neither Django, Celery nor the backend package.

Each import runs in a fresh interpreter, since the test process itself has Django loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "celery", "channels", "rest_framework", "backend")

PROBE = """
import importlib, json, sys
forbidden = set(sys.argv[1].split(","))
found = {}
for name in sys.argv[2:]:
    importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
    if loaded:
        found[name] = loaded[:5]
        break
print(json.dumps(found))
"""


def forbidden_modules_loaded_by(*modules: str) -> dict[str, list[str]]:
    """{first module whose import loaded a forbidden package: a few of the modules it loaded}."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(FORBIDDEN), *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.mark.parametrize(
    "module",
    [
        "worker.seganypet.train",
        "worker.seganypet.model",
        "worker.engines.registry",
        "worker.phantoms",
        "worker.evaluation",
    ],
)
def test_importing_it_loads_no_django_celery_or_backend(module: str) -> None:
    assert forbidden_modules_loaded_by(module) == {}


def test_no_module_under_worker_loads_django_celery_or_backend() -> None:
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "worker").rglob("*.py")
    )
    assert "worker.phantoms.dicom" in modules and "worker.seganypet.train_data" in modules
    assert forbidden_modules_loaded_by(*modules) == {}


def test_the_probe_sees_a_forbidden_import() -> None:
    found = forbidden_modules_loaded_by("json", "backend.imaging.suv")
    assert list(found) == ["backend.imaging.suv"]
    assert "backend" in found["backend.imaging.suv"]
