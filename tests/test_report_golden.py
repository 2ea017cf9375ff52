"""Golden tests of the report's claims table, summary.md and data.csv.

Inputs: the small committed results folders ``tests/data/results/run_a`` and
``run_b`` (see ``generate.py`` there). Expected outputs:
``tests/data/results/golden/``. After an intended change, regenerate them with
``UPDATE_GOLDEN=1 python -m pytest tests/test_report_golden.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).parent / "data" / "results"
GOLDEN = RESULTS / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with UPDATE_GOLDEN=1 once and review it"
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from {path}"


@pytest.fixture
def report(report_of_run_a_and_b: Path) -> Path:
    """The report of run_a and run_b, built once per session (``tests/conftest.py``)."""
    return report_of_run_a_and_b


def test_claims_table_golden() -> None:
    from reports.claims import evaluate_claims
    from reports.data import load_run

    claims = evaluate_claims(load_run(RESULTS / "run_b"))
    text = json.dumps([c.__dict__ for c in claims], indent=1, ensure_ascii=False) + "\n"
    check_golden("claims.json", text)


def test_claims_verdicts_follow_the_figures() -> None:
    """The verdicts of the fixture run, stated independently of the golden file."""
    from reports.claims import DOES_NOT_HOLD, HOLDS, NOT_MEASURED, evaluate_claims
    from reports.data import load_run

    verdicts = {c.claim: c.verdict for c in evaluate_claims(load_run(RESULTS / "run_b"))}
    assert verdicts["BLAKE3 is 10x faster than SHA-256"] == DOES_NOT_HOLD  # 0.66x-3.7x
    assert (
        verdicts["HTTP/2 is 2-4x faster than HTTP/1.1"] == DOES_NOT_HOLD
    )  # 0.94x at 1, 2.1x at 50
    assert verdicts["A cache hit takes under 2 ms"] == HOLDS
    assert verdicts["Cache hit rate of 60-80 %"] == HOLDS
    assert verdicts["Cost reduction of 60-80 %"] == HOLDS
    assert verdicts["Local Ollama answers in under 50 ms"] == NOT_MEASURED


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_summary_markdown_golden(report: Path) -> None:
    check_golden("summary.md", (report / "summary.md").read_text(encoding="utf-8"))


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_data_csv_golden(report: Path) -> None:
    check_golden("data.csv", (report / "data.csv").read_text(encoding="utf-8"))


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_output_is_deterministic(
    report: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matplotlib.pyplot as plt

    import reports.charts
    from reports.build import build_report

    open_at_save: list[int] = []
    save = reports.charts.save_chart

    def counting_save(chart: Any, out: Path) -> Any:
        open_at_save.append(len(plt.get_fignums()))
        return save(chart, out)

    monkeypatch.setattr(reports.charts, "save_chart", counting_save)
    again = tmp_path / "again"
    build_report([RESULTS / "run_a", RESULTS / "run_b"], again)
    # each chart is saved and closed before the next is drawn (the four stream charts are
    # drawn together): no figure is left open, never twenty at once
    assert open_at_save and max(open_at_save) <= 4 and plt.get_fignums() == []
    for name in ("index.html", "summary.md", "data.csv", "charts/hashing_throughput.svg"):
        assert (again / name).read_bytes() == (report / name).read_bytes(), name
    for chart in sorted((report / "charts").glob("*.png")):
        assert (again / "charts" / chart.name).read_bytes() == chart.read_bytes(), chart.name


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_every_chart_has_png_svg_and_caption_with_numbers(report: Path) -> None:
    html = (report / "index.html").read_text(encoding="utf-8")
    pngs = sorted(p.stem for p in (report / "charts").glob("*.png"))
    svgs = sorted(p.stem for p in (report / "charts").glob("*.svg"))
    assert pngs == svgs and len(pngs) == 9
    assert html.count("data:image/png;base64,") == len(pngs)
    # the claims table comes first
    assert html.index("Claims of the optimisation plan") < html.index("<figure")
    summary = (report / "summary.md").read_text(encoding="utf-8")
    for line in summary.splitlines():
        if line.startswith("- **"):
            assert any(ch.isdigit() for ch in line.split("**:", 1)[1]), line
    # no profile given: the profile charts are omitted with a note, not drawn empty
    assert "Memory profile of the pipeline replay (memray): no profile given" in summary
    assert len(summary) < 60_000  # fits a PR comment / job summary


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_report_without_counts_has_no_instructions_section(report: Path) -> None:
    """run_b, the run the shared report is about, has no instruction counts (nor has run_a)."""
    md, page = (report / "summary.md").read_text(), (report / "index.html").read_text()
    assert "Instructions per call (callgrind)</h2>" not in page
    assert "### Instructions per call" not in md
    assert "no instruction counts in this run (samplemind-bench run --instructions)" in md
    assert not (report / "charts" / "instructions.png").exists()
