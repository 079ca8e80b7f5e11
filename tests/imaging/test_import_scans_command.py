from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from backend.imaging.models import Scan, ScanStatus
from backend.projects.models import Project
from worker import phantoms as phantom_module

pytestmark = pytest.mark.django_db


def test_it_imports_every_study_in_a_folder(tmp_path):
    project = Project.objects.create(name="imports")
    for seed in (4, 5):
        phantom = phantom_module.make_phantom(seed=seed, n_lesions=1, shape=(24, 32, 32))
        phantom_module.write_dicom_series(phantom, tmp_path / f"patient{seed}" / "study", write_ct=seed == 4)
    (tmp_path / "README.txt").write_text("not an image")
    out = StringIO()
    call_command("import_scans", str(tmp_path), "--project", "imports", stdout=out, stderr=StringIO())
    scans = Scan.objects.filter(project=project)
    assert scans.count() == 2
    assert all(scan.status == ScanStatus.READY for scan in scans)
    assert sorted(scan.series.count() for scan in scans) == [1, 2]
    assert out.getvalue().count("Ready") == 2


def test_it_reports_failures_and_keeps_the_rest(tmp_path):
    project = Project.objects.create(name="imports")
    good = phantom_module.make_phantom(seed=6, n_lesions=1, shape=(24, 32, 32))
    phantom_module.write_dicom_series(good, tmp_path / "good", write_ct=False)
    bad = phantom_module.make_phantom(seed=7, n_lesions=1, shape=(24, 32, 32))
    phantom_module.write_dicom_series(bad, tmp_path / "bad", write_ct=False)
    files = sorted((tmp_path / "bad").rglob("*.dcm")) or sorted(p for p in (tmp_path / "bad").rglob("*") if p.is_file())
    files[10].unlink()
    err = StringIO()
    with pytest.raises(CommandError, match="1 of 2 studies failed"):
        call_command("import_scans", str(tmp_path), "--project", str(project.pk), stdout=StringIO(), stderr=err)
    assert "missing" in err.getvalue().lower() or "gap" in err.getvalue().lower() or "slice" in err.getvalue()
    statuses = sorted(Scan.objects.filter(project=project).values_list("status", flat=True))
    assert statuses == ["failed", "ready"]


def test_unknown_project_and_missing_folder(tmp_path):
    with pytest.raises(CommandError, match="No project"):
        call_command("import_scans", str(tmp_path), "--project", "nope")
    Project.objects.create(name="p")
    with pytest.raises(CommandError, match="not a folder"):
        call_command("import_scans", str(tmp_path / "missing"), "--project", "p")
