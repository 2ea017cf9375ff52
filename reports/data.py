"""Results folders → tidy pandas frames.

A results folder is what ``samplemind-bench run --out DIR`` writes (format
``samplemind-bench-results``): ``manifest.json`` plus one pytest-benchmark JSON
file per suite, with the raw per-call samples of every benchmark in
``stats.data`` (seconds).

:func:`load_run` reads and validates one folder; :func:`tidy` turns runs into one
row per benchmark × parameters × metric. Time metrics are recomputed from the raw
samples (median, mean, p95, p99, min, max), never copied from the summary that
pytest-benchmark wrote, so every figure in a report comes from the same data.
Every numeric ``extra_info`` figure becomes a metric too.

The folder is read and checked by the one results reader
(:func:`bench.results.read_folder`, plain or ``.json.gz`` suite files): anything
unexpected (a missing manifest, corrupt JSON or gzip, a foreign or future format, a benchmark
without raw samples) raises its :class:`ReportInputError` (the reader's
``ResultsFormatError``) whose message names the offending file.

>>> metric_unit("p99_ms"), metric_unit("gbps"), metric_unit("hit_rate")
('ms', 'GB/s', 'fraction')
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from bench import results
from bench.results import FORMAT, SUPPORTED_VERSIONS
from reports._errors import ReportInputError

__all__ = [
    "FORMAT",
    "SUPPORTED_VERSIONS",
    "TIDY_COLUMNS",
    "Benchmark",
    "ReportInputError",
    "Run",
    "compare_runs",
    "load_run",
    "load_runs",
    "metric_unit",
    "requests_frame",
    "tidy",
]


TIDY_COLUMNS: Final = [
    "run",
    "suite",
    "group",
    "subject",
    "variant",
    "benchmark",
    "fullname",
    "params",
    "metric",
    "value",
    "unit",
    "mode",
    "quick",
    "created",
    "commit_id",
    "commit_dirty",
    "cpu",
    "cores",
    "python",
    "platform",
]
"""The columns of :func:`tidy`'s frame (and of ``data.csv``), in order."""

_TIME_METRICS: Final = ("time_median", "time_mean", "time_p95", "time_p99", "time_min", "time_max")
_UNITS: Final = {
    "gbps": "GB/s",
    "bytes": "B",
    "req_per_s": "req/s",
    "concurrency": "connections",
    "hit_rate": "fraction",
    "repeat_fraction": "fraction",
    "success_rate": "fraction",
    "fault_rate": "fraction",
    "failure_rate": "fraction",
    "provider_calls": "calls",
    "samples": "samples",
}


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of one suite file, with its raw samples (seconds per call)."""

    suite: str
    file: str
    name: str
    fullname: str
    group: str
    params: Mapping[str, Any]
    param: str
    data: np.ndarray
    extra_info: Mapping[str, Any]
    record: results.Benchmark = field(repr=False, compare=False)
    """The benchmark as the results reader gave it (for :mod:`bench.figures`, whose
    computations the report shares with the headline)."""

    @property
    def key(self) -> str:
        """Identity across runs: ``suite::fullname``."""
        return f"{self.suite}::{self.fullname}"

    @property
    def subject(self) -> str:
        """``extra_info["subject"]``, else the part of the group after ``suite/``."""
        value = self.extra_info.get("subject")
        if isinstance(value, str) and value:
            return value
        return self.group.split("/", 1)[1] if "/" in self.group else ""

    @property
    def variant(self) -> str:
        value = self.extra_info.get("variant")
        return str(value) if value is not None else ""

    def time_stats(self) -> dict[str, float]:
        """Median, mean, p95, p99, min and max of the raw samples, in seconds."""
        d = self.data
        return {
            "time_median": float(np.median(d)),
            "time_mean": float(np.mean(d)),
            "time_p95": float(np.percentile(d, 95)),
            "time_p99": float(np.percentile(d, 99)),
            "time_min": float(np.min(d)),
            "time_max": float(np.max(d)),
        }

    def numeric_extra(self) -> dict[str, float]:
        """Every finite numeric ``extra_info`` figure (booleans and lists excluded)."""
        out: dict[str, float] = {}
        for k, v in self.extra_info.items():
            n = results.finite_number(v)
            if n is not None:
                out[k] = n
        return out


@dataclass(frozen=True)
class Run:
    """One results folder: its manifest and its benchmarks."""

    path: Path
    label: str
    manifest: Mapping[str, Any]
    benchmarks: tuple[Benchmark, ...] = field(default=())
    records: tuple[results.Benchmark, ...] = field(default=(), repr=False)
    """The benchmarks as the results reader gave them, in file order (for
    :mod:`bench.figures`, the figures the headline computes the same way)."""

    @property
    def environment(self) -> Mapping[str, Any]:
        env = self.manifest.get("environment")
        return env if isinstance(env, Mapping) else {}

    @property
    def commit(self) -> Mapping[str, Any]:
        c = self.manifest.get("commit")
        return c if isinstance(c, Mapping) else {}

    @property
    def mode(self) -> str:
        return str(self.manifest.get("mode", ""))

    @property
    def quick(self) -> bool:
        return bool(self.manifest.get("quick", False))

    def suite(self, name: str) -> list[Benchmark]:
        return [b for b in self.benchmarks if b.suite == name]


def metric_unit(metric: str) -> str:
    """The unit of a metric, from its name (``*_ms`` → ms, ``*_us`` → µs, ...)."""
    if metric.startswith("time_"):
        return "s"
    if metric in _UNITS:
        return _UNITS[metric]
    for suffix, unit in (
        ("_ms", "ms"),
        ("_us", "us"),
        ("_s", "s"),
        ("_usd", "USD"),
        ("_mib", "MiB"),
    ):
        if metric.endswith(suffix):
            return unit
    if metric.endswith("_rate") or metric.endswith("_fraction"):
        return "fraction"
    return ""


def _benchmark(b: results.Benchmark) -> Benchmark:
    """The report's view of a benchmark read (and checked) by :mod:`bench.results`."""
    suite_name = b.extra_info.get("suite")
    return Benchmark(
        suite=suite_name if isinstance(suite_name, str) and suite_name else b.suite,
        file=b.path.name,
        name=b.name,
        fullname=b.fullname,
        group=b.group or b.suite,
        params=b.params,
        param=b.param,
        data=np.asarray(b.samples, dtype=float),
        extra_info=b.extra_info,
        record=b,
    )


def load_run(path: Path | str, label: str | None = None) -> Run:
    """Read one results folder (or its ``manifest.json``) through the one reader,
    :func:`bench.results.read_folder`; its :class:`ReportInputError` names the file."""
    folder = results.read_folder(Path(path))
    benchmarks = [_benchmark(b) for f in sorted(folder.files, key=_file_name) for b in f.benchmarks]
    benchmarks.sort(key=lambda b: (b.suite, b.fullname))
    return Run(
        path=folder.path,
        label=label or folder.path.name,
        manifest=folder.manifest,
        benchmarks=tuple(benchmarks),
        records=tuple(folder.benchmarks),
    )


def _file_name(f: results.SuiteFile) -> str:
    return f.path.name


def load_runs(paths: Sequence[Path | str]) -> list[Run]:
    """Load several folders; labels are the folder names, made unique with ``#2``, ``#3``..."""
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for p in paths:
        base = Path(p).resolve()
        if base.name == "manifest.json":
            base = base.parent
        name = base.name or "run"
        seen[name] = seen.get(name, 0) + 1
        runs.append(load_run(p, name if seen[name] == 1 else f"{name}#{seen[name]}"))
    return runs


def _params_text(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def tidy(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per run × benchmark × metric, with environment and commit columns."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        env, commit = run.environment, run.commit
        common = {
            "run": run.label,
            "mode": run.mode,
            "quick": run.quick,
            "created": str(run.manifest.get("created", "")),
            "commit_id": commit.get("id") or "",
            "commit_dirty": commit.get("dirty"),
            "cpu": str(env.get("cpu", "")),
            "cores": env.get("cores"),
            "python": str(env.get("python", "")),
            "platform": str(env.get("platform", "")),
        }
        for b in run.benchmarks:
            ident = {
                "suite": b.suite,
                "group": b.group,
                "subject": b.subject,
                "variant": b.variant,
                "benchmark": b.name,
                "fullname": b.fullname,
                "params": _params_text(b.params),
            }
            metrics = {**b.time_stats(), "samples": float(b.data.size), **b.numeric_extra()}
            for metric in sorted(metrics):
                rows.append(
                    {
                        **common,
                        **ident,
                        "metric": metric,
                        "value": metrics[metric],
                        "unit": metric_unit(metric),
                    }
                )
    frame = pd.DataFrame(rows, columns=TIDY_COLUMNS)
    return frame.reset_index(drop=True)


def requests_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """The pipeline suite's per-request records: one row per replayed request."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        for b in run.benchmarks:
            reqs = b.extra_info.get("requests")
            if not isinstance(reqs, list):
                continue
            stack = str(b.extra_info.get("stack", b.variant or b.subject))
            rf = b.extra_info.get("repeat_fraction")
            for j, r in enumerate(reqs):
                if not isinstance(r, dict) or not isinstance(r.get("latency_ms"), int | float):
                    raise ReportInputError(
                        run.path / b.file,
                        f"benchmark {b.name!r}: extra_info.requests[{j}] has no numeric latency_ms",
                    )
                rows.append(
                    {
                        "run": run.label,
                        "fullname": b.fullname,
                        "stack": stack,
                        "repeat_fraction": float(rf) if isinstance(rf, int | float) else np.nan,
                        "i": int(r.get("i", j)),
                        "latency_ms": float(r["latency_ms"]),
                        "provider": str(r.get("provider") or "unknown"),
                        "cached": bool(r.get("cached", False)),
                        "cost_usd": float(r.get("cost_usd") or 0.0),
                    }
                )
    cols = [
        "run",
        "fullname",
        "stack",
        "repeat_fraction",
        "i",
        "latency_ms",
        "provider",
        "cached",
        "cost_usd",
    ]
    return pd.DataFrame(rows, columns=cols)


def compare_runs(runs: Sequence[Run]) -> pd.DataFrame:
    """Benchmarks of every later run against the first one.

    One row per benchmark key and later run: ``status`` is ``added`` (only in the
    later run), ``removed`` (only in the first) or ``common``; for common ones
    ``median_ratio`` is later median / first median (below 1 = faster).
    """
    cols = [
        "run",
        "baseline",
        "suite",
        "key",
        "status",
        "baseline_median_s",
        "median_s",
        "median_ratio",
    ]
    if len(runs) < 2:
        return pd.DataFrame([], columns=cols)
    base = runs[0]
    base_map = {b.key: b for b in base.benchmarks}
    rows: list[dict[str, Any]] = []
    for run in runs[1:]:
        cur = {b.key: b for b in run.benchmarks}
        for key in sorted(set(base_map) | set(cur)):
            a, b = base_map.get(key), cur.get(key)
            am = float(np.median(a.data)) if a is not None else np.nan
            bm = float(np.median(b.data)) if b is not None else np.nan
            status = (
                "common"
                if a is not None and b is not None
                else ("added" if b is not None else "removed")
            )
            suite = (b or a).suite  # type: ignore[union-attr]
            rows.append(
                {
                    "run": run.label,
                    "baseline": base.label,
                    "suite": suite,
                    "key": key,
                    "status": status,
                    "baseline_median_s": am,
                    "median_s": bm,
                    "median_ratio": bm / am if status == "common" and am > 0 else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=cols)
