"""Fixtures of the gate's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.gate import floor
from tests.gate.helpers import git, zero_floor


@pytest.fixture(autouse=True)
def _zero_between_run_floor(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate's tests build synthetic runs with within-run noise only: the default
    between-run floor is 0 for them (the floor itself is tested with explicit ``--floor``
    files in test_floor.py; the shipped file is this machine's, not theirs)."""
    monkeypatch.setattr(floor, "DEFAULT_FLOOR", zero_floor(tmp_path_factory.mktemp("floor")))


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "samplemind_core").mkdir(parents=True)
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "config", "user.email", "t@example.invalid")
    git(repo, "config", "user.name", "t")
    (repo / "samplemind_core" / "__init__.py").write_text("SPEED = 1.0\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "baseline")
    (repo / "samplemind_core" / "__init__.py").write_text("SPEED = 1.5\n")  # uncommitted candidate
    return repo
