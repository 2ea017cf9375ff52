"""``samplemind-bench history add|list|changes|report``.

::

    samplemind-bench history add results/ci [more folders] --db history.sqlite
    samplemind-bench history list --db history.sqlite [--format json]
    samplemind-bench history changes --db history.sqlite --json
    samplemind-bench history report --db history.sqlite --out reports/history [--since REF]

``--db`` defaults to ``$SAMPLEMIND_HISTORY``; a path is an SQLite file, ``postgresql://...`` a
server. Exit status: 0 done; 2 bad input (a corrupt or foreign results folder, named; a missing library; an unreachable
database, named with its password hidden; a damaged, foreign or wrong-version database, named:
every command checks the store when it opens it; the commands that only read refuse a store that
does not exist instead of creating it). ``history add`` reads every folder before writing
any, so one bad folder stores nothing, and says "stored" only for what it read back.
``history list`` prints what the store holds (runs, commits in order with their dates, machines,
suites); an empty store is said so (exit 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.history._ingest import HistoryError, read_run

__all__ = ["main"]

_HINT = "pip install 'samplemind-core[history]'"


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _history_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samplemind-bench history",
        description="Benchmark history: store results folders, list what is stored, find "
        "change points, write the trend page.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def db_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--db",
            default=None,
            metavar="DB",
            help="SQLite file path or postgresql:// URL (default: $SAMPLEMIND_HISTORY)",
        )
        p.add_argument(
            "--repo",
            type=Path,
            default=Path.cwd(),
            help="git repository ordering the commits (default: the current directory)",
        )

    add = sub.add_parser("add", help="store results folders")
    add.add_argument("folders", nargs="+", type=Path, metavar="RESULTS_DIR")
    db_arg(add)
    ls = sub.add_parser(
        "list",
        help="what the store holds: runs, commits (in order, dated), machines, suites",
        description="Print what the history store holds: the commits in order (git ancestry "
        "where --repo knows them, else the time of their first run) with their dates, the "
        "machines (fingerprint, label, runs), the suites and every run. Exit 0 (an empty "
        "store says so), 2 when the store is missing, damaged or unreachable.",
    )
    db_arg(ls)
    ls.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people, json for scripts (default: %(default)s)",
    )
    ch = sub.add_parser("changes", help="list change points per benchmark x metric x machine")
    db_arg(ch)
    ch.add_argument("--json", action="store_true", help="print a JSON list")
    ch.add_argument("--metric", help="only this metric (e.g. time)")
    ch.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="C",
        help="only change points with at least this confidence (0-1; default: all)",
    )
    rep = sub.add_parser(
        "report",
        help="write the trend page DIR/index.html (one file that opens offline)",
        description="Write DIR/index.html: the changes since REF, an index of every charted "
        "benchmark x metric with its latest change point, a filter (suite, metric, changed "
        "only, name) and one chart per series, caption above; also DIR/changes.json and "
        "DIR/summary.md. Exit 2 when the store is missing, damaged or unreachable.",
    )
    db_arg(rep)
    rep.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder of the page (created; its three files are replaced)",
    )
    rep.add_argument(
        "--since",
        metavar="REF",
        help="commit (or git ref) of the 'changes since' table (default: the first commit stored)",
    )
    return parser


def _db(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    return args.db or env.get("SAMPLEMIND_HISTORY") or None


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of ``samplemind-bench history``."""
    env = os.environ if env is None else env
    prog = "samplemind-bench history"
    args = _history_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    db = _db(args, env)
    if db is None:
        return _fail(prog, "no database: pass --db DB or set SAMPLEMIND_HISTORY")
    try:
        from bench.history import store as _store
    except ModuleNotFoundError as exc:
        return _fail(prog, f"missing library {exc.name!r}: {_HINT}")
    try:
        if args.action == "add":
            runs = [read_run(f) for f in args.folders]  # all read before anything is written
            st = _store.open_store(db)
            try:
                for run in runs:
                    res = st.add(run)
                    state = f"stored ({res.points} figures)" if res.stored else "already stored"
                    flag = " [dirty tree]" if run.dirty else ""
                    commit = (run.commit or "no commit")[:12]
                    print(f"{run.source}: {commit}{flag}: {state}")
                    if run.not_stored:
                        skipped = ", ".join(f"{k} ({v})" for k, v in sorted(run.not_stored.items()))
                        print(f"{run.source}: not stored, the suite did not complete: {skipped}")
            finally:
                st.close()
            return 0
        if args.action == "list":
            st = _store.open_store(db, create=False)
            try:
                held = st.listing()
            finally:
                st.close()
            repo = args.repo if (args.repo / ".git").exists() else None
            from bench.history.listing import as_json, as_text, describe_store

            doc = describe_store(held, repo, store=_store.redacted(st.url))
            print(as_json(doc) if args.format == "json" else as_text(doc), end="")
            return 0
        from bench.history.series import build_history

        st = _store.open_store(db, create=False)
        try:
            rows = st.rows(getattr(args, "metric", None))
        finally:
            st.close()
        repo = args.repo if (args.repo / ".git").exists() else None
        history = build_history(rows, repo)
        if args.action == "changes":
            changes = [c for c in history.changes() if c.confidence >= args.min_confidence]
            if args.json:
                print(json.dumps([c.as_dict() for c in changes], indent=2))
            else:
                print(f"{len(changes)} change point(s) over {len(history.commits)} commits")
                for c in sorted(changes, key=lambda c: (c.machine, c.benchmark, c.metric, c.index)):
                    print(
                        f"  {c.benchmark} [{c.metric}] on {c.machine}: x{c.ratio:.3f} at "
                        f"{c.commit[:12]} ({c.level_before:.4g} -> {c.level_after:.4g}, "
                        f"confidence {c.confidence:.3f})"
                    )
            return 0
        from bench.history.order import known_commits
        from bench.history.report import render

        since = args.since
        if since is not None and repo is not None:  # a git ref (HEAD~10, v1.2) -> its commit id
            since = known_commits(repo, [since]).get(since, since)
        try:
            page = render(history, args.out, since=since, db_label=_store.redacted(st.url))
        except ValueError as exc:
            return _fail(prog, str(exc))
        print(f"{prog}: wrote {page}")
        return 0
    except HistoryError as exc:
        return _fail(prog, str(exc))
    except ModuleNotFoundError as exc:
        return _fail(prog, f"missing library {exc.name!r}: {_HINT}")
