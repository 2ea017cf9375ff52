"""A realistic synthetic history for the trend page and ``history list`` tests.

Results folders are made from the committed sample run (``tests/data/results/run_a``): its
suites' raw samples scaled per run (seeded log-normal noise) under commits of a throw-away git
repository, so ``history add`` reads them through the real reader. :func:`build_history_store`
makes the shape a real store has:

- ``fingerprint`` at every commit, its ``blake3`` benchmarks stepping up by ``ratio`` at commit
  ``step_at``;
- several runs on some commits (``repeats``), whose spread the page draws;
- ``short_suite`` (default ``hashing``) only at the last ``short`` commits (too few for change
  points) and ``router`` at one commit only (no trend at all);
- one dirty-tree run of the last commit.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

__all__ = ["RUN_A", "STEP_VARIANT", "HistoryStore", "build_history_store", "make_repo", "make_run"]

RUN_A = Path(__file__).parent / "data" / "results" / "run_a"
STEP_VARIANT = "blake3"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def make_repo(path: Path, n: int) -> list[str]:
    """A git repository with ``n`` empty commits; their ids, oldest first."""
    path.mkdir(parents=True)
    _git(path, "init", "-q")
    for i in range(n):
        _git(
            path,
            "-c", "user.name=t", "-c", "user.email=t@t",
            "commit", "-q", "--allow-empty", "-m", f"c{i}",
        )  # fmt: skip
    return _git(path, "rev-list", "--reverse", "HEAD").split()


def make_run(
    out: Path,
    commit: str | None,
    *,
    created: datetime,
    suites: tuple[str, ...] = ("fingerprint",),
    step_scale: float = 1.0,
    noise_sd: float = 0.03,
    noise_seed: int = 0,
    dirty: bool = False,
) -> Path:
    """A results folder of run_a's ``suites``; each benchmark's samples scaled by seeded noise
    (and the ``blake3`` ones by ``step_scale``)."""
    out.mkdir(parents=True)
    manifest = json.loads((RUN_A / "manifest.json").read_text())
    manifest.update(
        created=created.isoformat(),
        suites=list(suites),
        files=[f"{s}.json" for s in suites],
        commit={"id": commit, "dirty": dirty},
    )
    (out / "manifest.json").write_text(json.dumps(manifest))
    rng = np.random.default_rng(noise_seed)
    for suite in suites:
        doc = json.loads((RUN_A / f"{suite}.json").read_text())
        for b in doc["benchmarks"]:
            f = float(np.exp(rng.normal(0, noise_sd)))
            if STEP_VARIANT in b["name"]:
                f *= step_scale
            b["stats"]["data"] = [x * f for x in b["stats"]["data"]]
        (out / f"{suite}.json").write_text(json.dumps(doc))
    return out


@dataclass
class HistoryStore:
    repo: Path
    commits: list[str]
    folders: list[Path]
    step_at: int
    repeats: dict[int, int]
    short: int


def build_history_store(
    tmp: Path,
    *,
    n: int = 24,
    step_at: int = 14,
    ratio: float = 1.5,
    repeats: dict[int, int] | None = None,
    short: int = 5,
    noise_sd: float = 0.01,
    seed: int = 0,
    short_suite: str = "hashing",
) -> HistoryStore:
    """The folders of the history described in the module docstring (not yet added)."""
    repeats = {10: 3, 20: 5, n - 1: 5} if repeats is None else repeats
    repo = tmp / "repo"
    commits = make_repo(repo, n)
    folders: list[Path] = []
    for i, c in enumerate(commits):
        suites: tuple[str, ...] = ("fingerprint",)
        if i >= n - short:
            suites += (short_suite,)
        if i == n - 2:
            suites += ("router",)
        for k in range(repeats.get(i, 1)):
            seed += 1000
            folders.append(
                make_run(
                    tmp / f"r{i:02d}-{k}",
                    c,
                    created=T0 + timedelta(hours=i, minutes=k),
                    suites=suites,
                    step_scale=ratio if i >= step_at else 1.0,
                    noise_sd=noise_sd,
                    noise_seed=seed,
                )
            )
    folders.append(
        make_run(
            tmp / "dirty",
            commits[-1],
            created=T0 + timedelta(hours=n),
            step_scale=3.0,
            noise_sd=noise_sd,
            noise_seed=999,
            dirty=True,
        )
    )
    return HistoryStore(repo, commits, folders, step_at, repeats, short)
