"""Per-suite views of a run, shared by the claims table, the charts and the summary.

Each function takes a :class:`~reports.data.Run` and returns a small pandas frame
(empty when the run has no data for it). Names of subjects and variants are
matched loosely (``"blake3"`` + variant ``"auto"`` or a parameter ``algo=blake3-auto``
is BLAKE3 AUTO), so the builder keeps working when the bench suites rename a
variant; anything it cannot classify is still charted under its own name.

>>> fmt_size(1024), fmt_size(64 * 1024 * 1024), fmt_ratio(3.456), fmt_pct(0.7)
('1 KiB', '64 MiB', '3.5x', '70.0 %')
>>> bootstrap_ci([1.0, 2.0, 3.0, 4.0], 50)[0] <= 2.5 <= bootstrap_ci([1.0, 2.0, 3.0, 4.0], 50)[1]
True
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from scipy import stats  # type: ignore[import-untyped]

from bench import figures

from .data import Benchmark, Run, requests_frame

__all__ = [
    "BOOTSTRAP_SEED",
    "bootstrap_ci",
    "cache_ops",
    "client_table",
    "fingerprint_table",
    "fmt_ms",
    "fmt_pct",
    "fmt_ratio",
    "fmt_size",
    "hashing_table",
    "hit_rate_table",
    "load_bursts",
    "load_curve",
    "load_faults",
    "pipeline_requests",
    "router_faults",
    "router_latency",
    "row_at",
    "transport_kind",
]

BOOTSTRAP_SEED: Final = 20251005
"""Fixed seed: the same input gives the same confidence intervals."""

HASH_ORDER: Final = ["blake3 1 thread", "blake3 AUTO", "sha256", "blake2b", "xxh3_128"]


def fmt_size(n: float) -> str:
    """Bytes in binary units, compact: ``64 B``, ``1 KiB``, ``1.5 MiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_ratio(r: float) -> str:
    return f"{r:.1f}x" if r >= 0.95 else f"{r:.2f}x"


def fmt_pct(f: float) -> str:
    return f"{100 * f:.1f} %"


def fmt_ms(ms: float) -> str:
    if ms < 0.1:
        return f"{ms * 1000:.1f} µs"
    if ms < 10:
        return f"{ms:.2f} ms"
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    q: float,
    *,
    level: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the ``q``-th percentile.

    ``scipy.stats.bootstrap`` (``method="percentile"``); deterministic (fixed seed).
    The number of resamples shrinks for large inputs so that resamples × values stays
    below about 4 million (between 200 and 2,000). No value: ``(nan, nan)``; one value:
    that value twice.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    if x.size == 1:
        return (float(x[0]), float(x[0]))

    def percentile(sample: np.ndarray, axis: int) -> np.ndarray:
        return np.asarray(np.percentile(sample, q, axis=axis))

    result = stats.bootstrap(
        (x,),
        percentile,
        n_resamples=int(max(200, min(2000, 4_000_000 // x.size))),
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    ci = result.confidence_interval
    return (float(ci.low), float(ci.high))


def _words(b: Benchmark) -> str:
    parts = [b.subject, b.variant, b.name, json.dumps(b.params, sort_keys=True, default=str)]
    return " ".join(parts).lower()


def _size(b: Benchmark) -> float | None:
    for src in (b.extra_info, b.params):
        for k in ("bytes", "size", "size_bytes", "nbytes"):
            v = src.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return float(v)
    return None


def hash_label(b: Benchmark) -> str:
    """``blake3 1 thread`` / ``blake3 AUTO`` / ``sha256`` / ... for a hashing benchmark."""
    # bench names the algorithm in ``variant`` (subject = size); accept it in subject or params too
    candidates = [b.variant, b.subject, *(str(v) for v in b.params.values())]
    for c in (x.lower() for x in candidates if x):
        if c.startswith("blake3"):
            auto = "auto" in c or "auto" in b.variant.lower()
            return "blake3 AUTO" if auto else "blake3 1 thread"
        for algo in ("sha256", "blake2b", "xxh3_128"):
            if c.startswith(algo):
                return algo
    return b.variant or b.subject or b.name


def row_at(df: pd.DataFrame, column: str, *, largest: bool = True) -> pd.Series:
    """The row of ``df`` where ``column`` is largest (or smallest); first one on ties."""
    values = df[column].to_numpy(dtype=float)
    return df.iloc[int(np.argmax(values) if largest else np.argmin(values))]


def hashing_table(run: Run) -> pd.DataFrame:
    """label, size (bytes), median_s (:func:`bench.figures.median`), gbps (from that median),
    sorted."""
    rows = []
    for b in run.suite("hashing"):
        size = _size(b)
        if size is None:
            continue
        med = figures.median(b.record)
        rows.append(
            {"label": hash_label(b), "size": size, "median_s": med, "gbps": size / med / 1e9}
        )
    df = pd.DataFrame(rows, columns=["label", "size", "median_s", "gbps"])
    return df.sort_values(["label", "size"]).reset_index(drop=True)


def hash_speedup(run: Run, fast: str, slow: str = "sha256") -> pd.DataFrame:
    """size, ratio: how many times as fast ``fast`` is as ``slow`` at each size both were
    measured at (above 1: ``fast`` is faster), sizes ascending. The ratio is
    :func:`bench.figures.speedup`, the one computation the headline uses too; this function
    only pairs the hashing benchmarks of ``run`` by :func:`hash_label` and size."""
    by_size: dict[str, dict[float, Benchmark]] = {fast: {}, slow: {}}
    for b in run.suite("hashing"):
        size, label = _size(b), hash_label(b)
        if size is not None and label in by_size:
            by_size[label].setdefault(size, b)
    common = sorted(set(by_size[fast]) & set(by_size[slow]))
    ratios = [figures.speedup(by_size[slow][s].record, by_size[fast][s].record) for s in common]
    return pd.DataFrame({"size": common, "ratio": ratios})


def fingerprint_table(run: Run) -> pd.DataFrame:
    """label, canon_us, hash_us, median_us, naive (bool) for fingerprint benchmarks."""
    rows = []
    for b in run.suite("fingerprint"):
        label = b.variant or b.subject or b.name
        canon, hsh = b.extra_info.get("canon_us"), b.extra_info.get("hash_us")
        rows.append(
            {
                "label": label,
                "request": str(
                    b.params.get("request_name") or b.params.get("request") or b.subject
                ),
                "canon_us": float(canon) if isinstance(canon, int | float) else np.nan,
                "hash_us": float(hsh) if isinstance(hsh, int | float) else np.nan,
                "median_us": float(np.median(b.data)) * 1e6,
                "naive": "naive" in _words(b) or "json.dumps" in _words(b),
            }
        )
    cols = ["label", "request", "canon_us", "hash_us", "median_us", "naive"]
    return pd.DataFrame(rows, columns=cols).sort_values("label").reset_index(drop=True)


def cache_ops(run: Run) -> pd.DataFrame:
    """label, op, backend, median_ms, p99_ms (from raw samples) for cache benchmarks."""
    rows = []
    for b in run.suite("cache"):
        op = str(b.params.get("op") or b.subject or b.name)
        backend = str(
            b.extra_info.get("backend") or b.params.get("store") or b.params.get("backend") or ""
        )
        rest = [str(v) for k, v in sorted(b.params.items()) if k not in ("op", "backend", "store")]
        label = " ".join([op, backend, *rest]).strip()
        rows.append(
            {
                "label": label,
                "op": op.lower(),
                "backend": backend,
                "median_ms": float(np.median(b.data)) * 1e3,
                "p99_ms": float(np.percentile(b.data, 99)) * 1e3,
                "floor": "raw" in _words(b) or "floor" in _words(b),
            }
        )
    cols = ["label", "op", "backend", "median_ms", "p99_ms", "floor"]
    return pd.DataFrame(rows, columns=cols).sort_values("label").reset_index(drop=True)


def transport_kind(text: str) -> str:
    """Classify a client benchmark: new-client, raw-aiohttp, aiohttp-transport, http2, http1."""
    t = text.lower()
    if "new" in t:
        return "new-client"
    if "raw" in t:
        return "raw-aiohttp"
    if "aiohttp" in t:
        return "aiohttp-transport"
    if "http2" in t or "h2" in t or "http/2" in t:
        return "http2"
    if "http1" in t or "http/1" in t or "h1" in t or "pool" in t:
        return "http1"
    return t.strip() or "unknown"


def client_table(run: Run) -> pd.DataFrame:
    """kind, label, concurrency, req_per_s, p99_ms for client benchmarks."""
    rows = []
    for b in run.suite("client"):
        if b.variant.endswith("_paired"):  # the interleaved A/B pairs: a ratio, not a curve
            continue
        conc = b.extra_info.get("concurrency", b.params.get("concurrency"))
        if not isinstance(conc, int | float):
            continue
        kind = transport_kind(" ".join([b.subject, b.variant, str(b.params.get("transport", ""))]))
        rps = b.extra_info.get("req_per_s")
        if not isinstance(rps, int | float):
            rps = float(conc) / float(np.median(b.data))  # one call = one request per connection
        p99 = b.extra_info.get("p99_ms")
        if not isinstance(p99, int | float):
            p99 = float(np.percentile(b.data, 99)) * 1e3
        rows.append(
            {
                "kind": kind,
                "label": kind if kind != "unknown" else b.subject,
                "concurrency": int(conc),
                "req_per_s": float(rps),
                "p99_ms": float(p99),
            }
        )
    cols = ["kind", "label", "concurrency", "req_per_s", "p99_ms"]
    return (
        pd.DataFrame(rows, columns=cols)
        .sort_values(["label", "concurrency"])
        .reset_index(drop=True)
    )


def router_latency(run: Run) -> pd.DataFrame:
    """label (task/priority), median_us, p99_us for the router's decision benchmarks."""
    rows = []
    for b in run.suite("router"):
        if "added_latency_ms" in b.extra_info or "success_rate" in b.extra_info:
            continue
        label = "/".join(str(v) for v in b.params.values()) or b.variant or b.name
        rows.append(
            {
                "label": label,
                "median_us": float(np.median(b.data)) * 1e6,
                "p99_us": float(np.percentile(b.data, 99)) * 1e6,
            }
        )
    return (
        pd.DataFrame(rows, columns=["label", "median_us", "p99_us"])
        .sort_values("label")
        .reset_index(drop=True)
    )


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")


def router_faults(run: Run) -> pd.DataFrame:
    """fault_rate, success_rate, added_latency_ms with its 95 % interval (``ci_low_ms``,
    ``ci_high_ms``; NaN when not recorded) and ``within_noise`` for the fallback benchmarks."""
    rows = []
    for b in run.benchmarks:
        ei = b.extra_info
        if "success_rate" not in ei and "added_latency_ms" not in ei:
            continue
        rate = ei.get(
            "fault_rate",
            ei.get("failure_rate", b.params.get("fault_rate", b.params.get("failure_rate"))),
        )
        if not isinstance(rate, int | float):
            continue
        added = _num(ei.get("added_latency_ms"))
        lo, hi = _num(ei.get("added_latency_ci_low_ms")), _num(ei.get("added_latency_ci_high_ms"))
        rows.append(
            {
                "label": b.subject or b.suite,
                "fault_rate": float(rate),
                "success_rate": _num(ei.get("success_rate")),
                "added_latency_ms": added,
                "ci_low_ms": lo,
                "ci_high_ms": hi,
                # no evidence of an added latency: the interval spans 0, or the mean is below 0
                "within_noise": bool(added < 0 or (lo <= 0 <= hi)),
            }
        )
    cols = [
        "label",
        "fault_rate",
        "success_rate",
        "added_latency_ms",
        "ci_low_ms",
        "ci_high_ms",
        "within_noise",
    ]
    return (
        pd.DataFrame(rows, columns=cols).sort_values(["label", "fault_rate"]).reset_index(drop=True)
    )


def hit_rate_table(run: Run) -> pd.DataFrame:
    """suite, label, repeat_fraction, hit_rate for every benchmark that reports both."""
    rows = []
    for b in run.benchmarks:
        rf, hr = b.extra_info.get("repeat_fraction"), b.extra_info.get("hit_rate")
        if isinstance(rf, int | float) and isinstance(hr, int | float):
            stack = str(b.extra_info.get("stack", ""))
            if b.suite == "pipeline" and stack == "before":
                continue  # the before stack has no cache: its 0 % is not a cache figure
            rows.append(
                {
                    "suite": b.suite,
                    "label": b.name,
                    "repeat_fraction": float(rf),
                    "hit_rate": float(hr),
                }
            )
    cols = ["suite", "label", "repeat_fraction", "hit_rate"]
    return (
        pd.DataFrame(rows, columns=cols)
        .sort_values(["repeat_fraction", "label"])
        .reset_index(drop=True)
    )


def pipeline_requests(run: Run) -> pd.DataFrame:
    """The pipeline's per-request records of this run (see :func:`reports.data.requests_frame`)."""
    return requests_frame([run])


def _load_bench(run: Run, subject_prefix: str) -> list[Benchmark]:
    return [b for b in run.suite("load") if b.subject.startswith(subject_prefix)]


def load_bursts(run: Run) -> pd.DataFrame:
    """The load suite's bursts: mode, burst size, warm and cold hit rate vs truth, errors, p99."""
    rows = []
    for b in _load_bench(run, "burst-"):
        x = b.extra_info
        if not isinstance(x.get("burst_size"), int | float):
            continue
        rows.append(
            {
                "mode": str(x.get("mode", "")),
                "burst": int(x["burst_size"]),
                "burst_hit_rate": float(x.get("burst_hit_rate", np.nan)),
                "burst_truth": float(x.get("burst_truth", np.nan)),
                "cold_hit_rate": float(x.get("cold_hit_rate", np.nan)),
                "cold_truth": float(x.get("cold_truth", np.nan)),
                "caller_errors": float(x.get("caller_errors", 0)),
                "p99_ms": float(x.get("p99_ms", np.nan)),
                "req_per_s": float(x.get("req_per_s", np.nan)),
            }
        )
    cols = [
        "mode",
        "burst",
        "burst_hit_rate",
        "burst_truth",
        "cold_hit_rate",
        "cold_truth",
        "caller_errors",
        "p99_ms",
        "req_per_s",
    ]
    return pd.DataFrame(rows, columns=cols).sort_values(["mode", "burst"]).reset_index(drop=True)


def _floats(value: object) -> list[float] | None:
    if not isinstance(value, list):
        return None
    try:
        return [float("nan") if v is None else float(v) for v in value]
    except (TypeError, ValueError):
        return None


def knee_phrase(knee: float, offered: list[float], unit: str = "req/s") -> tuple[str, bool]:
    """How to name a saturation knee, and whether there is one to mark.

    ``knee`` is the highest offered rate that still met the bound. When it is the highest
    rate offered at all, the run never found where latency breaks: "no knee up to N", not a
    knee at N. No rate meeting the bound (knee 0 or missing) says so too.
    """
    top = max(offered) if offered else 0.0
    if np.isnan(knee) or knee <= 0:
        return "no offered rate met the bound (knee below the lowest rate)", False
    if knee >= top:
        return f"no knee up to {top:,.0f} {unit} (the highest rate offered)", False
    return f"knee {knee:,.0f} {unit}", True


def load_curve(run: Run) -> pd.DataFrame:
    """The capacity curve: mode, offered and achieved rate, p50/p99, knee and its bound."""
    rows = []
    for b in _load_bench(run, "knee-"):
        x = b.extra_info
        offered, achieved = (
            _floats(x.get("curve_offered_per_s")),
            _floats(x.get("curve_achieved_per_s")),
        )
        p99, p50 = _floats(x.get("curve_p99_ms")), _floats(x.get("curve_p50_ms"))
        if (
            not offered
            or not achieved
            or not p99
            or not (len(offered) == len(achieved) == len(p99))
        ):
            continue
        for i, rate in enumerate(offered):
            rows.append(
                {
                    "mode": str(x.get("mode", "")),
                    "offered_per_s": rate,
                    "achieved_per_s": achieved[i],
                    "p50_ms": p50[i] if p50 and i < len(p50) else np.nan,
                    "p99_ms": p99[i],
                    "knee_per_s": float(x.get("knee_per_s", np.nan)),
                    "bound_ms": float(x.get("knee_bound_ms", np.nan)),
                }
            )
    cols = ["mode", "offered_per_s", "achieved_per_s", "p50_ms", "p99_ms", "knee_per_s", "bound_ms"]
    return (
        pd.DataFrame(rows, columns=cols)
        .sort_values(["mode", "offered_per_s"])
        .reset_index(drop=True)
    )


def load_faults(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fault schedule: (timeline: mode, t_s, hit_rate, truth, errors; faults: one row each)."""
    timeline, faults = [], []
    for b in _load_bench(run, "faults-"):
        x = b.extra_info
        mode = str(x.get("mode", ""))
        t, hr, tr = (
            _floats(x.get("timeline_t_s")),
            _floats(x.get("timeline_hit_rate")),
            _floats(x.get("timeline_truth")),
        )
        errs = _floats(x.get("timeline_errors"))
        if not t or not hr or not tr or not (len(t) == len(hr) == len(tr)):
            continue
        for i, ts in enumerate(t):
            timeline.append(
                {
                    "mode": mode,
                    "t_s": ts,
                    "hit_rate": hr[i],
                    "truth": tr[i],
                    "errors": errs[i] if errs and i < len(errs) else 0.0,
                }
            )
        for f in x.get("faults") or []:
            if isinstance(f, dict) and isinstance(f.get("start_s"), int | float):
                faults.append(
                    {
                        "mode": mode,
                        "name": str(f.get("name", "?")),
                        "kind": str(f.get("kind", "")),
                        "start_s": float(f["start_s"]),
                        "end_s": float(f["end_s"] if "end_s" in f else f["start_s"]),
                        "caller_errors": float(f.get("caller_errors", 0)),
                        "extra_provider_calls": float(f.get("extra_provider_calls", 0)),
                        "recover_s": float("nan")
                        if f.get("recover_s") is None
                        else float(f["recover_s"]),
                    }
                )
    tcols = ["mode", "t_s", "hit_rate", "truth", "errors"]
    fcols = [
        "mode",
        "name",
        "kind",
        "start_s",
        "end_s",
        "caller_errors",
        "extra_provider_calls",
        "recover_s",
    ]
    return pd.DataFrame(timeline, columns=tcols), pd.DataFrame(faults, columns=fcols)
