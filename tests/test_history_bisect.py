"""``samplemind-bench bisect`` on a throw-away git repository with one known slow commit.

The repository is a copy of this project (its tracked and new files) with five commits on top of
a base commit; the third makes ``samplemind_core.fingerprint.fingerprint`` do its work ten
times. Bisect runs the real interleaved A/B runner (git worktrees, pytest-benchmark processes)
on one benchmark; the test asserts the commit it names, never a time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="pip install 'samplemind-core[history]'")

from bench import cli as bench_cli
from tests._helpers import run_main

ROOT = Path(__file__).resolve().parents[1]
BENCH = str(Path(sys.executable).with_name("samplemind-bench"))
SLOWDOWN = """

_fast_fingerprint = fingerprint


def fingerprint(*args, **kwargs):  # type: ignore[no-redef]  # the known slow commit: 10x the work
    for _ in range(9):
        _fast_fingerprint(*args, **kwargs)
    return _fast_fingerprint(*args, **kwargs)
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def project_copy(dest: Path) -> None:
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listing.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.mark.slow
def test_bisect_names_the_slow_commit(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    project_copy(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    commits = []
    for i in range(5):
        if i == 2:
            with (repo / "samplemind_core" / "fingerprint.py").open("a") as f:
                f.write(SLOWDOWN)
        else:
            (repo / "NOTES.txt").write_text(f"harmless change {i}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"change {i}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    report = tmp_path / "bisect.json"
    res = subprocess.run(
        [
            BENCH,
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
            str(repo),
            "--json",
            str(report),
            "--pytest-arg=-pno:hypothesispytest",
        ],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=1800,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert f"first commit of the step: {commits[2]}" in res.stdout
    doc = json.loads(report.read_text())
    assert doc["first_bad"] == commits[2]
    assert doc["step"]["ratio"] > 3.0  # against its parent: the step itself
    # GOOD vs BAD, at most ceil(log2 5) = 3 bisection steps, the step against its parent
    assert 3 <= len(doc["measurements"]) <= 1 + 3 + 1
    assert "samplemind-gate-" not in git(repo, "worktree", "list")  # worktrees removed


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
