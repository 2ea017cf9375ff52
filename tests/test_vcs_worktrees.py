"""``bench.vcs.worktree`` side by side in one repository, as ``history backfill --jobs N`` and
two gate runs use it: each ``git worktree add`` must find its entry, whatever the others'
``remove`` and ``prune`` do meanwhile."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.vcs import git, worktree


def _repo(root: Path) -> list[str]:
    root.mkdir()
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    commits = []
    for i in range(3):
        (root / "f.txt").write_text(f"{i}\n" * 200)
        subprocess.run(["git", "-C", str(root), "add", "f.txt"], check=True)
        subprocess.run(["git", "-C", str(root), *env, "commit", "-qm", f"c{i}"], check=True)
        commits.append(git(root, "rev-parse", "HEAD"))
    return commits


@pytest.mark.slow  # about 2 s of git
def test_worktrees_made_and_removed_side_by_side_all_succeed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commits = _repo(repo)

    def one(i: int) -> str:
        sha = commits[i % len(commits)]
        with worktree(repo, sha) as tree:
            return git(tree, "rev-parse", "HEAD") + (tree / "f.txt").read_text()[:2]

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(one, range(36)))
    assert got == [commits[i % 3] + f"{i % 3}\n" for i in range(36)]
    assert git(repo, "worktree", "list").count("\n") == 0  # only the main one is left
