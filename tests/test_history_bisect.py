"""``samplemind-bench bisect`` on a tiny throw-away git repository with one known slow commit.

What bisect needs from a repository: ``samplemind_core/__init__.py`` in each checkout (the A/B
runner checks it) and the checkout's own harness, ``python -c "from bench.cli import main"``
with ``run --quick --suite S --out DIR [--pytest-arg=...]``, writing a results folder
(``manifest.json`` and one pytest-benchmark JSON file per suite with raw samples). The
synthetic repository has exactly that: a minimal ``samplemind_core.fingerprint`` and a minimal
harness that times it (``-k`` selects benchmarks, as pytest's would), then five commits on top
of a base commit, the third of which makes ``fingerprint`` do ten times the work. Bisect runs
the real interleaved A/B runner (git worktrees, one harness process per side and round) and
the real results reader; the test asserts the commit it names, never a time. The real
harness's own run (pytest-benchmark) is covered by the harness and gate tests; here it would
only add ~70 CPU s (docs/measurements/2026-12-06-test-times.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli as bench_cli
from bench import results as results_format
from tests._helpers import require_module, run_main

require_module("sqlalchemy", "pip install 'samplemind-core[history]'")

BENCH = str(Path(sys.executable).with_name("samplemind-bench"))

FINGERPRINT = """\
def fingerprint(data: bytes) -> int:
    h = 0
    for _ in range(REPEAT):
        for b in data:
            h = (h * 31 + b) & 0xFFFFFFFF
    return h


REPEAT = 4
"""

# the checkout's harness: what ``bench.ab_runner.bench_cli_command`` starts in each side's tree
HARNESS = """\
import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

BENCHMARKS = {
    "bench/suites/test_fingerprint.py::test_fingerprint[1KB-blake3]": 1024,
    "bench/suites/test_fingerprint.py::test_fingerprint[64B-blake3]": 64,
}


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["run"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--suite", nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pytest-arg", action="append", default=[])
    args = p.parse_args(argv)
    from samplemind_core.fingerprint import REPEAT, fingerprint

    select = args.pytest_arg[args.pytest_arg.index("-k") + 1] if "-k" in args.pytest_arg else ""
    args.out.mkdir(parents=True, exist_ok=True)
    files = []
    for suite in args.suite:
        benchmarks = []
        for name, size in BENCHMARKS.items():
            if select not in name:
                continue
            data = bytes(range(256)) * (size // 256 or 1)
            samples = []
            for _ in range(15):
                t = time.perf_counter()
                fingerprint(data)
                samples.append(time.perf_counter() - t)
            if not TIMED:  # the work done, as a time: the same on every run of the same code
                samples = [REPEAT * len(data) * 1e-9] * len(samples)
            benchmarks.append({"name": name.split("::")[1], "fullname": name, "stats": {"data": samples}})
        (args.out / f"{suite}.json").write_text(json.dumps({"benchmarks": benchmarks}))
        files.append(f"{suite}.json")
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(timezone.utc).isoformat(),
        "quick": True,
        "suites": list(args.suite),
        "files": files,
        "runs": [{"suite": s, "status": "completed"} for s in args.suite],
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest))
    return 0
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def synthetic_repo(repo: Path, *, timed: bool = True) -> list[str]:
    """Base commit plus five commits; the third (returned index 2) does 10x the work.

    ``timed=False``: the harness reports the work done instead of the time it took, so runs of
    the same code give identical samples (a case that must find no step cannot flake)."""
    (repo / "samplemind_core").mkdir(parents=True)
    (repo / "bench").mkdir()
    (repo / "samplemind_core" / "__init__.py").write_text("")
    (repo / "samplemind_core" / "fingerprint.py").write_text(FINGERPRINT)
    (repo / "bench" / "__init__.py").write_text("")
    (repo / "bench" / "cli.py").write_text(
        f"FORMAT = {results_format.FORMAT!r}\nVERSION = {results_format.VERSION!r}\n"
        f"TIMED = {timed!r}\n" + HARNESS
    )
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    commits = []
    for i in range(5):
        if i == 2:  # the known slow commit: 10x the work
            path = repo / "samplemind_core" / "fingerprint.py"
            path.write_text(path.read_text().replace("REPEAT = 4", "REPEAT = 40"))
        else:
            (repo / "NOTES.txt").write_text(f"harmless change {i}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"change {i}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_bisect_names_the_slow_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commits = synthetic_repo(repo)
    report = tmp_path / "bisect.json"
    res = run_main(  # in-process; each measurement still starts the checkouts' harnesses
        bench_cli.main,
        [
            "bisect",
            "--good",
            "HEAD~5",
            "--bad",
            "HEAD",
            "--suite",
            "fingerprint",
            "-k",
            "1KB-blake3",
            "--rounds",
            "4",
            "--repo",
            repo,
            "--json",
            report,
        ],
        cwd=repo,
        prog=BENCH,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"first commit of the step: {commits[2]}" in res.stdout
    doc = json.loads(report.read_text())
    assert doc["first_bad"] == commits[2]
    assert doc["step"]["ratio"] > 3.0  # against its parent: the step itself
    # -k selected the benchmark: only the 1KB one was measured
    assert {m["benchmark"] for m in doc["measurements"]} == {
        "bench/test_fingerprint.py::test_fingerprint[1KB-blake3]"
    }
    # GOOD vs BAD, at most ceil(log2 5) = 3 bisection steps, the step against its parent
    assert 3 <= len(doc["measurements"]) <= 1 + 3 + 1
    assert "samplemind-gate-" not in git(repo, "worktree", "list")  # worktrees removed


def test_bisect_without_a_step_exits_1(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    synthetic_repo(repo, timed=False)  # HEAD~2..HEAD: the two harmless commits after the slow one
    res = run_main(
        bench_cli.main,
        [
            *("bisect", "--good", "HEAD~2", "--bad", "HEAD", "--suite", "fingerprint"),
            *("-k", "1KB-blake3", "--rounds", "4", "--repo", repo),
        ],
        cwd=repo,
        prog=BENCH,
    )
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "no significant step between HEAD~2 and HEAD" in res.stdout


def test_bisect_bad_refs_exit_2(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "commit", "-q", "--allow-empty", "-m", "a")
    git(repo, "commit", "-q", "--allow-empty", "-m", "b")
    for good, bad, says in [
        ("no-such-ref", "HEAD", "no-such-ref"),
        ("HEAD", "HEAD~1", "not an ancestor"),
        ("HEAD", "HEAD", "no commits between"),
    ]:
        res = run_main(  # in-process: refused before anything runs
            bench_cli.main,
            ["bisect", "--good", good, "--bad", bad, "--suite", "fingerprint", "--repo", repo],
            prog=BENCH,
        )
        assert res.returncode == 2, res.stderr
        assert says in res.stderr and "Traceback" not in res.stderr


def test_bisect_help_explains_every_option_default_and_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.history.bisect import main as bisect_main

    with pytest.raises(SystemExit) as info:
        bisect_main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    options = text[text.index("options:") : text.index("output:")]
    for option in ("--good", "--bad", "--suite", "-k", "--rounds", "--seed", "--repo"):
        assert option in options
    chunks = options.split("\n  -")[2:]  # after -h
    assert len(chunks) == 9
    for chunk in chunks:  # each option has help that says its default or that it is required
        assert "required" in chunk or "(default" in " ".join(chunk.split()), chunk
    assert "first commit of the step" in text and "exit status" in text
    assert "(default: 5)" in " ".join(options.split())
