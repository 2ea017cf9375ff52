"""The gate end to end on real runs: A/A false alarms and an injected slowdown, with the gate itself.

:mod:`studies.gate_study` measures the gate's *statistic* on blocks timed by its own workers. This
script measures the whole ``samplemind-bench gate --baseline-ref`` path as a user runs it:
worktree, the default ``pairs`` schedule, ``--quick`` pytest-benchmark processes, rules, Holm.

* **A/A**: a clean worktree of ``REF`` gated against ``REF``. Every "regressed" verdict (on any
  benchmark of the suite) is a false alarm.
* **A/B**: a worktree of ``REF`` whose ``fingerprint()`` gets ``--units`` extra iterations of a
  busy loop before it returns: a fixed delay, so its relative size falls with the work (smaller
  at larger requests; sizes measured: ``docs/measurements/2026-12-01-moved-from-bench-docstrings.md``). The patch
  lives only in that throw-away worktree. The benchmarks that never call ``fingerprint()``
  (``canonical``, ``naive``) are in-run A/A controls. The injected size of each benchmark is
  the mean of the ratios the gate reports for it over the A/B runs (check it against the A/A).

    python -m studies.gate_e2e --aa 6 --ab 6 --out results/gate_e2e.json   # ~2 min a run here

Runs go into temporary directories that are removed; verdicts and a summary go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

from bench.ab_runner import worktree
from bench.gate.rules import DEFAULT_ROUNDS
from studies._inject import inject_work
from studies.gate_study import wilson, write_figures

__all__ = ["inject_slowdown", "main", "summarise"]

REPO = Path(__file__).resolve().parents[1]


def inject_slowdown(tree: Path, units: int) -> None:
    """Add ``units`` busy-loop iterations (``_x += i``) to ``fingerprint()`` in the checkout
    ``tree`` (:func:`studies._inject.inject_work`, unbounded: a wall-time study)."""
    inject_work(
        tree,
        "samplemind_core/fingerprint.py",
        "fingerprint",
        units,
        max_iterations=None,
        setup="_smb_x = 0",
        body="_smb_x += _smb_study_i",
    )


def _gate(tree: Path, args: argparse.Namespace, seed: int, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.cli", "gate", "--baseline-ref", args.ref]
    cmd += ["--suite", args.suite, "--rounds", str(args.rounds), "--seed", str(seed)]
    cmd += [f"--pytest-arg={a}" for a in args.pytest_arg]
    cmd += ["--json", str(out), "-q"]
    rest = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), *rest]))
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"gate exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return doc


def summarise(aa: Sequence[dict[str, Any]], ab: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Rates over gate JSON documents: A/A alarms, A/B detection per benchmark."""

    def verdicts(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [v for d in docs for v in d["verdicts"] if v["metric"] == "time"]

    aa_v = verdicts(aa)
    alarms = sum(v["status"] == "regressed" for v in aa_v)
    runs_alarmed = sum(any(v["status"] == "regressed" for v in d["verdicts"]) for d in aa)
    per: dict[str, list[dict[str, Any]]] = {}
    for v in verdicts(ab):
        per.setdefault(v["name"], []).append(v)
    rows = []
    for name, vs in sorted(per.items()):
        hits = sum(v["status"] == "regressed" for v in vs)
        rows.append(
            {
                "name": name,
                "runs": len(vs),
                "mean_ratio": statistics.fmean(v["ratio"] for v in vs),
                "ratios": [round(v["ratio"], 4) for v in vs],
                "regressed": hits,
                "rate": hits / len(vs),
                "rate_wilson95": wilson(hits, len(vs)),
            }
        )
    return {
        "aa_runs": len(aa),
        "aa_comparisons": len(aa_v),
        "aa_false_alarms": alarms,
        "aa_false_alarm_rate": alarms / len(aa_v) if aa_v else None,
        "aa_false_alarm_wilson95": wilson(alarms, len(aa_v)) if aa_v else None,
        "aa_runs_with_an_alarm": runs_alarmed,
        "aa_max_abs_log_ratio": max((abs(math.log(v["ratio"])) for v in aa_v), default=None),
        "ab_runs": len(ab),
        "ab": rows,
    }


def _table(s: dict[str, Any]) -> str:
    lo, hi = s["aa_false_alarm_wilson95"] or (0.0, 0.0)
    lines = [
        f"A/A: {s['aa_false_alarms']} regressed of {s['aa_comparisons']} comparisons in "
        f"{s['aa_runs']} gate runs (Wilson 95 % [{lo:.1%}, {hi:.1%}]); "
        f"runs with an alarm: {s['aa_runs_with_an_alarm']}",
        f"A/B ({s['ab_runs']} gate runs): benchmark, mean ratio, regressed",
    ]
    for r in s["ab"]:
        lo, hi = r["rate_wilson95"]
        lines.append(
            f"  {r['name']:<40} {r['mean_ratio']:.3f}  {r['regressed']}/{r['runs']}"
            f"  [{lo:.0%}, {hi:.0%}]"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m studies.gate_e2e", description=__doc__.split("\n")[0]
    )
    p.add_argument("--aa", type=int, default=6, help="A/A gate runs")
    p.add_argument("--ab", type=int, default=6, help="A/B gate runs with the injected slowdown")
    p.add_argument("--units", type=int, default=7, help="busy-loop iterations added")
    p.add_argument("--ref", default="HEAD", help="the commit both sides start from")
    p.add_argument("--suite", default="fingerprint")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    p.add_argument(
        "--pytest-arg", action="append", default=None, help="default: -k1KB (the 1 KB benchmarks)"
    )
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("results/gate_e2e.json"))
    args = p.parse_args(argv)
    if args.pytest_arg is None:
        args.pytest_arg = ["-k1KB"]
    docs: dict[str, list[dict[str, Any]]] = {"aa": [], "ab": []}
    start = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="samplemind-gate-e2e-"))
    try:
        with worktree(REPO, args.ref) as clean, worktree(REPO, args.ref) as slowed:
            inject_slowdown(slowed, args.units)
            # A/A and A/B runs alternate, so both meet the same phases of the machine
            pairs = zip_longest(["aa"] * args.aa, ["ab"] * args.ab)
            plan = [kind for pair in pairs for kind in pair if kind]
            for i, kind in enumerate(plan):
                tree = clean if kind == "aa" else slowed
                doc = _gate(tree, args, args.seed + i, scratch / f"{i:03d}-{kind}.json")
                docs[kind].append(doc)
                print(
                    f"gate_e2e: [{i + 1}/{len(plan)}] {kind}: "
                    f"{sum(v['status'] == 'regressed' for v in doc['verdicts'])} regressed "
                    f"({time.monotonic() - start:.0f} s)",
                    file=sys.stderr,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = summarise(docs["aa"], docs["ab"])
    result = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "minutes": round((time.monotonic() - start) / 60, 1),
        "summary": summary,
        "runs": docs,
    }
    write_figures(args.out, result, _table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
