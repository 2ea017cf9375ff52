"""Results folder → rows for the history store.

This is the one place where :mod:`bench.history` reads results folders, through the harness's one
reader (:func:`bench.results.read_folder`: manifest and suite files, plain or ``.json.gz``),
so a format change there is a change here only.

A folder becomes one :class:`RunRecord`: its identity (``run_key``, a SHA-256 over the manifest
and every suite file, so the same folder added twice is the same run), its commit, dirty flag,
creation time, machine (an environment fingerprint over :data:`bench.environment.FIELDS`) and one
:class:`Point` per benchmark x parameters x metric:

``time``
    median seconds per call of the raw samples (``stats.data``), with a distribution-free 95 %
    confidence interval of the median (order statistics), and the number of samples.
every numeric ``extra_info`` figure
    e.g. ``hit_rate``, ``gbps``, ``instructions`` where a suite records them; one value, no CI.

Anything unexpected raises :class:`HistoryInputError` naming the folder and file; nothing is
returned half-read.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import environment as env_fingerprint
from bench import results as results_format

__all__ = [
    "HistoryError",
    "HistoryInputError",
    "Point",
    "RunRecord",
    "machine_fingerprint",
    "median_ci",
    "read_run",
]


class HistoryError(Exception):
    """A history command cannot do what it was asked (bad input, unreachable database).

    A harness error, not one of the layer's (``samplemind_core``'s tree is for its callers)."""


class HistoryInputError(HistoryError, ValueError):
    """A results folder is missing, corrupt or foreign; the message names it."""


@dataclass(frozen=True, slots=True)
class Point:
    """One figure of one benchmark in one run."""

    suite: str
    benchmark: str
    params: str
    """Canonical JSON of the benchmark's parameters (``"{}"`` when it has none)."""
    metric: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 1


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One results folder, ready to store."""

    run_key: str
    source: str
    commit: str | None
    dirty: bool
    created: datetime
    machine: str
    machine_label: str
    environment: dict[str, Any]
    mode: str
    quick: bool
    points: list[Point] = field(default_factory=list)
    not_stored: dict[str, str] = field(default_factory=dict)
    """Suites of a finished run that crashed (suite -> why): stored without them, said so."""


def machine_fingerprint(environment: dict[str, Any]) -> tuple[str, str]:
    """``(fingerprint, label)`` of an environment: one history series per machine.

    Only the fields that must match for timings to be comparable (:data:`bench.environment.FIELDS`)
    count; package versions change over a history and are stored, not keyed on.
    """
    fields = {f: environment.get(f) for f in env_fingerprint.FIELDS}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    label = " · ".join(f"{f} {fields[f]}" for f in env_fingerprint.FIELDS if fields[f] is not None)
    return digest, label or "unknown machine"


def median_ci(samples: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (the whole range below 6 samples).

    The ranks are ``n/2 -+ z sqrt(n)/2`` (the normal approximation of the binomial), rounded
    outwards, so the interval errs on the wide side.

    >>> median_ci([float(x) for x in range(1, 101)])
    (40.0, 61.0)
    """
    xs = sorted(samples)
    n = len(xs)
    if n < 6:
        return xs[0], xs[-1]
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * math.sqrt(n) / 2
    lo = max(math.floor(n / 2 - half), 1)
    hi = min(math.ceil(n / 2 + half) + 1, n)
    return xs[lo - 1], xs[hi - 1]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _created(raw: Any, where: Path) -> datetime:
    try:
        created = datetime.fromisoformat(str(raw))
    except ValueError:
        raise HistoryInputError(f"{where}: 'created' is not an ISO-8601 time: {raw!r}") from None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _points(benchmarks: tuple[results_format.Benchmark, ...], suite: str) -> list[Point]:
    out: list[Point] = []
    for b in benchmarks:
        params = json.dumps(dict(b.params), sort_keys=True, default=str)
        clean = list(b.samples)
        lo, hi = median_ci(clean)
        med = float(statistics.median(clean))
        out.append(Point(suite, b.fullname, params, "time", med, lo, hi, len(clean)))
        for key, value in b.extra_info.items():
            v = _number(value)
            if v is not None:
                out.append(Point(suite, b.fullname, params, str(key), v))
    return out


def read_run(folder: Path) -> RunRecord:
    """Read one results folder completely (or raise :class:`HistoryInputError` naming it).

    Read through the one results reader (:func:`bench.results.read_folder`, plain or
    ``.json.gz`` suite files, the same checks and messages as every command). A run that did
    not finish (stopped, a suite interrupted or not run) is refused; a finished run whose suite
    crashed is read without that suite, named in ``not_stored`` (the history keeps what was
    measured; the gate, by contrast, never passes it).
    """
    folder = folder.resolve()
    if not folder.is_dir():
        raise HistoryInputError(f"{folder}: no such results folder")
    try:
        read = results_format.read_folder(folder, allow_crashed=True)
    except results_format.ResultsFormatError as exc:  # the message names the folder or file
        raise HistoryInputError(str(exc)) from exc
    manifest = read.manifest
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
    points: list[Point] = []
    for sf, name in zip(read.files, manifest["files"], strict=True):
        # the JSON text (decompressed): a version-1 folder keeps the run key it always had
        digest.update(str(name).encode() + b"\0" + sf.content)
        points += _points(sf.benchmarks, sf.suite)
    env = manifest.get("environment")
    environment = dict(env) if isinstance(env, dict) else {}
    machine, label = machine_fingerprint(environment)
    raw_commit = manifest.get("commit")
    commit: dict[str, Any] = raw_commit if isinstance(raw_commit, dict) else {}
    raw_sha = commit.get("id")
    sha = raw_sha if isinstance(raw_sha, str) and raw_sha else None
    return RunRecord(
        run_key=digest.hexdigest(),
        source=str(folder),
        commit=sha,
        dirty=bool(commit.get("dirty")),
        created=_created(manifest.get("created"), folder / "manifest.json"),
        machine=machine,
        machine_label=label,
        environment=environment,
        mode=str(manifest.get("mode") or ""),
        quick=bool(manifest.get("quick")),
        points=points,
        not_stored=read.not_read,
    )
