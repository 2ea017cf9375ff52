"""The headline figures, computed once: ``samplemind-bench headline`` and the report both use them.

Every figure here is computed from the benchmarks the one results reader gives
(:func:`bench.harness.results.read_folder`), never from a file read again:

* :func:`median`: a benchmark's median seconds per call (of its raw samples);
* :func:`speedup`: how many times as fast one benchmark is as another (ratio of medians);
* :func:`instruction_rows`, :func:`headline_figures`, :data:`HEADLINES`: instructions per call
  of an ``--instructions`` run beside median time, and the four counts the report and the
  headline lead with (per cache hit over fakeredis with L1 off, per L1 hit, per routing
  decision, per pipeline request); :func:`markdown` renders them.

It imports the results reader only (no pandas, no feature package): the report (``reports/``),
the headline (:mod:`bench.harness.headline`) and ``python -m bench.instructions.summary``
import it.

>>> rows = [{"suite": "cache", "variant": "hit-msgpack-l1_on", "instructions": 9000.0}]
>>> headline_figures(rows)["instructions per L1 cache hit (msgpack)"]
9000.0
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from bench.harness.results import Benchmark, read_folder

__all__ = [
    "HEADLINES",
    "headline_figures",
    "instruction_rows",
    "markdown",
    "median",
    "speedup",
]

HEADLINES: Final = (
    ("instructions per cache hit (fakeredis, msgpack, L1 off)", "cache", "hit-msgpack-l1_off"),
    ("instructions per L1 cache hit (msgpack)", "cache", "hit-msgpack-l1_on"),
    ("instructions per routing decision (chat/speed, healthy)", "router", "chat/speed/healthy"),
    ("instructions per pipeline request (client-side CPU, mock)", "pipeline", "mock-nocache"),
)
"""(label, suite, variant): the first counted benchmark of that suite and variant."""


def median(b: Benchmark) -> float:
    """Median seconds per call of ``b``'s raw samples (never empty: the reader refuses that)."""
    return float(statistics.median(b.samples))


def speedup(slow: Benchmark, fast: Benchmark) -> float:
    """How many times as fast ``fast`` is as ``slow``: ``median(slow) / median(fast)``."""
    return median(slow) / median(fast)


def instruction_rows(source: Path | Iterable[Benchmark]) -> list[dict[str, Any]]:
    """Every counted benchmark (``extra_info["instructions"]``) of a results folder (a path,
    read by :func:`~bench.harness.results.read_folder`) or of benchmarks already read, in
    file order: suite, group, name, variant, instructions per call, median seconds per call."""
    benchmarks = read_folder(source).benchmarks if isinstance(source, Path) else source
    rows: list[dict[str, Any]] = []
    for b in benchmarks:
        info = b.extra_info
        if "instructions" not in info:
            continue
        rows.append(
            {
                "suite": info.get("suite", b.suite),
                "group": b.group or None,
                "name": b.name,
                "variant": info.get("variant"),
                "instructions": float(info["instructions"]),
                "median_s": median(b),
            }
        )
    return rows


def headline_figures(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """``{label: instructions per call}`` for :data:`HEADLINES` (``None`` when not counted)."""
    out: dict[str, float | None] = {}
    for label, suite, variant in HEADLINES:
        match = [r for r in rows if r["suite"] == suite and r["variant"] == variant]
        out[label] = match[0]["instructions"] if match else None
    return out


def markdown(rows: Sequence[dict[str, Any]], *, heading: str = "##") -> str:
    """Headline figures, then the table: instructions per call beside median time."""
    lines = [f"{heading} Instructions per call (callgrind)", ""]
    for label, value in headline_figures(rows).items():
        lines.append(f"- {label}: " + ("not counted" if value is None else f"{value:,.0f}"))
    lines += [
        "",
        "| benchmark | instructions/call | median time | instructions/ns |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        t = r["median_s"]
        per_ns = f"{r['instructions'] / (t * 1e9):.2f}" if t else "n/a"
        time_text = f"{t * 1e6:,.2f} µs" if t else "n/a"
        lines.append(f"| {r['name']} | {r['instructions']:,.1f} | {time_text} | {per_ns} |")
    return "\n".join(lines) + "\n"
