"""The gate's outputs (:mod:`bench.gate.render`): JSON, Markdown and GitHub's step summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gate
from tests.gate.helpers import bench, pair, samples


def test_json_markdown_and_step_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b, c = pair(
        tmp_path,
        [bench("slow", samples(1e-6, seed=1)), bench("same", samples(1e-6, seed=3))],
        [bench("slow", samples(1.5e-6, seed=2)), bench("same", samples(1e-6, seed=4))],
    )
    js, md, summary = tmp_path / "o/v.json", tmp_path / "o/s.md", tmp_path / "step.md"
    summary.write_text("earlier step\n")
    code = gate.run(
        [b, c, "--json", str(js), "--markdown", str(md)], {"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert code == gate.EXIT_REGRESSION
    doc = json.loads(js.read_text())
    assert doc["outcome"] == "REGRESSION" and doc["exit_code"] == 1
    assert doc["counts"] == {"regressed": 1, "unchanged": 1}
    first = doc["verdicts"][0]
    assert first["name"] == "slow" and first["status"] == "regressed"
    assert first["ci_low"] < first["ratio"] < first["ci_high"] and first["change"] == pytest.approx(
        first["ratio"] - 1
    )
    text = md.read_text()
    assert text.startswith("## Performance gate: ❌ REGRESSION")
    assert "| regressed | slow | time |" in text
    assert summary.read_text() == "earlier step\n" + text + "\n"
    table = capsys.readouterr().out
    assert "regressed  slow" in table and "µs" in table
    # Without GITHUB_STEP_SUMMARY nothing is appended anywhere.
    assert gate.run([b, c], {}) == gate.EXIT_REGRESSION
    assert summary.read_text() == "earlier step\n" + text + "\n"
