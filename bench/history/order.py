"""Put commits in order: by git ancestry where the repository knows them, else by time.

Commits the repository has are ordered topologically (``git rev-list --topo-order``: a parent
always comes before its children, whatever the commit dates say). Commits it does not have
(another clone's branch, a rebased-away commit) and runs without a commit are placed by their
first run's ``created`` time among the others, which keep their ancestry order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from bench import vcs

__all__ = ["known_commits", "order_commits"]


def _git(repo: Path, *args: str, stdin: str | None = None) -> str | None:
    try:
        return vcs.git(repo, *args, stdin=stdin, timeout=60)
    except vcs.GitError:
        return None


def known_commits(repo: Path, shas: list[str]) -> dict[str, str]:
    """``{sha (or any git revision) as given: full commit id}`` of those ``repo`` has as commits."""
    if not shas:
        return {}
    out = _git(repo, "cat-file", "--batch-check", stdin="".join(f"{s}^{{commit}}\n" for s in shas))
    if out is None:
        return {}
    found: dict[str, str] = {}
    for sha, line in zip(shas, out.splitlines(), strict=False):
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "commit":
            found[sha] = parts[0]
    return found


def order_commits(first_seen: Mapping[str, datetime], repo: Path | None) -> list[str]:
    """The keys of ``first_seen`` (commit ids) oldest first; see the module docstring."""
    by_time = sorted(first_seen, key=lambda c: (first_seen[c], c))
    if repo is None:
        return by_time
    known = known_commits(repo, list(first_seen))
    if not known:
        return by_time
    listing = _git(repo, "rev-list", "--topo-order", "--reverse", *sorted(set(known.values())))
    if listing is None:
        return by_time
    position = {sha: i for i, sha in enumerate(listing.split())}
    in_repo = sorted(known, key=lambda c: position.get(known[c], -1))
    others = [c for c in by_time if c not in known]
    # merge the time-ordered others into the ancestry order, by time
    merged: list[str] = []
    i = 0
    for commit in in_repo:
        while i < len(others) and first_seen[others[i]] < first_seen[commit]:
            merged.append(others[i])
            i += 1
        merged.append(commit)
    return merged + others[i:]
