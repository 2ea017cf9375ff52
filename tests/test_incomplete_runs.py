"""Ctrl-C and incomplete results folders (issue 23 item 6).

One real ``samplemind-bench run`` gets a real SIGINT mid-suite; the readers (``report``,
``gate``, ``history add``, ``headline``) are tried in-process on folders whose manifest says
they are incomplete, and the one completeness rule is checked on old and new manifests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import cli as bench_cli
from bench.results import (
    INTERRUPTED_EXIT,
    IncompleteResultsError,
    SuiteRun,
    incomplete_suites,
    read_manifest,
    require_complete,
    write_manifest,
)

RUN_A = Path(__file__).parent / "data" / "results" / "run_a"
REPO = Path(__file__).resolve().parents[1]
BENCH = str(Path(sys.executable).with_name("samplemind-bench"))


def _folder(tmp_path: Path, **manifest_changes: Any) -> Path:
    folder = tmp_path / "results"
    shutil.copytree(RUN_A, folder)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(manifest_changes)
    path.write_text(json.dumps(manifest))
    return folder


def _runs(*entries: tuple[str, int, str | None]) -> list[dict[str, Any]]:
    return [
        {"suite": s, "file": f"{s}.json" if f is None else f, "exit_code": c, "elapsed_s": 1.0}
        for s, c, f in entries
    ]


SUITES6 = ["hashing", "fingerprint", "cache", "client", "router", "pipeline"]


# -- the one rule --------------------------------------------------------------


def test_rule_on_new_and_old_manifests() -> None:
    done = [{**r, "status": "completed"} for r in _runs(*((s, 0, None) for s in SUITES6))]
    assert incomplete_suites({"suites": SUITES6, "runs": done, "complete": True}) == {}
    # still being written / stopped between suites
    assert incomplete_suites({"suites": SUITES6, "runs": done, "complete": False}) == {
        "run": "did not finish"
    }
    stopped = [*done[:2], {**done[2], "status": "interrupted", "file": None}]
    assert incomplete_suites({"suites": SUITES6, "runs": stopped, "complete": False}) == {
        "cache": "interrupted",
        "client": "not run",
        "router": "not run",
        "pipeline": "not run",
    }
    # older folders (no "status", no "complete"): judged from the exit codes and the runs list
    old = _runs(("hashing", 0, None), ("fingerprint", 1, None), ("cache", 2, None))
    assert incomplete_suites({"suites": SUITES6[:3], "runs": old}) == {"cache": "interrupted"}
    old = _runs(("hashing", 0, None), ("fingerprint", 3, None))
    assert incomplete_suites({"suites": SUITES6[:3], "runs": old}) == {
        "fingerprint": "crashed",
        "cache": "not run",
    }
    old = _runs(("hashing", -9, None), ("fingerprint", 0, ""))
    assert incomplete_suites({"suites": SUITES6[:2], "runs": old}) == {"hashing": "interrupted"}
    # a manifest without "runs" (hand-written, other tools) cannot say: taken as complete
    assert incomplete_suites(json.loads((RUN_A / "manifest.json").read_text())) == {}


def test_write_manifest_lists_only_completed_suites(tmp_path: Path) -> None:
    runs = [
        SuiteRun("hashing", "hashing.json", 0, 1.0),
        SuiteRun("fingerprint", "fingerprint.json", 1, 1.0),  # tests failed: still complete
        SuiteRun("cache", "cache.json", 2, 1.0),  # pytest's own Ctrl-C exit
    ]
    m = write_manifest(
        tmp_path, mode="mocked", quick=True, suites=SUITES6[:3], runs=runs, repo=REPO
    )
    assert m["complete"] is False and m["files"] == ["hashing.json", "fingerprint.json"]
    assert [r["status"] for r in m["runs"]] == ["completed", "completed", "interrupted"]
    with pytest.raises(IncompleteResultsError, match=r"cache \(interrupted\)") as info:
        require_complete(read_manifest(tmp_path), tmp_path / "manifest.json")
    assert str(tmp_path) in str(info.value) and info.value.incomplete == {"cache": "interrupted"}
    m = write_manifest(
        tmp_path, mode="mocked", quick=True, suites=SUITES6[:2], runs=runs[:2], repo=REPO
    )
    assert m["complete"] is True
    assert require_complete(read_manifest(tmp_path), tmp_path) == m
    assert not (tmp_path / "manifest.json.tmp").exists()


# -- every reader refuses an incomplete folder, naming it and its suites --------


INCOMPLETE_CASES = {
    "interrupted": {
        "complete": False,
        "runs": [
            *({**r, "status": "completed"} for r in _runs(*((s, 0, None) for s in SUITES6[:4]))),
            {
                "suite": "router",
                "file": None,
                "exit_code": -2,
                "elapsed_s": 3.0,
                "status": "interrupted",
            },
        ],
    },
    "old-format-stopped": {"runs": _runs(*((s, 0, None) for s in SUITES6[:5]))},
}


@pytest.mark.parametrize(
    ("reader", "case"),
    [
        (reader, case)
        for reader in ("report", "gate", "gate-baseline", "history", "headline")
        for case in sorted(INCOMPLETE_CASES)
        if (reader, case) != ("report", "old-format-stopped")  # the report reader's rule is one
    ],
)
def test_readers_refuse_an_incomplete_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, reader: str
) -> None:
    bad = _folder(tmp_path, **INCOMPLETE_CASES[case])
    good = _folder(tmp_path / "good")
    argv = {
        "report": ["report", str(bad), "--out", str(tmp_path / "out")],
        "gate": ["gate", str(good), str(bad)],
        "gate-baseline": ["gate", str(bad), str(good)],
        "history": ["history", "add", str(bad), "--db", str(tmp_path / "h.sqlite")],
        "headline": ["headline", str(bad)],
    }[reader]
    try:
        code = bench_cli.main(argv)
    except SystemExit as exc:  # argparse's parser.error (headline)
        code = int(str(exc.code))
    captured = capsys.readouterr()
    assert code == 2, (captured.out, captured.err)
    assert f"incomplete results folder {bad}" in captured.err
    assert "pipeline (not run)" in captured.err
    if case == "interrupted":
        assert "router (interrupted)" in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "out" / "index.html").exists()
    if reader == "history":
        db = tmp_path / "h.sqlite"
        assert not db.exists() or db.stat().st_size == 0 or _runs_in(db) == 0


def _runs_in(db: Path) -> int:
    from bench.history.store import open_store

    st = open_store(db)
    try:
        return st.counts()["runs"]
    finally:
        st.close()


def test_complete_folder_still_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [{**r, "status": "completed"} for r in _runs(*((s, 0, None) for s in SUITES6))]
    folder = _folder(tmp_path, complete=True, runs=runs)
    other = _folder(tmp_path / "other", complete=True, runs=runs)
    code = bench_cli.main(["gate", str(folder), str(other)])
    captured = capsys.readouterr()
    assert code in (0, 1, 3), captured.err  # judged, not refused as input
    assert "incomplete" not in captured.err + captured.out


# -- a real Ctrl-C --------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp, ...
            members.append(int(stat.parent.name))
    return members


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_sigint_mid_suite_stops_children_keeps_what_completed_and_exits_130(
    tmp_path: Path,
) -> None:
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [
            BENCH, "run", "--quick", "--suite", "fingerprint", "cache", "--out", str(out),
            "--pytest-arg=-k", "--pytest-arg=256B-blake3 or 256B-naive or cache",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, like a shell job
    )  # fmt: skip
    try:
        assert proc.stderr is not None  # progress lines go to stderr
        lines: list[str] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "[2/2] cache: started" in line:
                break
        assert any("[2/2] cache: started" in x for x in lines), lines
        assert "[1/2] fingerprint: started; then cache" in "".join(lines)
        children: list[int] = []
        while time.monotonic() < deadline and not children:
            time.sleep(0.2)
            children = [pid for pid in _children(proc.pid) if b"pytest" in _cmdline(pid)]
        assert children, "the suite's pytest is running"
        time.sleep(1.0)  # mid-suite: importing, collecting or timing
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        stdout, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = rest
    assert proc.returncode == INTERRUPTED_EXIT, (stdout, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted (SIGINT)" in err
    assert f"kept 1 completed suite(s) in {out} (fingerprint)" in err
    assert "not complete: cache" in err
    assert not [(pid, _cmdline(pid)[:200]) for pid in children if _alive(pid)]
    assert not [m for pid in children for m in _group_members(pid)]  # nor what they started
    manifest = read_manifest(out)
    assert manifest["complete"] is False
    assert manifest["files"] == ["fingerprint.json.gz"]  # compressed once done
    assert [(r["suite"], r["status"]) for r in manifest["runs"]] == [
        ("fingerprint", "completed"),
        ("cache", "interrupted"),
    ]
    assert incomplete_suites(manifest) == {"cache": "interrupted"}
    assert (out / "fingerprint.json.gz").is_file()
