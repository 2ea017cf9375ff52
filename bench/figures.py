"""The headline figures, computed once: ``samplemind-bench headline`` and the report both use them.

Every figure here is computed from the benchmarks the one results reader gives
(:func:`bench.results.read_folder`), never from a file read again:

* :func:`median`: a benchmark's median seconds per call (of its raw samples);
* :func:`speedup`: how many times as fast one benchmark is as another (ratio of medians);
* :func:`instruction_rows`, :func:`headline_figures`, :data:`HEADLINES`: instructions per call
  of an ``--instructions`` run beside median time, and the four counts the report and the
  headline lead with (per cache hit over fakeredis with L1 off, per L1 hit, per routing
  decision, per pipeline request); :func:`markdown` renders them.

It also holds the words the report and the headline share for two stream figures:

* :func:`knee_text`: how to name the stream knee (the highest offered rate meeting goodput);
* :func:`display_model`: a local model's name as the report shows it.

It imports the results reader only (no pandas, no feature package), and no feature owns it:
the report (``reports/``), the headline (:mod:`bench.harness.headline`, the stream lines of
:mod:`bench.harness.streams`) and ``python -m bench.instructions.summary`` import it.

>>> rows = [{"suite": "cache", "variant": "hit-msgpack-l1_on", "instructions": 9000.0}]
>>> headline_figures(rows)["instructions per L1 cache hit (msgpack)"]
9000.0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from bench.results import Benchmark, read_folder

__all__ = [
    "HEADLINES",
    "display_model",
    "headline_figures",
    "instruction_rows",
    "knee_text",
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
    read by :func:`~bench.results.read_folder`) or of benchmarks already read, in
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


def display_model(name: str) -> str:
    """A model name as the report shows it: a file path's base name without ``.gguf``.

    >>> display_model("/tmp/gguf/gemma-3-270m-q4_k_m.gguf"), display_model("gemma3:270m")
    ('gemma-3-270m-q4_k_m', 'gemma3:270m')
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base[: -len(".gguf")] if base.lower().endswith(".gguf") else base


def knee_text(knee: float, offered: Sequence[float], generator_limit: float | None = None) -> str:
    """How to name the stream knee: the highest offered rate meeting the goodput criterion.

    A knee at the highest rate offered is no knee ("no knee up to N"); where the load
    generator could not keep its schedule, that rate is its own limit, not the layer's.

    >>> knee_text(40, [10, 20, 40])
    'no knee up to 40 streams/s (the highest rate offered)'
    >>> knee_text(20, [10, 20, 40])
    'knee 20 streams/s'
    >>> knee_text(20, [10, 20, 40], generator_limit=40)
    "no knee up to 20 streams/s: at 40 streams/s the load generator's own limit (arrivals launched late)"
    """
    top = max(offered) if offered else 0.0
    if generator_limit is not None and (not math.isfinite(knee) or knee < generator_limit):
        return (
            f"no knee up to {knee:,.4g} streams/s: at {generator_limit:,.4g} streams/s the load "
            "generator's own limit (arrivals launched late)"
        )
    if not math.isfinite(knee) or knee <= 0:
        return "no offered rate met the goodput criterion (knee below the lowest rate)"
    if knee >= top:
        return f"no knee up to {top:,.4g} streams/s (the highest rate offered)"
    return f"knee {knee:,.4g} streams/s"
