"""The gate's inputs: results folders or pytest-benchmark JSON files, loaded into samples.

A side is one or more runs (:func:`load_results` each, :func:`pool` them); the results format
itself (manifest checks, benchmark identity) is :mod:`bench.harness.results`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import environment
from bench.harness import results

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
    """Bad gate input; the message names the offending file."""


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


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise GateInputError(f"{path}: file not found")
    if not path.is_file():
        raise GateInputError(f"{path}: not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GateInputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise GateInputError(f"{path}: file is empty")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise GateInputError(f"{path}: not valid JSON ({exc})") from exc


def _parse_benchmarks(doc: Any, path: Path) -> dict[str, BenchRecord]:
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise GateInputError(
            f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list); "
            "write it with --benchmark-json"
        )
    out: dict[str, BenchRecord] = {}
    for i, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict) or not isinstance(bench.get("name"), str):
            raise GateInputError(f"{path}: benchmark #{i} has no name")
        stats = bench.get("stats")
        if not isinstance(stats, dict):
            raise GateInputError(f"{path}: benchmark {bench['name']!r} has no 'stats' object")
        data = stats.get("data")
        if data is not None and not isinstance(data, list):
            raise GateInputError(f"{path}: benchmark {bench['name']!r}: stats.data is not a list")
        samples: list[float] = []
        if isinstance(data, list):
            for v in data:
                n = results.finite_number(v)
                if n is None:
                    raise GateInputError(
                        f"{path}: benchmark {bench['name']!r} has a non-numeric sample {v!r}"
                    )
                samples.append(n)
        extra_info = bench.get("extra_info") or {}
        if not isinstance(extra_info, dict):
            raise GateInputError(
                f"{path}: benchmark {bench['name']!r}: extra_info is not an object"
            )
        extra: dict[str, list[float]] = {}
        for k, v in extra_info.items():
            n = results.finite_number(v)
            if n is not None:
                extra[str(k)] = [n]
        key = results.benchmark_key(str(bench.get("fullname") or bench["name"]))
        options = bench.get("options")
        timer = options.get("timer") if isinstance(options, dict) else None
        if key in out:
            raise GateInputError(f"{path}: benchmark {key!r} appears twice")
        out[key] = BenchRecord(
            key=key,
            name=bench["name"],
            group=str(bench.get("group") or ""),
            samples=samples,
            extra=extra,
            runs=[list(samples)],
            timer=str(timer) if timer else "",
        )
    return out


def load_results(path: Path) -> ResultSet:
    """Load a results folder (or its ``manifest.json``) or a single pytest-benchmark JSON file."""
    if path.is_file() and path.name == "manifest.json":
        path = path.parent
    if path.is_dir():
        manifest_path = path / "manifest.json"
        try:
            manifest = results.check_manifest(_read_json(manifest_path), manifest_path)
            results.require_complete(manifest, manifest_path)  # an incomplete suite never passes
        except results.ResultsFormatError as exc:
            raise GateInputError(str(exc)) from None
        files = manifest["files"]
        if not files:
            raise GateInputError(f"{manifest_path}: 'files' is missing or empty")
        benches: dict[str, BenchRecord] = {}
        for name in files:
            file_path = path / name
            for key, rec in _parse_benchmarks(_read_json(file_path), file_path).items():
                if key in benches:
                    raise GateInputError(f"{file_path}: benchmark {key!r} is also in another file")
                benches[key] = rec
        commit = manifest.get("commit")
        return ResultSet(
            sources=[str(path)],
            environment=dict(manifest.get("environment") or {}),
            benches=benches,
            commit=dict(commit) if isinstance(commit, dict) else {},
            files=[str(path / n) for n in files],
        )
    if not path.exists():
        raise GateInputError(f"{path}: no such results folder or file")
    doc = _read_json(path)
    benches = _parse_benchmarks(doc, path)
    machine = doc.get("machine_info")
    env = environment.from_machine_info(machine) if isinstance(machine, dict) else {}
    commit = doc.get("commit_info")
    return ResultSet(
        sources=[str(path)],
        environment=env,
        benches=benches,
        commit=dict(commit) if isinstance(commit, dict) else {},
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


def load_side(paths: Sequence[Path]) -> tuple[ResultSet, list[str]]:
    """Load and :func:`pool` the runs of one side."""
    return pool([load_results(p) for p in paths])
