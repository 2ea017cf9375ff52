"""Stored rows → series (one per benchmark x metric x machine, commits in order) and their changes.

Commits are ordered once for the whole store (:func:`bench.history.order.order_commits`), so every
series shares one x axis. Runs of a dirty tree are kept apart: they are drawn (flagged) on the
trend page but never enter change detection (their code is not the commit's). A commit measured
several times on one machine counts once, with the median of its runs (their spread is kept
beside it: lowest, highest, quartiles, number of runs). Runs without a commit id
stand for themselves (``run:<first 12 hex of the run key>``), placed by time.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.history.changes import DEFAULT_DETECTOR, Change, describe, detect
from bench.history.order import order_commits

__all__ = ["History", "Series", "build_history"]


@dataclass
class Series:
    """One benchmark x metric on one machine."""

    suite: str
    benchmark: str
    params: str
    metric: str
    machine: str
    machine_label: str
    index: list[int] = field(default_factory=list)
    """Positions on the common commit axis (clean runs only)."""
    value: list[float] = field(default_factory=list)
    ci_low: list[float | None] = field(default_factory=list)
    ci_high: list[float | None] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    """Clean runs behind each point of ``value`` (a commit measured several times counts once)."""
    run_low: list[float] = field(default_factory=list)
    """Per point: the lowest of its runs' values (``run_high``: the highest); equal to the
    value when one run."""
    run_high: list[float] = field(default_factory=list)
    run_q1: list[float] = field(default_factory=list)
    """Per point: the lower quartile of its runs' values (``run_q3``: the upper one)."""
    run_q3: list[float] = field(default_factory=list)
    dirty_index: list[int] = field(default_factory=list)
    dirty_value: list[float] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)


@dataclass
class History:
    """Every series of a store on one commit axis."""

    commits: list[str]
    created: dict[str, datetime]
    series: list[Series]

    def changes(self) -> list[Change]:
        return [c for s in self.series for c in s.changes]

    def position(self, commit: str) -> int | None:
        """Index of ``commit`` (a full id or a unique prefix of 4+ characters) on the axis."""
        if commit in self.created:
            return self.commits.index(commit)
        hits = [i for i, c in enumerate(self.commits) if len(commit) >= 4 and c.startswith(commit)]
        return hits[0] if len(hits) == 1 else None


def _commit_id(row: dict[str, Any]) -> str:
    return str(row["commit_sha"] or f"run:{row['run_key'][:12]}")


def build_history(
    rows: list[dict[str, Any]], repo: Path | None, *, detector: str = DEFAULT_DETECTOR
) -> History:
    """Group rows into series on a shared commit axis and find each series' change points."""
    first_seen: dict[str, datetime] = {}
    for r in rows:
        c = _commit_id(r)
        if c not in first_seen or r["created"] < first_seen[c]:
            first_seen[c] = r["created"]
    commits = order_commits(first_seen, repo)
    pos = {c: i for i, c in enumerate(commits)}
    grouped: dict[tuple[str, str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for r in rows:
        key = (r["suite"], r["benchmark"], r["params"], r["metric"], r["machine"])
        grouped[key].append(r)
        labels[r["machine"]] = r["machine_label"]
    out: list[Series] = []
    for gkey in sorted(grouped):
        suite, bench, params, metric, machine = gkey
        s = Series(suite, bench, params, metric, machine, labels[machine])
        clean: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in grouped[gkey]:
            i = pos[_commit_id(r)]
            if r["dirty"]:
                s.dirty_index.append(i)
                s.dirty_value.append(float(r["value"]))
            else:
                clean[i].append(r)
        for i in sorted(clean):
            rs = clean[i]
            s.index.append(i)
            vals = [float(r["value"]) for r in rs]
            s.value.append(float(statistics.median(vals)))
            s.runs.append(len(vals))
            s.run_low.append(min(vals))
            s.run_high.append(max(vals))
            q1, q3 = np.percentile(vals, [25, 75])
            s.run_q1.append(float(q1))
            s.run_q3.append(float(q3))
            lows = [r["ci_low"] for r in rs if r["ci_low"] is not None]
            highs = [r["ci_high"] for r in rs if r["ci_high"] is not None]
            s.ci_low.append(float(statistics.median(lows)) if lows else None)
            s.ci_high.append(float(statistics.median(highs)) if highs else None)
        cps = detect(s.value, detector)
        if cps:
            s.changes = describe(
                s.value,
                cps,
                [commits[i] for i in s.index],
                benchmark=bench,
                metric=metric,
                machine=labels[machine],
            )
        out.append(s)
    return History(commits, first_seen, out)
