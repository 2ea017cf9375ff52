"""The harness's features stand side by side: no import cycle between ``bench/`` subpackages, no
feature importing another, and the report reading through the results reader and figures only.

The graph is the one ``python -m studies.import_graph`` prints (the AST of every import,
function-level ones included), so an import hidden inside a function counts too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from studies.import_graph import cycles, graph, main

REPO = Path(__file__).resolve().parents[1]

FEATURES = (
    "bench.harness",  # run, headline (and the suites' measuring code)
    "bench.gate",
    "bench.history",
    "bench.instructions",
    "bench.profile",
)
"""The commands' packages: none may import another (decision 0600)."""


@pytest.fixture(scope="module")
def edges() -> dict[str, set[str]]:
    return graph(REPO)


def test_no_cycle_between_bench_subpackages(edges: dict[str, set[str]]) -> None:
    assert cycles(edges) == []


def test_no_feature_imports_another(edges: dict[str, set[str]]) -> None:
    crossing = {(src, tgt) for src in FEATURES for tgt in edges.get(src, set()) if tgt in FEATURES}
    assert crossing == set()


def test_reports_import_only_the_results_reader_and_figures(edges: dict[str, set[str]]) -> None:
    from_bench = {t for t in edges["reports"] if t.startswith("bench")}
    assert from_bench == {"bench.results", "bench.figures"}


def test_the_shared_modules_import_no_feature(edges: dict[str, set[str]]) -> None:
    for shared in ("bench.results", "bench.figures", "bench.suite_list"):
        assert not edges.get(shared, set()) & set(FEATURES), shared


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_cycle_through_a_function_level_import_is_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The check can fail: two subpackages importing each other, one of them inside a function
    and relatively, a third one through both."""
    _write(tmp_path, "bench/alpha/run.py", "from bench.beta.reader import read\n")
    _write(
        tmp_path,
        "bench/beta/reader.py",
        "def read():\n    from ..alpha import run\n    return run\n",
    )
    _write(tmp_path, "bench/gamma/x.py", "import bench.alpha.run\nimport bench.beta\n")
    _write(tmp_path, "reports/build.py", "from bench.beta import reader\n")
    found = cycles(graph(tmp_path))
    assert found == [["bench.alpha", "bench.beta"]]
    assert main([str(tmp_path)]) == 0
    assert "cycle: bench.alpha <-> bench.beta" in capsys.readouterr().out


def test_a_longer_cycle_is_one_group() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}}
    assert cycles(edges) == [["a", "b", "c"], ["d", "e"]]
