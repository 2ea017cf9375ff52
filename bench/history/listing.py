"""``samplemind-bench history list``: what a history store holds, as text or JSON.

The commits are listed in the order every other history command uses (git ancestry where the
repository knows them, else the time of their first run: :func:`bench.history.order.order_commits`),
each with the date of its first run and, when the repository has it, its committer date. Runs
without a commit id stand for themselves (``run:<12 hex of the run key>``), as on the trend page.

The JSON document (``--format json``) has the keys ``store``, ``counts`` (runs, commits, machines,
suites, dirty_runs), ``commits`` (oldest first: ``commit``, ``position`` from 1, ``committed``
or null, ``first_run``, ``last_run``, ``runs``, ``dirty_runs``, ``machines``, ``suites``,
``in_repository``), ``machines``, ``suites`` and ``runs``; times are ISO 8601 in UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import vcs
from bench.history.order import known_commits, order_commits

__all__ = ["as_json", "as_text", "describe_store"]


def _commit_id(run: dict[str, Any]) -> str:
    return str(run["commit"] or f"run:{run['run_key'][:12]}")


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat(timespec="seconds")


def _commit_dates(repo: Path | None, commits: list[str]) -> dict[str, datetime]:
    """``{commit: committer date}`` of the commits ``repo`` has (none without a repository)."""
    if repo is None:
        return {}
    known = known_commits(repo, [c for c in commits if not c.startswith("run:")])
    if not known:
        return {}
    try:
        out = vcs.git(
            repo, "show", "-s", "--format=%H %cI", *sorted(set(known.values())), timeout=60
        )
    except vcs.GitError:
        return {}
    dates = {}
    for line in out.splitlines():
        sha, _, when = line.partition(" ")
        try:
            dates[sha] = datetime.fromisoformat(when)
        except ValueError:
            continue
    return {c: dates[full] for c, full in known.items() if full in dates}


def describe_store(held: dict[str, Any], repo: Path | None, *, store: str) -> dict[str, Any]:
    """The ``history list`` document of ``held`` (:meth:`bench.history.store.Store.listing`)."""
    runs: list[dict[str, Any]] = held["runs"]
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    for r in runs:
        c = _commit_id(r)
        first[c] = min(first.get(c, r["created"]), r["created"])
        last[c] = max(last.get(c, r["created"]), r["created"])
    order = order_commits(first, repo)
    dates = _commit_dates(repo, order)
    label = {m["fingerprint"]: m["label"] for m in held["machines"]}
    commits = []
    for i, c in enumerate(order, 1):
        mine = [r for r in runs if _commit_id(r) == c]
        commits.append(
            {
                "commit": c,
                "position": i,
                "committed": _iso(dates.get(c)),
                "first_run": _iso(first[c]),
                "last_run": _iso(last[c]),
                "runs": len(mine),
                "dirty_runs": sum(r["dirty"] for r in mine),
                "machines": sorted({r["machine"] for r in mine}),
                "suites": sorted({s for r in mine for s in r["suites"]}),
                "in_repository": c in dates,
            }
        )
    return {
        "store": store,
        "counts": {
            "runs": len(runs),
            "commits": len(order),
            "machines": len(held["machines"]),
            "suites": len(held["suites"]),
            "dirty_runs": sum(r["dirty"] for r in runs),
        },
        "commits": commits,
        "machines": held["machines"],
        "suites": held["suites"],
        "runs": [
            {
                **{k: v for k, v in r.items() if k != "created"},
                "created": _iso(r["created"]),
                "machine_label": label.get(r["machine"], ""),
            }
            for r in runs
        ],
        "repository": None if repo is None else str(repo),
    }


def as_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _short(commit: str) -> str:
    return commit if commit.startswith("run:") else commit[:12]


def _when(iso: str | None) -> str:
    return "-" if iso is None else iso.replace("T", " ")[:16]


def as_text(doc: dict[str, Any]) -> str:
    n = doc["counts"]
    lines = [f"store: {doc['store']}"]
    if n["runs"] == 0:
        lines.append(
            "the store is empty: no runs yet. Add results folders with "
            "`samplemind-bench history add RESULTS_DIR --db DB`."
        )
        return "\n".join(lines) + "\n"
    lines.append(
        f"{n['runs']} run(s) ({n['dirty_runs']} of a dirty tree), {n['commits']} commit(s), "
        f"{n['machines']} machine(s), {n['suites']} suite(s)"
    )
    where = doc["repository"]
    order = (
        f"git ancestry in {where}, then the time of the first run"
        if where
        else "the time of the first run (no git repository: pass --repo to order by ancestry)"
    )
    short_fp = {m["fingerprint"]: m["fingerprint"][:10] for m in doc["machines"]}
    lines += ["", f"commits, oldest first (order: {order}):"]
    lines.append(
        f"  {'#':>3}  {'commit':<16} {'committed (UTC)':<17} {'first run (UTC)':<17} "
        f"{'runs':>4}  machines  suites"
    )
    for c in doc["commits"]:
        dirty = f" ({c['dirty_runs']} dirty)" if c["dirty_runs"] else ""
        lines.append(
            f"  {c['position']:>3}  {_short(c['commit']):<16} {_when(c['committed']):<17} "
            f"{_when(c['first_run']):<17} {c['runs']:>4}  "
            f"{','.join(short_fp.get(m, m[:10]) for m in c['machines']):<8}  "
            f"{', '.join(c['suites'])}{dirty}"
        )
    lines += ["", "machines (fingerprint: label):"]
    for m in doc["machines"]:
        lines.append(f"  {m['fingerprint'][:10]}  {m['label']}: {m['runs']} run(s)")
    lines += ["", "suites:"]
    for name, s in doc["suites"].items():
        lines.append(
            f"  {name}: {s['runs']} run(s), {s.get('benchmarks', 0)} benchmark(s), "
            f"{s.get('metrics', 0)} metric(s), {s['points']} figure(s)"
        )
    lines += ["", "runs, oldest first:"]
    for r in doc["runs"]:
        flag = " [dirty tree]" if r["dirty"] else ""
        commit = _short(r["commit"]) if r["commit"] else "no commit"
        lines.append(
            f"  {_when(r['created'])}  {commit:<12}{flag}  machine {r['machine'][:10]}  "
            f"{'quick' if r['quick'] else 'full'} {r['mode']}  {', '.join(r['suites'])}  "
            f"{r['source']}"
        )
    return "\n".join(lines) + "\n"
