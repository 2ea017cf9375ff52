"""Early pytest plugin of a counting process: pytest-benchmark's commit lookup, without subprocesses.

pytest-benchmark's ``pytest_addoption`` asks for the commit in every pytest process
(``get_tag`` → ``get_commit_info`` → ``get_project_name``, which runs ``git rev-parse`` and,
when that fails, as it does in the counting stage, ``hg path default``). Where Mercurial is not
installed, that exec fails in the forked child, and the child reports the error to its parent
in three or four separate writes; :mod:`subprocess` reads its error pipe in a loop, one
50,000-byte buffer cut to size per part, as many parts as had arrived. Under callgrind the child
is slow enough that the number of parts depends on scheduling, so the heap that every later
count ran on took one of a few shapes: counts of one commit in fresh processes were bimodal
(fingerprint ``8KB-canonical`` 21,998.3 or 22,141.3, ``8KB-xxh3_128`` 30,318.3 or 31,259.7;
docs/decisions/0620-counting-process-without-vcs-subprocesses.md).

:func:`bench.instructions.runner.counting_command` loads this module with
``-p bench.instructions._no_vcs``: ``-p`` plugins register before pytest's entry-point plugins,
and :func:`pytest_addoption`, which pytest calls at registration, replaces
``pytest_benchmark.utils.get_commit_info`` with :func:`commit_info` before pytest-benchmark's
own ``pytest_addoption`` runs. A counting process saves no pytest-benchmark results (its counts
go to ``counts.json``; the commit is recorded by the suite's wall-time process), so nothing
reads the answer. Importing this module changes nothing; only registering it does.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

__all__ = ["answer_without_vcs", "commit_info", "pytest_addoption"]


def commit_info(project_name: str | None = None) -> dict[str, Any]:
    """What pytest-benchmark's ``get_commit_info`` answers outside a repository, without asking git or hg."""
    return {
        "id": "unversioned",
        "time": None,
        "author_time": None,
        "dirty": False,
        "project": project_name or Path.cwd().name,
        "branch": "(unknown)",
    }


def answer_without_vcs(utils: ModuleType) -> None:
    """Make ``utils`` (``pytest_benchmark.utils``) answer commit lookups with :func:`commit_info`."""
    utils.get_commit_info = commit_info  # type: ignore[attr-defined]  # a module's own name


def pytest_addoption(parser: pytest.Parser) -> None:
    """Called when this plugin registers, before pytest-benchmark's own ``pytest_addoption``."""
    import pytest_benchmark.utils

    answer_without_vcs(pytest_benchmark.utils)
