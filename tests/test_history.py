"""``samplemind-bench history``: the store (SQLite and a real PostgreSQL), change points, trend page.

Results folders are made from the committed sample run (tests/data/results/run_a): its
fingerprint suite, with every raw sample scaled (a step from some commit on, seeded noise per
commit), under commits of a throw-away git repository. Commands run through the real console
script's ``main()`` in-process (:func:`tests._helpers.run_main`); a missing library, and
concurrent writers, in real subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import cli as bench_cli
from bench.history._ingest import read_run
from bench.history.order import order_commits
from fixtures.ports import free_port
from tests._helpers import require_module, run_main

require_module("sqlalchemy", "pip install 'samplemind-core[history]'")

RUN_A = Path(__file__).parent / "data" / "results" / "run_a"
BENCH = str(Path(sys.executable).with_name("samplemind-bench"))
STEP_VARIANT = "blake3"  # the benchmarks whose time steps up
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``samplemind-bench ARGS`` through ``main()`` in-process; in a real subprocess when ``env``
    sets ``PYTHONPATH`` (a module shadowed at import needs a fresh interpreter)."""
    full_env = {k: v for k, v in os.environ.items() if k != "SAMPLEMIND_HISTORY"}
    full_env.update(env or {})
    if "PYTHONPATH" in (env or {}):
        return subprocess.run(
            [BENCH, *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd,
            timeout=600,
            check=False,
        )
    return run_main(bench_cli.main, args, env=full_env, cwd=cwd, prog=BENCH)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def make_repo(path: Path, n: int) -> list[str]:
    """A git repository with ``n`` empty commits; their ids, oldest first."""
    path.mkdir(parents=True)
    git(path, "init", "-q")
    for i in range(n):
        git(
            path,
            "-c", "user.name=t", "-c", "user.email=t@t",
            "commit", "-q", "--allow-empty", "-m", f"c{i}",
        )  # fmt: skip
    return git(path, "rev-list", "--reverse", "HEAD").split()


def make_folder(
    out: Path,
    commit: str | None,
    *,
    created: datetime,
    scale: float = 1.0,
    step_scale: float = 1.0,
    dirty: bool = False,
    cpu: str | None = None,
    noise_seed: int = 0,
) -> Path:
    """A results folder: run_a's fingerprint suite with scaled samples under ``commit``."""
    out.mkdir(parents=True)
    manifest = json.loads((RUN_A / "manifest.json").read_text())
    manifest.update(
        created=created.isoformat(),
        suites=["fingerprint"],
        files=["fingerprint.json"],
        commit={"id": commit, "dirty": dirty},
    )
    if cpu is not None:
        manifest["environment"]["cpu"] = cpu
    (out / "manifest.json").write_text(json.dumps(manifest))
    doc = json.loads((RUN_A / "fingerprint.json").read_text())
    rng = np.random.default_rng(noise_seed)
    for b in doc["benchmarks"]:
        f = scale * float(np.exp(rng.normal(0, 0.01)))
        if b["params"].get("variant") == STEP_VARIANT:
            f *= step_scale
        b["stats"]["data"] = [x * f for x in b["stats"]["data"]]
    (out / "fingerprint.json").write_text(json.dumps(doc))
    return out


def stepped_history(
    tmp: Path, n: int = 20, step_at: int = 12, ratio: float = 1.5
) -> tuple[Path, list[str], list[Path]]:
    """``n`` commits of a real repo, a ``ratio`` step at ``step_at``; ``created`` times run
    *backwards*, so only ancestry can order them right."""
    repo = tmp / "repo"
    commits = make_repo(repo, n)
    folders = [
        make_folder(
            tmp / f"r{i:02d}",
            c,
            created=T0 - timedelta(hours=i),
            step_scale=ratio if i >= step_at else 1.0,
            noise_seed=i,
        )
        for i, c in enumerate(commits)
    ]
    return repo, commits, folders


def counts(db: str) -> dict[str, int]:
    from bench.history.store import open_store

    st = open_store(db)
    try:
        return st.counts()
    finally:
        st.close()


# --------------------------------------------------------------------------- store


def test_add_stores_a_folder_once(tmp_path: Path) -> None:
    db = str(tmp_path / "h.sqlite")
    first = cli("history", "add", str(RUN_A), "--db", db)
    assert first.returncode == 0, first.stderr
    assert "stored (" in first.stdout
    again = cli("history", "add", str(RUN_A), "--db", db)
    assert again.returncode == 0, again.stderr
    assert "already stored" in again.stdout
    n = counts(db)
    assert n["runs"] == 1
    assert n["points"] == len(read_run(RUN_A).points)


def test_db_from_environment_and_missing(tmp_path: Path) -> None:
    db = tmp_path / "env.sqlite"
    res = cli("history", "add", str(RUN_A), env={"SAMPLEMIND_HISTORY": str(db)})
    assert res.returncode == 0, res.stderr
    assert counts(str(db))["runs"] == 1
    res = cli("history", "changes")
    assert res.returncode == 2
    assert "SAMPLEMIND_HISTORY" in res.stderr


def test_time_metric_has_median_ci_and_extra_info_metrics() -> None:
    run = read_run(RUN_A)
    times = [p for p in run.points if p.metric == "time"]
    assert times and all(
        p.ci_low is not None and p.ci_low <= p.value <= (p.ci_high or 0) for p in times
    )
    metrics = {p.metric for p in run.points}
    assert {"hit_rate", "gbps"} <= metrics  # extra_info figures of the cache and hashing suites


def test_dirty_run_is_stored_flagged_and_kept_out_of_changes(tmp_path: Path) -> None:
    from bench.history.store import open_store

    repo, commits, folders = stepped_history(tmp_path, n=12, step_at=100)  # flat
    # a dirty run of the last commit, 3x slower: stored, flagged, not a change point
    dirty = make_folder(tmp_path / "dirty", commits[-1], created=T0, step_scale=3.0, dirty=True)
    db = str(tmp_path / "h.sqlite")
    res = cli("history", "add", *map(str, [*folders, dirty]), "--db", db, "--repo", str(repo))
    assert res.returncode == 0, res.stderr
    assert "[dirty tree]" in res.stdout
    st = open_store(db)
    try:
        flags = {(r["source"], r["dirty"]) for r in st.rows("time")}
    finally:
        st.close()
    assert (str(dirty), True) in flags
    ch = cli("history", "changes", "--db", db, "--json", "--repo", str(repo))
    assert ch.returncode == 0, ch.stderr
    assert [c for c in json.loads(ch.stdout) if abs(c["ratio"] - 1) > 0.05] == []


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        ("corrupt-json", "fingerprint.json"),
        ("foreign-manifest", "manifest.json"),
        ("missing-file", "fingerprint.json"),
        ("no-samples", "fingerprint.json"),
        ("not-a-folder", "nothing-here"),
    ],
)
def test_bad_folder_exits_2_naming_it_and_stores_nothing(
    tmp_path: Path, damage: str, named: str
) -> None:
    good = make_folder(tmp_path / "good", "a" * 40, created=T0)
    bad = make_folder(tmp_path / "bad", "b" * 40, created=T0)
    if damage == "corrupt-json":
        (bad / "fingerprint.json").write_text('{"benchmarks": [')
    elif damage == "foreign-manifest":
        (bad / "manifest.json").write_text(json.dumps({"format": "asv", "version": 1}))
    elif damage == "missing-file":
        (bad / "fingerprint.json").unlink()
    elif damage == "no-samples":
        doc = json.loads((bad / "fingerprint.json").read_text())
        del doc["benchmarks"][0]["stats"]["data"]
        (bad / "fingerprint.json").write_text(json.dumps(doc))
    else:
        bad = tmp_path / "nothing-here"
    db = tmp_path / "h.sqlite"
    res = cli("history", "add", str(good), str(bad), "--db", str(db))
    assert res.returncode == 2
    assert named in res.stderr and str(tmp_path) in res.stderr
    assert "Traceback" not in res.stderr
    assert not db.exists() or counts(str(db))["runs"] == 0


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    from bench.history.store import SCHEMA_VERSION, open_store

    db = str(tmp_path / "h.sqlite")
    st = open_store(db)
    import sqlalchemy as sa

    with st.engine.begin() as conn:
        version = conn.execute(sa.text("SELECT version FROM schema_version")).scalar_one()
        assert version == SCHEMA_VERSION
        conn.execute(sa.text("UPDATE schema_version SET version = :v"), {"v": SCHEMA_VERSION + 1})
    st.close()
    res = cli("history", "add", str(RUN_A), "--db", db)
    assert res.returncode == 2
    assert f"schema version {SCHEMA_VERSION + 1}" in res.stderr


def test_unreachable_postgres_exits_2_with_the_password_hidden() -> None:
    url = f"postgresql://bench:s3cr3t-pw@127.0.0.1:{free_port()}/history"
    res = cli("history", "add", str(RUN_A), "--db", url)
    assert res.returncode == 2
    assert "s3cr3t-pw" not in res.stderr + res.stdout
    assert "postgresql://bench:***@127.0.0.1" in res.stderr


def _concurrent_writers(db: str, tmp: Path) -> None:
    """Two processes add 8 folders each to ``db`` at the same time; no row may be lost."""
    from bench.history.store import open_store

    sides = []
    for w in range(2):
        folders = [
            make_folder(
                tmp / f"w{w}-{i}",
                f"{w}{i:039d}",
                created=T0 + timedelta(minutes=i),
                noise_seed=100 * w + i,
            )
            for i in range(8)
        ]
        sides.append(folders)
    open_store(db).close()  # the schema exists: both writers race on rows, not on the migration
    env = {k: v for k, v in os.environ.items() if k != "SAMPLEMIND_HISTORY"}
    procs = [
        subprocess.Popen(
            [BENCH, "history", "add", *map(str, folders), "--db", db],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for folders in sides
    ]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    per_run = len(read_run(sides[0][0]).points)
    n = counts(db)
    assert n["runs"] == 16
    assert n["points"] == 16 * per_run
    assert n["machines"] == 1


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_two_writers_sqlite_lose_no_row(tmp_path: Path) -> None:
    _concurrent_writers(str(tmp_path / "h.sqlite"), tmp_path)


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_first_writers_race_on_the_migration(tmp_path: Path) -> None:
    db = str(tmp_path / "fresh.sqlite")
    a = make_folder(tmp_path / "a", "a" * 40, created=T0)
    b = make_folder(tmp_path / "b", "b" * 40, created=T0)
    procs = [
        subprocess.Popen(
            [BENCH, "history", "add", str(f), "--db", db], stderr=subprocess.PIPE, text=True
        )
        for f in (a, b)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert counts(db)["runs"] == 2


# --------------------------------------------------------------------------- order, changes


def test_order_follows_ancestry_then_time(tmp_path: Path) -> None:
    c0, c1, c2, c3 = make_repo(tmp_path / "repo", 4)
    hours = {c0: 0, c1: 2, c2: 1, c3: 3}  # c2 was measured before its parent c1
    seen = {c: T0 + timedelta(hours=h) for c, h in hours.items()}
    seen["f" * 40] = T0 + timedelta(hours=2.5)  # not in the repository: placed by time
    assert order_commits(seen, tmp_path / "repo") == [c0, c1, c2, "f" * 40, c3]
    assert order_commits(seen, None) == [c0, c2, c1, "f" * 40, c3]  # no repository: time alone


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_changes_find_the_step_commit_and_ratio(tmp_path: Path) -> None:
    repo, commits, folders = stepped_history(tmp_path)
    db = str(tmp_path / "h.sqlite")
    assert cli("history", "add", *map(str, folders), "--db", db).returncode == 0
    res = cli("history", "changes", "--db", db, "--json", "--repo", str(repo), "--metric", "time")
    assert res.returncode == 0, res.stderr
    changes: list[dict[str, Any]] = json.loads(res.stdout)
    stepped = {c["benchmark"]: c for c in changes if STEP_VARIANT in c["benchmark"]}
    n_blake3 = sum(
        1 for b in json.loads((RUN_A / "fingerprint.json").read_text())["benchmarks"]
        if b["params"].get("variant") == STEP_VARIANT
    )  # fmt: skip
    assert len(stepped) == n_blake3
    for c in stepped.values():
        assert c["commit"] == commits[12]
        assert c["previous_commit"] == commits[11]
        assert 1.4 < c["ratio"] < 1.6
        assert c["level_after"] / c["level_before"] == pytest.approx(c["ratio"])
        assert c["confidence"] > 0.99
        assert c["metric"] == "time" and "python 3.11.9" in c["machine"]
    others = [c for c in changes if STEP_VARIANT not in c["benchmark"]]
    assert all(abs(c["ratio"] - 1) < 0.05 for c in others)
    # without the repository the (backwards) times order the commits: the step is not found
    # at commits[12] any more
    res = cli("history", "changes", "--db", db, "--json", "--repo", str(tmp_path / "none"))
    assert res.returncode == 0, res.stderr
    assert all(c["commit"] != commits[12] for c in json.loads(res.stdout))


def test_one_series_per_machine(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commits = make_repo(repo, 10)
    folders = []
    for m, cpu in enumerate(("cpu-A", "cpu-B")):
        for i, c in enumerate(commits):
            step = 2.0 if (m == 1 and i >= 5) else 1.0  # only machine B slows down
            folders.append(
                make_folder(
                    tmp_path / f"{m}-{i}",
                    c,
                    created=T0 + timedelta(hours=i),
                    step_scale=step,
                    cpu=cpu,
                    noise_seed=10 * m + i,
                )
            )
    db = str(tmp_path / "h.sqlite")
    assert cli("history", "add", *map(str, folders), "--db", db).returncode == 0
    assert counts(db)["machines"] == 2
    res = cli("history", "changes", "--db", db, "--json", "--repo", str(repo))
    found = [c for c in json.loads(res.stdout) if STEP_VARIANT in c["benchmark"]]
    assert found and all("cpu-B" in c["machine"] and c["commit"] == commits[5] for c in found)


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_report_is_self_contained_with_marked_changes(tmp_path: Path) -> None:
    repo, commits, folders = stepped_history(tmp_path)
    db = str(tmp_path / "h.sqlite")
    assert cli("history", "add", *map(str, folders), "--db", db).returncode == 0
    out = tmp_path / "page"
    res = cli(
        "history",
        "report",
        "--db",
        db,
        "--out",
        str(out),
        "--repo",
        str(repo),
        "--since",
        "HEAD~14",  # a git ref: commits[5]
    )
    assert res.returncode == 0, res.stderr
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 6  # one chart per benchmark
    assert 'src="http' not in page and "<script src" not in page  # inline filter script only
    assert f"Changes since <code>{commits[5][:8]}</code>" in page
    assert commits[12][:8] in page and "×1.5" in page
    assert json.loads((out / "changes.json").read_text())
    summary = (out / "summary.md").read_text()
    assert f"`{commits[12][:8]}`" in summary and "×1.5" in summary
    bad = cli("history", "report", "--db", db, "--out", str(out), "--since", "deadbeef")
    assert bad.returncode == 2 and "deadbeef" in bad.stderr


@pytest.mark.slow  # several seconds: outside the fast tier
def test_instruction_counts_are_charted_and_quiet_when_flat(tmp_path: Path) -> None:
    """Instruction counts: one chart per benchmark even without a change point; a flat series
    (the same count at every commit, as when no commit touched the code) has no change point,
    while the time series beside it steps."""
    repo, commits, folders = stepped_history(tmp_path)
    for f in folders:
        doc = json.loads((f / "fingerprint.json").read_text())
        # two of run_a's six benchmarks, one that steps (blake3) and one that does not: the
        # same per-benchmark rule on 4 charts of 20 commits instead of 12 (~0.25 CPU s each)
        doc["benchmarks"] = doc["benchmarks"][:2]
        assert [b["params"]["variant"] for b in doc["benchmarks"]] == ["naive", STEP_VARIANT]
        for b in doc["benchmarks"]:
            b.setdefault("extra_info", {})["instructions"] = 12_345.0
        (f / "fingerprint.json").write_text(json.dumps(doc))
    db = str(tmp_path / "h.sqlite")
    assert cli("history", "add", *map(str, folders), "--db", db).returncode == 0
    quiet = cli("history", "changes", "--db", db, "--metric", "instructions", "--json",
                "--repo", str(repo))  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout) == []
    timed = cli("history", "changes", "--db", db, "--metric", "time", "--json", "--repo", str(repo))
    assert {c["commit"] for c in json.loads(timed.stdout)} == {commits[12]}
    out = tmp_path / "page"
    res = cli("history", "report", "--db", db, "--out", str(out), "--repo", str(repo))
    assert res.returncode == 0, res.stderr
    page = (out / "index.html").read_text()
    n = len(json.loads((folders[0] / "fingerprint.json").read_text())["benchmarks"])
    charts = page.split('<section class="chart"')[1:]
    instr = [c for c in charts if "— instructions</h3>" in c]
    assert len(instr) == n and all("· 0 change point(s) ·" in c for c in instr)


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.slow  # several seconds: outside the fast tier
@pytest.mark.postgres
def test_postgres_store_add_changes_and_writers(postgres_url: str, tmp_path: Path) -> None:
    repo, commits, folders = stepped_history(tmp_path)
    res = cli("history", "add", *map(str, folders), "--db", postgres_url)
    assert res.returncode == 0, res.stderr
    again = cli("history", "add", str(folders[0]), "--db", postgres_url)
    assert "already stored" in again.stdout
    assert counts(postgres_url)["runs"] == len(folders)
    ch = cli("history", "changes", "--db", postgres_url, "--json", "--repo", str(repo))
    assert ch.returncode == 0, ch.stderr
    assert {c["commit"] for c in json.loads(ch.stdout) if STEP_VARIANT in c["benchmark"]} == {
        commits[12]
    }


@pytest.mark.postgres
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_two_writers_postgres_lose_no_row(postgres_url: str, tmp_path: Path) -> None:
    _concurrent_writers(postgres_url, tmp_path)


# --------------------------------------------------------------------------- the library study


def test_study_scoring() -> None:
    from studies.history_detectors import Score, Truth, score

    s = Score()
    score([50, 120], Truth("step+5%", 52, 52), 5, s)  # 50 matches (error 2); 120 is false
    score([], Truth("step+5%", 80, 80), 5, s)  # missed
    score([100, 110, 160], Truth("drift", 90, 139), 5, s)  # one match in the span, 160 false
    d = s.as_dict()
    assert (d["true_positives"], d["false_positives"], d["missed"]) == (2, 2, 1)
    assert d["precision"] == 0.5 and d["recall"] == pytest.approx(2 / 3, abs=1e-3)
    assert d["location_error_mean"] == 6.0  # (2 + 10) / 2


def test_study_finds_clear_steps_in_quiet_noise() -> None:
    from studies.history_detectors import run_study

    noise = np.random.default_rng(1).standard_normal(500)
    out = run_study(
        noise,
        np.array([0.01]),
        detectors=["ruptures-pelt"],
        commits=200,
        per_kind=2,
        seed=3,
        tolerance=5,
    )
    by_kind = out["ruptures-pelt"]["by_kind"]
    for kind in ("step+5%", "step+10%", "step-8%"):
        assert by_kind[kind]["recall"] == 1.0 and by_kind[kind]["location_error_mean"] <= 2
    assert by_kind["flat"]["false_positives"] <= 1


@pytest.mark.slow  # several seconds: outside the fast tier
@pytest.mark.parametrize(("module", "action"), [("sqlalchemy", "add"), ("ruptures", "changes")])
def test_missing_library_exits_2_with_the_install_hint(
    tmp_path: Path, module: str, action: str
) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / f"{module}.py").write_text(
        f"raise ModuleNotFoundError({'No module named ' + module!r}, name={module!r})\n"
    )
    db = str(tmp_path / "h.sqlite")
    if action == "changes":  # a store with enough commits to analyse
        _repo, _commits, folders = stepped_history(tmp_path, n=10)
        assert cli("history", "add", *map(str, folders), "--db", db).returncode == 0
        args = ["history", "changes", "--db", db]
    else:
        args = ["history", "add", str(RUN_A), "--db", db]
    res = cli(*args, env={"PYTHONPATH": str(shim)})
    assert res.returncode == 2, res.stdout + res.stderr
    assert module in res.stderr and "samplemind-core[history]" in res.stderr
    assert "Traceback" not in res.stderr
