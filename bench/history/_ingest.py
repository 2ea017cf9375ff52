"""Results folder → rows for the history store.

This is the one place where :mod:`bench.history` reads results folders; the manifest goes through
the harness's own loader (:func:`bench.harness.results.read_manifest`), so a format change there is a
change here only.

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
from bench.harness import results as results_format

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


def _points(doc: Any, path: Path, suite: str) -> list[Point]:
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise HistoryInputError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    out: list[Point] = []
    for i, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict) or not isinstance(bench.get("name"), str):
            raise HistoryInputError(f"{path}: benchmark #{i} has no name")
        name = results_format.benchmark_key(str(bench.get("fullname") or bench["name"]))
        params = json.dumps(bench.get("params") or {}, sort_keys=True, default=str)
        stats = bench.get("stats")
        data = stats.get("data") if isinstance(stats, dict) else None
        if not isinstance(data, list) or not data:
            raise HistoryInputError(f"{path}: benchmark {name!r} has no raw samples (stats.data)")
        samples = [_number(v) for v in data]
        if any(s is None for s in samples):
            raise HistoryInputError(f"{path}: benchmark {name!r} has a non-numeric sample")
        clean = [s for s in samples if s is not None]
        lo, hi = median_ci(clean)
        med = float(statistics.median(clean))
        out.append(Point(suite, name, params, "time", med, lo, hi, len(clean)))
        for key, value in dict(bench.get("extra_info") or {}).items():
            v = _number(value)
            if v is not None:
                out.append(Point(suite, name, params, str(key), v))
    return out


def read_run(folder: Path) -> RunRecord:
    """Read one results folder completely (or raise :class:`HistoryInputError` naming it).

    A run that did not finish (stopped, a suite interrupted or not run) is refused; a
    finished run whose suite crashed is read without that suite, named in ``not_stored``
    (the history keeps what was measured; the gate, by contrast, never passes it).
    """
    folder = folder.resolve()
    if not folder.is_dir():
        raise HistoryInputError(f"{folder}: no such results folder")
    try:
        manifest = results_format.read_manifest(folder)
        crashed = results_format.incomplete_suites(manifest)
        if manifest.get("complete") is False or any(w != "crashed" for w in crashed.values()):
            # a run that did not finish (stopped, interrupted, suites not run) is refused
            results_format.require_complete(manifest, folder / "manifest.json")
    except ValueError as exc:  # the message names the folder or its manifest
        raise HistoryInputError(str(exc)) from None
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise HistoryInputError(f"{folder}/manifest.json: 'files' is missing or empty")
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
    points: list[Point] = []
    for name in files:
        path = folder / str(name)
        try:
            raw = path.read_bytes()
            doc = json.loads(raw)
        except FileNotFoundError:
            raise HistoryInputError(f"{path}: listed in the manifest but missing") from None
        except (OSError, ValueError) as exc:
            raise HistoryInputError(f"{path}: not valid JSON ({exc})") from None
        digest.update(str(name).encode() + b"\0" + raw)
        points += _points(doc, path, Path(str(name)).stem)
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
        not_stored=crashed,
    )
