"""studies.gate_e2e: the slowdown patch keeps fingerprint() correct, and the summary counts right."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from studies.gate_e2e import inject_slowdown, summarise

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import importlib; f = importlib.import_module('samplemind_core.fingerprint'); "
    "print(f.__file__); print(f.fingerprint({'messages': [{'role': 'user', 'content': 'hi'}]}))"
)


def probe(tree: Path) -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0], out[1]


def test_injected_slowdown_keeps_the_key_and_only_touches_the_copy(tmp_path: Path) -> None:
    shutil.copytree(REPO / "samplemind_core", tmp_path / "samplemind_core")
    original = (REPO / "samplemind_core" / "fingerprint.py").read_text()
    where, before = probe(tmp_path)
    assert where.startswith(str(tmp_path))
    inject_slowdown(tmp_path, 7)
    patched = (tmp_path / "samplemind_core" / "fingerprint.py").read_text()
    assert "for _smb_study_i in range(7):  # injected by studies._inject" in patched
    assert probe(tmp_path)[1] == before  # same key, just slower
    assert (REPO / "samplemind_core" / "fingerprint.py").read_text() == original


def test_injection_refuses_an_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "samplemind_core").mkdir()
    (tmp_path / "samplemind_core" / "fingerprint.py").write_text("def fingerprints():\n    pass\n")
    with pytest.raises(ValueError, match="has no fingerprint"):
        inject_slowdown(tmp_path, 3)


def doc(*verdicts: tuple[str, str, float]) -> dict[str, Any]:
    return {
        "verdicts": [{"name": n, "status": s, "ratio": r, "metric": "time"} for n, s, r in verdicts]
    }


def test_summary_counts_alarms_and_detections() -> None:
    aa = [
        doc(("a", "unchanged", 1.01), ("b", "unchanged", 0.99)),
        doc(("a", "regressed", 1.08), ("b", "unchanged", 1.0)),
    ]
    ab = [
        doc(("a", "regressed", 1.10), ("b", "unchanged", 1.0)),
        doc(("a", "unchanged", 1.06), ("b", "unchanged", 1.01)),
    ]
    s = summarise(aa, ab)
    assert (s["aa_comparisons"], s["aa_false_alarms"], s["aa_runs_with_an_alarm"]) == (4, 1, 1)
    assert s["aa_false_alarm_rate"] == pytest.approx(0.25)
    rows = {r["name"]: r for r in s["ab"]}
    assert rows["a"]["regressed"] == 1 and rows["a"]["mean_ratio"] == pytest.approx(1.08)
    assert rows["b"]["rate"] == 0.0
