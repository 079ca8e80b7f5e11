"""bench/bench_engines.py fails (exit 1) when a stated target is missed, unless --report-only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_engines", REPO_ROOT / "bench" / "bench_engines.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


ARGS = ["--plan", "4mm:101:FDG", "--engines", "threshold", "--clicks", "2", "--lesions", "2"]


def test_a_missed_target_fails_the_run_and_report_only_does_not(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "TARGETS", {("threshold", "organs"): (1.01, 1.01, 1.01)})  # unreachable
    assert bench.main([*ARGS, "--out", str(tmp_path)]) == 1
    assert bench.main([*ARGS, "--out", str(tmp_path), "--report-only"]) == 0
    report = (tmp_path / "engines.md").read_text()
    assert "**missed**" in report and "--report-only" in report
    checks = json.loads((tmp_path / "engines.json").read_text())["targets"]
    assert checks and not any(c["ok"] for c in checks)


def test_met_targets_pass(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "TARGETS", {("threshold", "organs"): (0.0, 0.0, 0.0)})
    assert bench.main([*ARGS, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "engines.json").read_text())["summary"]["threshold"]["4mm"]
    assert summary["organs"]["cases"] == 5 and 0.0 <= summary["organs"]["dice@1"] <= 1.0
    assert {"lesions >= 10 mm", "lesions 5-10 mm"} & set(summary)
