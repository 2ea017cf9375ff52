"""The trend page (index, filter, captions above charts, spread per commit, short series) and
``samplemind-bench history list`` (SQLite and a real PostgreSQL), through the console script's
``main()`` in-process; the page's filter in headless Chromium.

One synthetic store (:mod:`tests._history_store`) serves the module: 12 commits of a real git
repository, the ``blake3`` fingerprint benchmarks stepping x1.5 at commit 8, 3 runs on commit 5
and 5 on the last, the pipeline suite at the last 4 commits only, the router suite at one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import cli as bench_cli
from bench.history.changes import MIN_POINTS
from tests._helpers import require_module, run_main
from tests._history_store import STEP_VARIANT, HistoryStore, build_history_store

require_module("sqlalchemy", "pip install 'samplemind-core[history]'")

N, STEP_AT, SHORT = 12, 8, 4
SHORT_SUITE = "pipeline"  # 2 benchmarks: few charts to draw, the module's setup stays short
REPEATS = {5: 3, N - 1: 5}
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def cli(*args: str | Path, cwd: Path | None = None) -> Any:
    return run_main(bench_cli.main, ["history", *map(str, args)], cwd=cwd, prog="samplemind-bench")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[HistoryStore, str, Path]:
    """The store (added once), its SQLite path, and the page rendered from it."""
    tmp = tmp_path_factory.mktemp("histpage")
    # seed 1: the 4 flat fingerprint benchmarks get no change point. (With 12 commits at 1 %
    # noise, seeds 2-4 each give one flat series a spurious x0.98-1.013 step: a property of the
    # detector on short series, not of the page this module tests.)
    h = build_history_store(
        tmp, n=N, step_at=STEP_AT, repeats=REPEATS, short=SHORT, seed=1, short_suite=SHORT_SUITE
    )
    db = str(tmp / "h.sqlite")
    res = cli("add", *h.folders, "--db", db)
    assert res.returncode == 0, res.stderr
    page = tmp / "page"
    res = cli("report", "--db", db, "--repo", h.repo, "--out", page)
    assert res.returncode == 0, res.stderr
    return h, db, page / "index.html"


def _sections(html: str) -> dict[str, str]:
    return dict(re.findall(r'<section class="chart" id="(c-[0-9a-f]+)"(.*?)</section>', html, re.S))


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr class="bench".*?</tr>', html, re.S)


# --------------------------------------------------------------------------- the page


def test_page_index_links_every_chart_and_states_the_latest_change(
    store: tuple[HistoryStore, str, Path],
) -> None:
    h, _db, page = store
    html = page.read_text()
    sections, rows = _sections(html), _rows(html)
    assert len(rows) == len(sections) >= 14  # 6 fingerprint, 2 pipeline, 6 router
    linked = [re.search(r'href="#(c-[0-9a-f]+)"', r).group(1) for r in rows]  # type: ignore[union-attr]
    assert sorted(linked) == sorted(sections)  # one row per chart, each row's link resolves
    assert html.index('id="index"') < html.index('<section class="chart"')  # index on top
    step = h.commits[STEP_AT][:8]
    stepped = [r for r in rows if STEP_VARIANT in r and "test_fingerprint" in r]
    assert stepped and all(
        "slower" in r and f"<code>{step}</code>" in r and 'data-changed="1"' in r for r in stepped
    )
    ratios = [float(m) for r in stepped for m in re.findall(r"▲ ×(\d\.\d+)", r)]
    assert len(ratios) == len(stepped) and all(1.4 < x < 1.6 for x in ratios)
    flat = [r for r in rows if "test_fingerprint" in r and STEP_VARIANT not in r]
    assert flat and all(f"no change over {N} commits" in r for r in flat)
    assert all('data-changed="0"' in r for r in flat)
    short = [r for r in rows if f'data-suite="{SHORT_SUITE}"' in r]
    assert short and all(
        f"{SHORT} commit(s): change points need at least {MIN_POINTS}" in r for r in short
    )
    # the "changes since" table links to the charts too
    table = html[: html.index('id="index"')]
    assert re.findall(r'href="#(c-[0-9a-f]+)"', table)


def test_captions_are_above_charts_and_short_series_say_why(
    store: tuple[HistoryStore, str, Path],
) -> None:
    _h, _db, page = store
    html = page.read_text()
    sections = _sections(html)
    drawn = {k: v for k, v in sections.items() if "<img" in v}
    assert drawn
    for body in drawn.values():
        assert body.index("<h3>") < body.index("class='caption'") < body.index("<img")
    router = [v for v in sections.values() if 'data-suite="router"' in v]
    assert router and all(
        "<img" not in v and f"1 commit(s): change points need at least {MIN_POINTS}" in v
        and "no chart drawn" in v
        for v in router
    )  # fmt: skip
    short = [v for v in sections.values() if f'data-suite="{SHORT_SUITE}"' in v]
    assert short and all("<img" in v and "change points need at least" in v for v in short)


def test_page_is_one_self_contained_file(store: tuple[HistoryStore, str, Path]) -> None:
    _h, _db, page = store
    html = page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "<script src" not in html
    assert html.count("<script>") == 1
    assert sorted(p.name for p in page.parent.iterdir()) == [
        "changes.json",
        "index.html",
        "summary.md",
    ]


def test_runs_on_one_commit_are_drawn_as_their_spread(
    store: tuple[HistoryStore, str, Path],
) -> None:
    from bench.history.report import _figure, _Group
    from bench.history.series import build_history
    from bench.history.store import open_store

    h, db, _page = store
    st = open_store(db)
    try:
        rows = st.rows("time")
    finally:
        st.close()
    history = build_history(rows, h.repo)
    s = next(x for x in history.series if x.suite == "fingerprint")
    last = s.index.index(N - 1)
    assert s.runs[last] == REPEATS[N - 1] and s.runs[0] == 1
    assert s.run_low[last] < s.run_q1[last] <= s.value[last] <= s.run_q3[last] < s.run_high[last]
    assert s.run_low[0] == s.value[0] == s.run_high[0]
    # a figure outside pyplot's registry: nothing to close (bench.history.report._figure)
    fig = _figure(history, _Group(s.suite, s.benchmark, s.params, s.metric, [s]))
    (ax,) = fig.axes
    factor = 1e9 if max(s.run_high) < 1e-6 else 1e6  # the axis unit the chart chose
    segments = [
        (round(float(seg[0][0])), float(seg[0][1]), float(seg[1][1]))
        for coll in ax.collections
        if hasattr(coll, "get_segments")
        for seg in coll.get_segments()
    ]
    whisker = (N - 1, s.run_low[last] * factor, s.run_high[last] * factor)
    iqr = (N - 1, s.run_q1[last] * factor, s.run_q3[last] * factor)
    for want in (whisker, iqr):
        assert any(
            x == want[0] and lo == pytest.approx(want[1]) and hi == pytest.approx(want[2])
            for x, lo, hi in segments
        ), (want, segments)
    # the 3-run commit has a whisker, no interquartile bar (4+ runs)
    five = s.index.index(5)
    assert sum(1 for x, _lo, _hi in segments if x == 5) == 1 and s.runs[five] == 3
    labels = ax.get_legend_handles_labels()[1]
    assert "min–max of the runs on one commit" in labels
    assert "interquartile range (4+ runs)" in labels


# --------------------------------------------------------------------------- history list


def test_list_shows_runs_commits_machines_suites(store: tuple[HistoryStore, str, Path]) -> None:
    h, db, _page = store
    res = cli("list", "--db", db, "--repo", h.repo)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    runs = len(h.folders)
    assert f"{runs} run(s) (1 of a dirty tree), {N} commit(s), 1 machine(s), 3 suite(s)" in out
    assert f"git ancestry in {h.repo}" in out
    listed = re.findall(r"^\s+(\d+)\s+([0-9a-f]{12})\s", out, re.M)
    assert [c for _i, c in listed] == [c[:12] for c in h.commits]  # in ancestry order
    assert [int(i) for i, _c in listed] == list(range(1, N + 1))
    last = next(line for line in out.splitlines() if h.commits[-1][:12] in line)
    assert "(1 dirty)" in last and re.search(r"\s6\s", last)  # 5 clean runs + 1 dirty
    short_runs = SHORT - 1 + REPEATS[N - 1]
    assert f"fingerprint: {runs} run(s), 6 benchmark(s)" in out
    assert f"{SHORT_SUITE}: {short_runs} run(s)" in out and "router: 1 run(s)" in out
    assert re.search(r"2026-11-01 00:00", out)  # the first run's date
    doc = json.loads(cli("list", "--db", db, "--repo", h.repo, "--format", "json").stdout)
    assert doc["counts"] == {
        "runs": runs,
        "commits": N,
        "machines": 1,
        "suites": 3,
        "dirty_runs": 1,
    }
    assert [c["commit"] for c in doc["commits"]] == h.commits
    assert all(c["committed"] and c["in_repository"] for c in doc["commits"])
    assert doc["commits"][5]["runs"] == REPEATS[5]
    assert doc["suites"][SHORT_SUITE]["runs"] == short_runs
    assert doc["suites"]["router"]["runs"] == 1
    (machine,) = doc["machines"]
    assert machine["runs"] == runs and "python 3.11.9" in machine["label"]
    assert len(doc["runs"]) == runs and sum(r["dirty"] for r in doc["runs"]) == 1


def test_list_empty_missing_and_corrupt_stores(tmp_path: Path) -> None:
    from bench.history.store import open_store

    missing = tmp_path / "nope.sqlite"
    for action in ("list", "changes"):
        res = cli(action, "--db", missing)
        assert res.returncode == 2, res.stdout
        assert f"no history store at {missing}" in res.stderr and "history add" in res.stderr
    res = cli("report", "--db", missing, "--out", tmp_path / "page")
    assert res.returncode == 2 and "no history store" in res.stderr
    assert not missing.exists()  # reading never creates a store
    empty = tmp_path / "empty.sqlite"
    open_store(str(empty)).close()
    res = cli("list", "--db", empty)
    assert res.returncode == 0, res.stderr
    assert "the store is empty" in res.stdout and "history add" in res.stdout
    doc = json.loads(cli("list", "--db", empty, "--format", "json").stdout)
    assert doc["counts"]["runs"] == 0 and doc["commits"] == [] and doc["runs"] == []
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"not a database at all" * 100)
    res = cli("list", "--db", corrupt)
    assert res.returncode == 2 and "not an SQLite file" in res.stderr
    assert "Traceback" not in res.stderr


def test_list_help_names_defaults() -> None:
    res = cli("list", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    assert "(default: text)" in text and "(default: $SAMPLEMIND_HISTORY)" in text
    assert "(default: the current directory)" in text and "Exit 0" in text


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
@pytest.mark.postgres
def test_list_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    res = cli("list", "--db", postgres_url)
    assert res.returncode == 2 and "holds no history store yet" in res.stderr
    h = build_history_store(tmp_path, n=3, step_at=99, repeats={1: 2}, short=1)
    assert cli("add", *h.folders, "--db", postgres_url).returncode == 0
    res = cli("list", "--db", postgres_url, "--repo", h.repo, "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["counts"]["runs"] == len(h.folders) == 5  # 3 commits, 2 runs on one, 1 dirty
    assert [c["commit"] for c in doc["commits"]] == h.commits
    assert doc["store"].startswith("postgresql://")
    text = cli("list", "--db", postgres_url, "--repo", h.repo)
    assert text.returncode == 0 and "3 commit(s)" in text.stdout


# --------------------------------------------------------------------------- in Chromium

_VISIBLE = """JSON.stringify({
  rows: Array.from(document.querySelectorAll('tr.bench')).filter(r => !r.hidden)
        .map(r => [r.dataset.suite, r.dataset.metric, r.dataset.changed, r.dataset.name]),
  charts: Array.from(document.querySelectorAll('section.chart'))
        .filter(s => s.offsetParent !== null).map(s => s.dataset.suite),
  shown: document.getElementById('shown').textContent})"""


def _set(field: str, value: str) -> str:
    return (
        f"(function(){{var e=document.getElementById('{field}');e.value={json.dumps(value)};"
        f"e.dispatchEvent(new Event('{'input' if field == 'f-text' else 'change'}'));}})()"
    )


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
@pytest.mark.browser
async def test_index_and_filter_work_in_chromium(
    store: tuple[HistoryStore, str, Path], tmp_path: Path
) -> None:
    from tests._browser import open_page

    _h, _db, page = store
    async with open_page(page, tmp_path) as p:
        images = await p.evaluate(
            "Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"
        )
        assert images and all(images)
        total = await p.evaluate("document.querySelectorAll('tr.bench').length")
        n_short = await p.evaluate(
            f"document.querySelectorAll('tr.bench[data-suite={SHORT_SUITE}]').length"
        )
        state = json.loads(await p.evaluate(_VISIBLE))
        assert len(state["rows"]) == total == len(state["charts"])
        assert state["shown"] == f"{total} of {total} series shown"
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "history-page.png").write_bytes(await p.screenshot())

        await p.evaluate(_set("f-suite", SHORT_SUITE))
        state = json.loads(await p.evaluate(_VISIBLE))
        assert len(state["rows"]) == n_short > 0
        assert {r[0] for r in state["rows"]} == {SHORT_SUITE} == set(state["charts"])
        assert len(state["charts"]) == n_short
        assert state["shown"] == f"{n_short} of {total} series shown"

        await p.evaluate(_set("f-suite", ""))
        await p.evaluate("document.getElementById('f-changed').click()")
        state = json.loads(await p.evaluate(_VISIBLE))
        assert state["rows"] and all(r[2] == "1" for r in state["rows"])
        assert all(STEP_VARIANT in r[3] for r in state["rows"])
        assert len(state["charts"]) == len(state["rows"])
        (ARTIFACTS / "history-page-changed-only.png").write_bytes(await p.screenshot())

        await p.evaluate("document.getElementById('f-changed').click()")
        await p.evaluate(_set("f-text", "SHA256"))  # the search ignores case
        await p.evaluate(_set("f-metric", "time"))
        state = json.loads(await p.evaluate(_VISIBLE))
        assert state["rows"] and all("sha256" in r[3] and r[1] == "time" for r in state["rows"])

        await p.evaluate(_set("f-text", ""))
        # an index link lands on its chart
        target = await p.evaluate(
            "(function(){var a=document.querySelector('tr.bench a');a.click();"
            "return [location.hash, a.getAttribute('href')];})()"
        )
        assert target[0] == target[1]
        top = await p.evaluate(
            f"document.querySelector({json.dumps(target[0])}).getBoundingClientRect().top"
        )
        assert 0 <= top < 200  # scrolled to it (below the sticky filter bar)
        assert p.errors == []
