"""The gate's inputs: results folders or pytest-benchmark JSON files, loaded into samples.

A side is one or more runs (:func:`load_results` each, :func:`pool` them); the results format
itself (manifest checks, benchmark identity) is :mod:`bench.results`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import environment, results

__all__ = [
    "BenchRecord",
    "GateInputError",
    "ResultSet",
    "load_results",
    "load_side",
    "pool",
    "require_samples",
]


class GateInputError(Exception):
    """Bad gate input other than a results file (arguments, rules); the message names it.

    A results file that cannot be read raises the results reader's own
    :class:`~bench.results.ResultsFormatError` (the same message in every command)."""


@dataclass(slots=True)
class BenchRecord:
    """One benchmark's raw figures, possibly pooled over several runs."""

    key: str
    name: str
    group: str
    samples: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    runs: list[list[float]] = field(default_factory=list)
    """The samples of each run separately (pooled sets: one entry per results folder)."""
    timer: str = ""
    """pytest-benchmark's timer (``options.timer``), e.g. ``time.perf_counter``; "" if unknown."""


@dataclass(slots=True)
class ResultSet:
    """The benchmarks of one side, with where they came from and the environment they ran in."""

    sources: list[str]
    environment: dict[str, Any]
    benches: dict[str, BenchRecord]
    commit: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    """The benchmark JSON files read."""


def _records(benchmarks: Sequence[results.Benchmark]) -> dict[str, BenchRecord]:
    """The gate's view of benchmarks read (and checked) by :mod:`bench.results`."""
    out: dict[str, BenchRecord] = {}
    for b in benchmarks:
        samples = list(b.samples)
        out[b.fullname] = BenchRecord(
            key=b.fullname,
            name=b.name,
            group=b.group,
            samples=samples,
            extra={k: [v] for k, v in b.numeric_extra().items()},
            runs=[list(samples)],
            timer=b.timer,
        )
    return out


def load_results(path: Path) -> ResultSet:
    """Load a results folder (or its ``manifest.json``) or a single pytest-benchmark JSON file
    (plain or ``.json.gz``) through the one reader, :mod:`bench.results`; anything
    wrong with them raises its :class:`~bench.results.ResultsFormatError`."""
    if path.is_file() and path.name == "manifest.json":
        path = path.parent
    if path.is_dir():
        folder = results.read_folder(path)  # an incomplete suite never passes
        commit = folder.manifest.get("commit")
        return ResultSet(
            sources=[str(path)],
            environment=dict(folder.manifest.get("environment") or {}),
            benches=_records(list(folder.benchmarks)),
            commit=dict(commit) if isinstance(commit, dict) else {},
            files=[str(f.path) for f in folder.files],
        )
    if not path.exists():
        raise GateInputError(f"{path}: no such results folder or file")
    sf = results.read_suite_file(path)
    machine = sf.machine_info
    env = environment.from_machine_info(dict(machine)) if machine else {}
    return ResultSet(
        sources=[str(path)],
        environment=env,
        benches=_records(sf.benchmarks),
        commit=dict(sf.commit_info),
        files=[str(path)],
    )


def require_samples(side: str, rs: ResultSet) -> None:
    """Refuse a side none of whose benchmarks carries raw samples: the gate would compare nothing."""
    if any(rec.samples for rec in rs.benches.values()):
        return
    what = "no benchmarks" if not rs.benches else "no raw samples (stats.data) in any benchmark"
    raise GateInputError(
        f"{side} {', '.join(rs.files or rs.sources)}: {what}; nothing to compare "
        "(write results with samplemind-bench run, or pytest --benchmark-json)"
    )


def pool(sets: Sequence[ResultSet]) -> tuple[ResultSet, list[str]]:
    """Merge several runs of one side; returns the pooled set and environment differences among them."""
    if not sets:
        raise GateInputError("no results given")
    first = sets[0]
    diffs: list[str] = []
    benches: dict[str, BenchRecord] = {}
    for rs in sets:
        diffs += [
            f"{rs.sources[0]} vs {first.sources[0]}: {d}"
            for d in environment.differences(first.environment, rs.environment)
        ]
        for key, rec in rs.benches.items():
            have = benches.get(key)
            if have is None:
                benches[key] = BenchRecord(
                    key,
                    rec.name,
                    rec.group,
                    list(rec.samples),
                    {k: list(v) for k, v in rec.extra.items()},
                    [list(r) for r in rec.runs],
                    rec.timer,
                )
                continue
            if rec.timer and have.timer and rec.timer != have.timer:
                diffs.append(
                    f"{rs.sources[0]} vs {first.sources[0]}: {key} timed with "
                    f"{rec.timer} vs {have.timer}"
                )
            have.samples.extend(rec.samples)
            have.runs.extend(list(r) for r in rec.runs)
            for k, v in rec.extra.items():
                have.extra.setdefault(k, []).extend(v)
    sources = [s for rs in sets for s in rs.sources]
    files = [f for rs in sets for f in rs.files]
    return ResultSet(sources, dict(first.environment), benches, dict(first.commit), files), diffs


def load_side(paths: Sequence[Path], side: str = "") -> tuple[ResultSet, list[str]]:
    """Load and :func:`pool` the runs of one side; a results file the reader refuses is bad
    input naming ``side`` ("baseline", "candidate") before the reader's own message."""
    try:
        return pool([load_results(p) for p in paths])
    except results.ResultsFormatError as exc:
        if not side:
            raise
        raise GateInputError(f"{side} {exc}") from exc
