"""Aggregate: turn raw samples into the domain figures stored in ``extra_info``.

Pure functions over lists of seconds; no timing, no I/O. The keys they return
are the ones the results-folder contract names (``p50_ms``, ``req_per_s``,
``gbps``, ...), so reports and the gate read them without guessing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = [
    "gbps",
    "latency_figures",
    "percentile",
    "rate_figures",
    "safe_ratio",
]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation (numpy's default method).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([5.0], 99)
    5.0
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def latency_figures(latencies_s: Sequence[float]) -> dict[str, float]:
    """``p50_ms``, ``p95_ms``, ``p99_ms`` of per-call latencies given in seconds."""
    if not latencies_s:
        return {}
    return {
        "p50_ms": percentile(latencies_s, 50) * 1e3,
        "p95_ms": percentile(latencies_s, 95) * 1e3,
        "p99_ms": percentile(latencies_s, 99) * 1e3,
    }


def rate_figures(per_call_s: Sequence[float]) -> dict[str, float]:
    """``req_per_s`` from seconds per request (one value per round): total calls / total time.

    >>> rate_figures([0.5, 0.5])
    {'req_per_s': 2.0}
    """
    total = sum(per_call_s)
    if not per_call_s or total <= 0:
        return {}
    return {"req_per_s": len(per_call_s) / total}


def gbps(n_bytes: int, seconds: float) -> float:
    """Throughput in GB/s (10^9 bytes per second).

    >>> gbps(2_000_000_000, 1.0)
    2.0
    """
    if seconds <= 0:
        raise ValueError("seconds must be > 0")
    return n_bytes / seconds / 1e9


def safe_ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or ``None`` when either is missing or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def median_of(values: Sequence[float]) -> float | None:
    """The median, ``None`` for no values."""
    return statistics.median(values) if values else None


def clean(info: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values (the JSON keeps only figures that apply)."""
    return {k: v for k, v in info.items() if v is not None}
