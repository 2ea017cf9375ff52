"""Fixtures of the gate's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gate.helpers import git


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
