"""The list of suites, on its own: ``run``, ``history`` (backfill, bisect) and the CLI's choices
read it, and none of them owns it.

A suite ``S`` is the pytest module ``bench/suites/test_S.py``; its results are the file
``S.json.gz`` of a results folder (:mod:`bench.results`). This module imports nothing, so a
command's ``--help`` that lists the suites stays fast.

>>> SUITES[0], "load" in SUITES
('hashing', True)
"""

from __future__ import annotations

from typing import Final

__all__ = ["SUITES"]

SUITES: Final = (
    "hashing",
    "fingerprint",
    "cache",
    "client",
    "router",
    "pipeline",
    "load",
    "stream",
)
"""Every suite, in the order ``samplemind-bench run`` runs them (``bench/suites/test_<suite>.py``)."""
