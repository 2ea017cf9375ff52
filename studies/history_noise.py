"""How a backfill method fares on a machine: ``python -m studies.history_noise``.

::

    python -m studies.history_noise --db shuffled.sqlite --db cpu.sqlite --suite fingerprint

For each store, over the series of one metric (``--metric``, default ``time``; optionally one
``--suite``), two orders of the same measurements:

``commit``
    the history as ``history changes`` sees it: commits in ancestry order, one value per commit
    (the median of its runs);
``measured``
    every run's value in the order the runs were made (their ``created`` time). A backfill that
    measures one commit after the other puts its runs in exactly this order on the commit axis,
    so the change points found here are what that backfill would have reported: load phases of
    the machine, unless the code changed too.

For each order: the noise (the detector's own estimate, :func:`bench.history.changes.robust_sigma`
of log values between neighbours, as a percentage; quartiles over the series) and the change
points the project's detector finds (:func:`bench.history.changes.detect`), in how many series.
Read-only; prints a Markdown table (``--json`` for the figures).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.history import store as _store
from bench.history.changes import detect, robust_sigma
from bench.history.series import build_history

__all__ = ["main", "summarise"]


def _quartiles(xs: list[float]) -> list[float]:
    if len(xs) < 2:
        return xs * 3 if xs else [float("nan")] * 3
    q = statistics.quantiles(xs, n=4)
    return [q[0], statistics.median(xs), q[2]]


def _order_figures(sequences: list[list[float]]) -> dict[str, Any]:
    sigmas = [
        100 * robust_sigma(np.log(np.asarray(v))) for v in sequences if len(v) > 2 and min(v) > 0
    ]
    cps = [len(detect(v)) for v in sequences]
    return {
        "sigma_pct_quartiles": [round(x, 2) for x in _quartiles(sigmas)],
        "change_points": sum(cps),
        "series_with_changes": sum(1 for c in cps if c),
    }


def summarise(db: str, *, metric: str, suite: str | None, repo: Path | None) -> dict[str, Any]:
    """The figures of one store (see the module docstring)."""
    st = _store.open_store(db)
    try:
        rows = [r for r in st.rows(metric) if suite is None or r["suite"] == suite]
    finally:
        st.close()
    history = build_history(rows, repo)
    measured: dict[tuple[str, ...], list[tuple[Any, float]]] = defaultdict(list)
    for r in rows:
        if not r["dirty"]:
            key = (r["suite"], r["benchmark"], r["params"], r["machine"])
            measured[key].append((r["created"], float(r["value"])))
    return {
        "db": db,
        "runs": len({r["run_key"] for r in rows}),
        "commits": len(history.commits),
        "series": len(history.series),
        "commit": _order_figures([s.value for s in history.series]),
        "measured": _order_figures([[v for _, v in sorted(pts)] for pts in measured.values()]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.history_noise", description=__doc__)
    p.add_argument("--db", action="append", required=True, metavar="DB")
    p.add_argument("--metric", default="time")
    p.add_argument("--suite")
    p.add_argument("--repo", type=Path, default=Path.cwd())
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    repo = args.repo if (args.repo / ".git").exists() else None
    out = [summarise(db, metric=args.metric, suite=args.suite, repo=repo) for db in args.db]
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        "| store | runs | commits | series | order | noise sd % (q1 / median / q3) "
        "| change points | series with one |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in out:
        for order in ("commit", "measured"):
            f = s[order]
            q = " / ".join(f"{x:.1f}" for x in f["sigma_pct_quartiles"])
            print(
                f"| {s['db']} | {s['runs']} | {s['commits']} | {s['series']} | {order} | {q} "
                f"| {f['change_points']} | {f['series_with_changes']} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
