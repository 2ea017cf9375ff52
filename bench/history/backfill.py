"""Measure past commits into results folders: ``python -m bench.history.backfill``.

::

    python -m bench.history.backfill --last 30 --suite fingerprint --out results/backfill \\
        --pytest-arg=-k1KB --pytest-arg=-pno:hypothesispytest
    samplemind-bench history add results/backfill/* --db history.sqlite

Each commit (the ``--last`` N first-parent commits up to ``--ref``, oldest first) is checked out
in a temporary git worktree and measured by *its own* harness (``samplemind-bench run --quick
--suite S``, as the gate's baseline side runs: :func:`bench.gate.ab_runner.bench_cli_runner`), into
``OUT/NNN-<sha>-<suite>``. A commit whose run fails (old commits may lack a suite or an option)
is reported and skipped; the others go on. Exit status: 0 when at least one run succeeded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.gate import ab_runner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.history.backfill", description=__doc__)
    p.add_argument("--last", type=int, default=30, metavar="N")
    p.add_argument("--ref", default="HEAD")
    p.add_argument("--suite", action="append", required=True, metavar="S")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--repo", type=Path, default=Path.cwd())
    p.add_argument("--pytest-arg", action="append", default=[], metavar="ARG")
    args = p.parse_args(argv)
    repo = args.repo.resolve()
    listing = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--first-parent", "-n", str(args.last), args.ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        print(f"backfill: error: {listing.stderr.strip()}", file=sys.stderr)
        return 2
    commits = listing.stdout.split()[::-1]
    ok = failed = 0
    for n, sha in enumerate(commits):
        try:
            with ab_runner.worktree(repo, sha) as tree:
                side = ab_runner.side_environments(repo, tree, os.environ)["baseline"]
                for suite in args.suite:
                    out = args.out.resolve() / f"{n:03d}-{sha[:12]}-{suite}"
                    if (out / "manifest.json").exists():
                        print(f"[{n + 1}/{len(commits)}] {sha[:12]} {suite}: already there")
                        ok += 1
                        continue
                    slot = ab_runner.Slot(n, suite, "baseline")
                    ab_runner.bench_cli_runner(slot, out, side, args.pytest_arg)
                    print(f"[{n + 1}/{len(commits)}] {sha[:12]} {suite}: ok", flush=True)
                    ok += 1
        except ab_runner.ABRunError as exc:
            failed += 1
            first = str(exc).splitlines()[0]
            print(f"[{n + 1}/{len(commits)}] {sha[:12]}: skipped ({first})", flush=True)
    print(f"backfill: {ok} run(s) written, {failed} commit(s) skipped, in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
