"""Git and worktrees, shared by the harness's features (the gate's A/B runner, history's
bisect, backfill and commit order, the results writer's commit info): one ``git`` helper.
"""

from __future__ import annotations

import fcntl
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["GitError", "git", "worktree"]


class GitError(RuntimeError):
    """A git command failed (or git could not run); the message names the command and folder."""


def git(
    repo: Path,
    *args: str,
    stdin: str | None = None,
    timeout: float | None = None,
    error: type[Exception] = GitError,
) -> str:
    """``git -C REPO ARGS``'s standard output, stripped; ``error`` (default :class:`GitError`)
    with git's message when it fails, cannot start, or outlives ``timeout`` seconds."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise error(f"git {' '.join(args)} failed in {repo}: {exc}") from exc
    if proc.returncode != 0:
        raise error(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


@contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (a CI timeout, ``kill``) into SystemExit, so ``finally`` blocks clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_WORKTREE_LOCK = threading.Lock()


@contextmanager
def _worktree_admin(repo: Path) -> Iterator[None]:
    """Hold the repository's worktree administration alone: one ``git worktree add``,
    ``remove`` or ``prune`` at a time, across threads (``backfill --jobs N``) and processes
    (a lock file in the common git folder). Run side by side, a ``prune`` drops the entry of
    a worktree another ``add`` is still creating, and that ``add`` fails."""
    with _WORKTREE_LOCK:
        try:
            common = Path(git(repo, "rev-parse", "--git-common-dir"))
            lock_path = (
                common if common.is_absolute() else repo / common
            ) / "samplemind-worktree.lock"
            handle = lock_path.open("a")
        except (GitError, OSError):  # not a repository (add then says why), or read-only
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


@contextmanager
def worktree(repo: Path, ref: str, *, error: type[Exception] = GitError) -> Iterator[Path]:
    """A detached git worktree of ``ref`` in a temporary directory, removed afterwards.

    Also when the process gets SIGTERM meanwhile (it then exits with status 143). A bad
    ``ref`` or a failing ``git worktree add`` raises ``error``.
    """
    sha = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", error=error)
    tmp = Path(tempfile.mkdtemp(prefix="samplemind-gate-"))
    path = tmp / "baseline"
    with _exit_on_sigterm():
        try:
            with _worktree_admin(repo):
                git(repo, "worktree", "add", "--detach", str(path), sha, error=error)
            yield path
        finally:
            with _worktree_admin(repo):
                if path.exists():
                    subprocess.run(
                        ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                        capture_output=True,
                        check=False,
                    )
                shutil.rmtree(tmp, ignore_errors=True)
                subprocess.run(
                    ["git", "-C", str(repo), "worktree", "prune"], capture_output=True, check=False
                )
