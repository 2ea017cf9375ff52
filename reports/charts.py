"""Charts of one run (matplotlib, Agg backend, headless).

Each ``chart_*`` function returns a :class:`Chart` (a figure with a title, labelled
axes with units, and a one-line caption whose numbers are computed from the
data) or an :class:`Omitted` note when the run has no data for it: a chart is
never drawn empty. :func:`build_charts` runs them all; :func:`save_chart` writes
PNG and SVG with no timestamps in them, so the same input gives the same files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bench.figures import headline_figures, instruction_rows

from .analysis import (
    HASH_ORDER,
    bootstrap_ci,
    cache_ops,
    client_table,
    fingerprint_table,
    fmt_ms,
    fmt_pct,
    fmt_ratio,
    fmt_size,
    hash_speedup,
    hashing_table,
    hit_rate_table,
    knee_phrase,
    load_bursts,
    load_curve,
    load_faults,
    pipeline_requests,
    router_faults,
    router_latency,
    row_at,
)
from .claims import HTTP2_COMMAND
from .data import Run
from .provenance import suites_label

__all__ = ["Chart", "Omitted", "build_charts", "save_chart", "with_chart_source"]

plt.rcParams.update(
    {
        "svg.hashsalt": "samplemind-report",
        "svg.fonttype": "none",
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "figure.dpi": 100,
    }
)

COLORS: Final = {"before": "#b0b0b0", "after": "#1f77b4"}


@dataclass
class Chart:
    """A drawn chart: ``name`` is the file stem (``NAME.png``, ``NAME.svg``)."""

    name: str
    title: str
    caption: str
    figure: Figure


@dataclass(frozen=True)
class Omitted:
    """A chart left out, and why."""

    name: str
    title: str
    reason: str


Result = Chart | Omitted


def _fig(title: str, ncols: int = 1, width: float = 8.0, height: float = 4.2) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    fig.suptitle(title, fontweight="bold")
    return fig, axes[0]


NARROW_RANGE: Final = 10.0
"""A positive axis whose largest value is under this many times its smallest is drawn
linear: a log axis would stretch a small spread and label it like "4.55×10⁰"."""


def _plain(v: float, _pos: object = None) -> str:
    return f"{v:g}"


def _value_axis(ax: Any, values: Any, label: str) -> None:
    """Linear for a narrow positive range, else log with plain tick labels (no ×10ⁿ)."""
    vals = np.asarray([float(v) for v in values if float(v) > 0])
    if vals.size and float(vals.max()) / float(vals.min()) >= NARROW_RANGE:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
        ax.set_ylabel(f"{label} (log)")
    else:
        ax.set_ylabel(label)


def _plain_log_x(ax: Any) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))


def _finish(fig: Figure) -> None:
    fig.tight_layout()


Bars = tuple[Any, str, str | None]
"""One segment of :func:`_hbars`: values, colour, legend label (``None``: not in the legend)."""


def _hbars(
    ax: Any,
    labels: Any,
    bars: list[Bars],
    *,
    xlabel: str,
    ylabel: str,
    p99: Any = None,
    claim: tuple[float, str] | None = None,
    log: bool = False,
    fontsize: int = 7,
) -> None:
    """Horizontal bars, first label on top.

    ``bars`` are segments stacked left to right; ``p99`` adds a black tick per bar;
    ``claim`` = ``(x, text)`` draws a red dashed line at ``x``; ``log`` makes the value
    axis logarithmic. A legend is drawn when any element has a label.
    """
    y = np.arange(len(labels))
    left = None
    for values, color, label in bars:
        kw: dict[str, Any] = {} if label is None else {"label": label}
        if left is None:
            ax.barh(y, values, color=color, **kw)
        else:
            ax.barh(y, values, left=left, color=color, **kw)
        left = values if left is None else left + values
    if p99 is not None:
        ax.plot(p99, y, "k|", ms=10, label="p99")
    if claim is not None:
        ax.axvline(claim[0], color="red", ls="--", label=claim[1])
    if log:
        ax.set_xscale("log")
    ax.set_yticks(y, labels, fontsize=fontsize)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if any(label is not None for _, _, label in bars) or p99 is not None or claim is not None:
        ax.legend(fontsize=8)


def save_chart(chart: Chart, out: Path) -> tuple[Path, Path]:
    """Write ``out/NAME.png`` and ``out/NAME.svg`` (deterministic: no dates), close the figure
    (also when writing fails)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        png, svg = out / f"{chart.name}.png", out / f"{chart.name}.svg"
        chart.figure.savefig(png, format="png", dpi=100, metadata={"Software": None})
        chart.figure.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    finally:
        plt.close(chart.figure)
    return png, svg


# --- instruction counts ---------------------------------------------------------------------


def instruction_headlines(rows: list[dict[str, Any]]) -> str:
    """The headline counts as one sentence (``not counted`` where a benchmark was not)."""
    parts = [
        f"{label}: {'not counted' if v is None else f'{v:,.0f}'}"
        for label, v in headline_figures(rows).items()
    ]
    return "; ".join(parts)


def chart_instructions(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "instructions", "Instructions per call (callgrind) beside wall time"
    rows = instruction_rows(run.records)
    if not rows:
        return Omitted(
            name, title, "no instruction counts in this run (samplemind-bench run --instructions)"
        )
    labels = [f"{r['suite']}: {str(r['name']).removeprefix('test_')}" for r in rows]
    counts = np.array([r["instructions"] for r in rows], dtype=float)
    times = np.array(
        [np.nan if r["median_s"] is None else r["median_s"] * 1e6 for r in rows], dtype=float
    )
    fig, axes = _fig(title, ncols=2, width=11, height=1.6 + 0.17 * len(rows))
    _hbars(
        axes[0],
        labels,
        [(counts, "#1f77b4", None)],
        log=True,
        xlabel="instructions per call (log)",
        ylabel="benchmark",
        fontsize=6,
    )
    _hbars(
        axes[1],
        [""] * len(rows),
        [(times, "#ff7f0e", None)],
        log=True,
        xlabel="median wall time per call (µs, log)",
        ylabel="",
        fontsize=6,
    )
    _finish(fig)
    caption = f"{len(rows)} counted benchmarks. " + instruction_headlines(rows) + "."
    return Chart(name, title, caption, fig)


# --- pipeline -------------------------------------------------------------------------------


def chart_pipeline_latency(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "pipeline_latency", "Pipeline latency before vs after (95 % bootstrap CI)"
    req = pipeline_requests(run)
    stacks = set(req["stack"])
    if not {"before", "after"} <= stacks:
        return Omitted(
            name, title, "no before/after pipeline replay with per-request records in this run"
        )
    groups: list[tuple[str, pd.DataFrame]] = [("all", req)]
    for prov in sorted(req.provider.unique()):
        sub = req[req.provider == prov]
        groups.append((f"{prov}\nuncached", sub[~sub.cached]))
        if sub.cached.any():
            groups.append((f"{prov}\ncached", sub[sub.cached]))
    fig, axes = _fig(title, ncols=3, width=14, height=4.8)
    width = 0.4
    for ax, q in zip(axes, (50, 95, 99), strict=True):
        for k, stack in enumerate(("before", "after")):
            xs, ys, lo, hi = [], [], [], []
            for gi, (_, g) in enumerate(groups):
                lat = g[g["stack"] == stack].latency_ms.to_numpy()
                if lat.size == 0:
                    continue
                v = float(np.percentile(lat, q))
                a, b = bootstrap_ci(lat, q)
                xs.append(gi + (k - 0.5) * width)
                ys.append(v)
                lo.append(max(v - a, 0.0))
                hi.append(max(b - v, 0.0))
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=COLORS[stack], label=stack)
        ax.set_yscale("log")
        ax.set_title(f"p{q}")
        ax.set_xticks(
            range(len(groups)), [g for g, _ in groups], rotation=45, ha="right", fontsize=7
        )
        ax.set_ylabel("latency per request (ms, log)")
        ax.set_xlabel("provider / cache state")
    axes[0].legend()
    _finish(fig)
    lat_b = req[req["stack"] == "before"].latency_ms.to_numpy()
    lat_a = req[req["stack"] == "after"].latency_ms.to_numpy()
    cached = req[(req["stack"] == "after") & req.cached].latency_ms.to_numpy()
    caption = (
        f"All {len(lat_a)} requests: p50 {fmt_ms(float(np.median(lat_b)))} before → {fmt_ms(float(np.median(lat_a)))} after "
        f"({fmt_ratio(float(np.median(lat_b) / np.median(lat_a)))} faster), p99 {fmt_ms(float(np.percentile(lat_b, 99)))} → "
        f"{fmt_ms(float(np.percentile(lat_a, 99)))}"
    )
    if cached.size:
        caption += f"; cached requests p50 {fmt_ms(float(np.median(cached)))}"
    return Chart(name, title, caption + ".", fig)


def chart_hit_rate_vs_repeat(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "hit_rate_vs_repeat", "Cache hit rate vs the workload's repeat fraction"
    t = hit_rate_table(run)
    if t.empty:
        return Omitted(name, title, "no benchmark reports both hit_rate and repeat_fraction")
    fig, axes = _fig(title, width=6.5, height=4.6)
    ax = axes[0]
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="ceiling: hit rate = repeat fraction")
    for suite, g in t.groupby("suite", sort=True):
        ax.plot(g.repeat_fraction * 100, g.hit_rate * 100, "o", label=f"{suite} suite")
    ax.lines[0].set_data([0, 100], [0, 100])
    ax.axhspan(60, 80, color="green", alpha=0.08, label="claimed 60-80 %")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("workload repeat fraction (%)")
    ax.set_ylabel("measured hit rate (%)")
    ax.legend(loc="upper left", fontsize=8)
    _finish(fig)
    gap = float((t.repeat_fraction - t.hit_rate).mean()) * 100
    pts = ", ".join(
        f"{fmt_pct(float(h))} at {fmt_pct(float(f))}"
        for h, f in zip(t.hit_rate.head(4), t.repeat_fraction.head(4), strict=True)
    )
    caption = (
        f"Hit rate vs repeat fraction: {pts}; mean gap to the ceiling {gap:.1f} percentage points."
    )
    return Chart(name, title, caption, fig)


def chart_hit_rate_replay(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "hit_rate_replay", "Cumulative cache hit rate over a replay"
    req = pipeline_requests(run)
    after = req[req["stack"] == "after"]
    if after.empty:
        return Omitted(name, title, "no after-stack pipeline replay with per-request records")
    fig, axes = _fig(title, width=8, height=4.2)
    ax = axes[0]
    parts = []
    for fullname, g in after.groupby("fullname", sort=True):
        g = g.sort_values("i")
        n = np.arange(1, len(g) + 1)
        cum = np.cumsum(g.cached.to_numpy()) / n
        ax.plot(n, cum * 100, label=str(fullname).split("::")[-1])
        rf = g.repeat_fraction.iloc[0]
        if np.isfinite(rf):
            ax.axhline(rf * 100, ls=":", color="grey")
        over = np.nonzero(cum >= 0.6)[0]
        first = f", ≥ 60 % from request {int(over[0]) + 1}" if over.size else ", never ≥ 60 %"
        parts.append(f"{fmt_pct(float(cum[-1]))} after {len(g)} requests{first}")
    ax.axhspan(60, 80, color="green", alpha=0.08)
    ax.set_xlabel("requests replayed")
    ax.set_ylabel("cumulative hit rate (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    _finish(fig)
    caption = (
        "Cumulative hit rate " + "; ".join(parts[:3]) + " (dotted: the workload's repeat fraction)."
    )
    return Chart(name, title, caption, fig)


# --- components -----------------------------------------------------------------------------


def chart_hashing(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "hashing_throughput", "Hashing throughput vs input size"
    t = hashing_table(run)
    if t.empty:
        return Omitted(name, title, "no hashing benchmarks in this run")
    fig, axes = _fig(title, width=8, height=4.8)
    ax = axes[0]
    labels = [lab for lab in HASH_ORDER if lab in set(t.label)] + sorted(
        set(t.label) - set(HASH_ORDER)
    )
    for lab in labels:
        g = t[t.label == lab]
        ax.plot(g["size"], g.gbps, "o-", label=lab, ms=3)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted(set(t["size"]))
    ax.set_xticks(sizes, [fmt_size(float(s)) for s in sizes], fontsize=7, rotation=30)
    ax.minorticks_off()
    ax.set_xlabel("input size (bytes, log)")
    ax.set_ylabel("throughput (GB/s, log, from median time)")
    ax.legend(fontsize=8)
    _finish(fig)
    sp = hash_speedup(run, "blake3 1 thread")
    if sp.empty:
        best = row_at(t, "gbps")
        caption = (
            f"Fastest: {best.label} at {best.gbps:.2f} GB/s ({fmt_size(float(best['size']))})."
        )
    else:
        parts = [
            f"{fmt_ratio(float(r))} at {fmt_size(float(s))}"
            for r, s in zip(sp.ratio, sp["size"], strict=True)
        ]
        if len(parts) > 4:
            parts = [parts[0], *[p for p in parts if " 1 KiB" in p][:1], parts[-1]]
        caption = "BLAKE3 (1 thread) vs SHA-256 speed: " + ", ".join(dict.fromkeys(parts)) + "."
    return Chart(name, title, caption, fig)


def chart_fingerprint(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "fingerprint_split", "Fingerprint cost: canonicalisation vs hashing"
    t = fingerprint_table(run).dropna(subset=["canon_us", "hash_us"])
    if t.empty:
        return Omitted(name, title, "no fingerprint benchmark reports canon_us and hash_us")
    requests = sorted(set(t.request))
    shown = "1KB" if "1KB" in requests else requests[0]  # one request size: the cache-key case
    t = t[t.request == shown]
    title = f"{title} ({shown} request)"
    t = t.sort_values(["naive", "label"], ascending=[False, True]).reset_index(drop=True)
    fig, axes = _fig(title, width=8, height=1.2 + 0.45 * len(t))
    _hbars(
        axes[0],
        t.label,
        [(t.canon_us, "#ff7f0e", "canonicalise (serialise)"), (t.hash_us, "#1f77b4", "hash")],
        xlabel="time per fingerprint (µs)",
        ylabel="implementation",
        fontsize=8,
    )
    _finish(fig)
    total = t.canon_us + t.hash_us
    # a complete fingerprint hashes something: "canonical" alone (hash 0) is not a candidate
    complete = np.where(t.hash_us.to_numpy() > 0, total.to_numpy(), np.inf)
    fastest = int(np.argmin(complete))
    caption = f"Fastest: {t.label[fastest]} {total[fastest]:.2f} µs ({fmt_pct(float(t.canon_us[fastest] / total[fastest]))} canonicalisation)"
    naive = t[t.naive]
    if not naive.empty:
        nt = float(naive.canon_us.iloc[0] + naive.hash_us.iloc[0])
        caption += (
            f"; naive {nt:.2f} µs ({fmt_pct(float(naive.canon_us.iloc[0]) / nt)} in json.dumps), "
            f"{fmt_ratio(nt / float(total[fastest]))} slower"
        )
    return Chart(name, title, caption + ".", fig)


def chart_cache(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "cache_latency", "Cache operation latency"
    t = cache_ops(run)
    if t.empty:
        return Omitted(name, title, "no cache benchmarks in this run")
    fig, axes = _fig(title, width=8, height=1.4 + 0.3 * len(t))
    _hbars(
        axes[0],
        t.label,
        [(t.median_ms, "#1f77b4", "median")],
        p99=t.p99_ms,
        claim=(2.0, "2 ms claim"),
        log=True,
        xlabel="latency per operation (ms, log)",
        ylabel="operation / backend",
    )
    _finish(fig)
    hits = t[t.op.str.contains("hit") & ~t["floor"]]
    if hits.empty:
        caption = f"{len(t)} cache operations, medians {fmt_ms(float(t.median_ms.min()))}-{fmt_ms(float(t.median_ms.max()))}."
    else:
        lo, hi = fmt_ms(float(hits.median_ms.min())), fmt_ms(float(hits.median_ms.max()))
        caption = (
            f"Cache hits: median {lo if lo == hi else f'{lo} to {hi}'}, "
            f"worst p99 {fmt_ms(float(hits.p99_ms.max()))} against the 2 ms claim"
        )
        floor = t[t["floor"]]
        if not floor.empty:
            caption += f"; raw GET floor median {fmt_ms(float(floor.median_ms.min()))}"
        caption += "."
    return Chart(name, title, caption, fig)


def chart_client(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "client_concurrency", "HTTP client throughput and p99 vs concurrency"
    t = client_table(run)
    if t.empty:
        return Omitted(name, title, "no client benchmarks in this run")
    fig, axes = _fig(title, ncols=2, width=12, height=4.6)
    for lab, g in t.groupby("label", sort=True):
        axes[0].plot(g.concurrency, g.req_per_s, "o-", label=lab, ms=3)
        axes[1].plot(g.concurrency, g.p99_ms, "o-", label=lab, ms=3)
    axes[0].set_ylabel("throughput (requests/s)")
    _value_axis(axes[1], t.p99_ms, "p99 latency (ms)")
    for ax in axes:
        _plain_log_x(ax)
        ax.set_xlabel("concurrent requests (log)")
    axes[0].set_title("throughput")
    axes[1].set_title("p99 latency")
    axes[0].legend(fontsize=8)
    _finish(fig)
    kinds = {int(c): int(t[t.concurrency == c].kind.nunique()) for c in t.concurrency.unique()}
    top_c = max(kinds, key=lambda c: (kinds[c], c))  # most transports, then highest
    at = t[t.concurrency == top_c].set_index("kind")
    best = str(row_at(at.reset_index(), "req_per_s")["kind"])
    caption = f"At {top_c} concurrent: best {best} {at.req_per_s[best]:.0f} req/s"
    if "http2" in at.index and "http1" in at.index:
        caption += f"; HTTP/2 {fmt_ratio(float(at.req_per_s['http2'] / at.req_per_s['http1']))} pooled HTTP/1.1"
    elif "http2" not in set(t.kind):
        caption += f"; HTTP/2: not measured here (measure it with `{HTTP2_COMMAND}`)"
    if "raw-aiohttp" in at.index and best != "raw-aiohttp":
        caption += f"; best is {fmt_ratio(float(at.req_per_s[best] / at.req_per_s['raw-aiohttp']))} raw aiohttp"
    elif "aiohttp-transport" in at.index and "raw-aiohttp" in at.index:
        caption += f"; httpx+aiohttp transport is {fmt_ratio(float(at.req_per_s['aiohttp-transport'] / at.req_per_s['raw-aiohttp']))} raw aiohttp"
    return Chart(name, title, caption + ".", fig)


def chart_router_latency(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "router_latency", "Router decision latency per task / priority"
    t = router_latency(run)
    if t.empty:
        return Omitted(name, title, "no router decision benchmarks in this run")
    fig, axes = _fig(title, width=8, height=1.4 + 0.28 * len(t))
    _hbars(
        axes[0],
        t.label,
        [(t.median_us, "#2ca02c", "median")],
        p99=t.p99_us,
        claim=(10, "10 µs target"),
        xlabel="decision latency (µs)",
        ylabel="task / priority",
    )
    _finish(fig)
    caption = (
        f"Median {t.median_us.min():.2f}-{t.median_us.max():.2f} µs over {len(t)} task/priority pairs; "
        f"worst p99 {t.p99_us.max():.2f} µs."
    )
    return Chart(name, title, caption, fig)


def added_text(row: Any) -> str:
    """An added latency as a reader may take it: a figure with its interval, or "within
    noise" with the interval when the interval spans 0 (or the mean is below 0)."""
    v, lo, hi = float(row.added_latency_ms), float(row.ci_low_ms), float(row.ci_high_ms)
    interval = "" if np.isnan(lo) or np.isnan(hi) else f" (95 % interval {lo:+.2f} to {hi:+.2f} ms)"
    if bool(row.within_noise):
        return "added latency within noise" + interval
    return f"+{v:.1f} ms per request" + interval


def chart_router_faults(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "failure_injection", "Success rate and added latency under injected failures"
    t = router_faults(run)
    if t.empty:
        return Omitted(
            name, title, "no benchmark reports success_rate / added_latency_ms under a fault rate"
        )
    fig, axes = _fig(title, ncols=2, width=11, height=4.2)
    noise_drawn = False
    for lab, g in t.groupby("label", sort=True):
        line = axes[0].plot(g.fault_rate * 100, g.success_rate * 100, "o-", label=lab)[0]
        color = line.get_color()
        x = g.fault_rate * 100
        # within noise is drawn at 0 (never below), with its interval around it
        shown = g.added_latency_ms.where(~g.within_noise.astype(bool), 0.0)
        axes[1].plot(x, shown, "-", color=color)
        lo = (shown - g.ci_low_ms).clip(lower=0.0).fillna(0.0)
        hi = (g.ci_high_ms - shown).clip(lower=0.0).fillna(0.0)
        axes[1].errorbar(x, shown, yerr=[lo, hi], fmt="none", ecolor=color, capsize=3)
        sig, noise = g[~g.within_noise], g[g.within_noise]
        axes[1].plot(sig.fault_rate * 100, sig.added_latency_ms, "o", color=color)
        if not noise.empty:
            axes[1].plot(
                noise.fault_rate * 100,
                [0.0] * len(noise),
                "o",
                mfc="white",
                color=color,
                label=None if noise_drawn else "within noise (interval spans 0)",
            )
            noise_drawn = True
    axes[0].set_ylabel("success rate (%)")
    axes[0].set_ylim(
        min(0.0, float(t.success_rate.min() * 100) - 5) if t.success_rate.min() < 0.5 else 50, 101
    )
    axes[1].set_ylabel("added latency per request (ms; bars: 95 % interval)")
    for ax in axes:
        ax.set_xlabel("injected failure rate (%)")
    axes[0].legend(fontsize=8)
    if noise_drawn:
        axes[1].legend(fontsize=8)
    _finish(fig)
    worst = row_at(t, "fault_rate")
    caption = (
        f"At {fmt_pct(float(worst.fault_rate))} injected failures: success {fmt_pct(float(worst.success_rate))}, "
        f"{added_text(worst)}."
    )
    return Chart(name, title, caption, fig)


# --- load -----------------------------------------------------------------------------------

NO_LOAD: Final = "no load suite in this run (samplemind-bench run --suite load)"


def chart_load_capacity(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "load_capacity", "Capacity curve: throughput vs p99 (open-loop, cache hits)"
    t = load_curve(run)
    if t.empty:
        return Omitted(name, title, NO_LOAD)
    fig, axes = _fig(title, width=8, height=4.4)
    ax = axes[0]
    parts = []
    for mode, g in t.groupby("mode", sort=True):
        line = ax.plot(g.achieved_per_s, g.p99_ms, "o-", label=f"{mode}: p99")[0]
        ax.plot(g.achieved_per_s, g.p50_ms, ".:", color=line.get_color(), label=f"{mode}: p50")
        for _, r in g.iterrows():
            ax.annotate(f"{r.offered_per_s:.0f}/s", (r.achieved_per_s, r.p99_ms), fontsize=6)
        knee = float(g.knee_per_s.iloc[0])
        phrase, marked = knee_phrase(knee, [float(v) for v in g.offered_per_s])
        at = g[g.offered_per_s == knee]
        if marked and not at.empty:
            ax.plot(at.achieved_per_s, at.p99_ms, "*", ms=14, color="red", label=f"{mode}: knee")
        parts.append(f"{mode} {phrase}")
    bound = float(t.bound_ms.iloc[0])
    ax.axhline(bound, color="red", ls="--", label=f"p99 bound {bound:.0f} ms")
    ax.set_yscale("log")
    ax.set_xlabel("achieved throughput (req/s; labels: offered rate)")
    ax.set_ylabel("latency from scheduled arrival (ms, log)")
    ax.legend(fontsize=7)
    _finish(fig)
    caption = (
        "Saturation knee (highest offered rate with p99 ≤ "
        f"{bound:.0f} ms, every call answered): " + "; ".join(parts) + "."
    )
    bursts = load_bursts(run)
    if not bursts.empty:
        caption += (
            " Warm-burst hit rate vs truth: "
            + ", ".join(
                f"{r['mode']} {int(r['burst']):,} {fmt_pct(float(r['burst_hit_rate']))} "
                f"({fmt_pct(float(r['burst_truth']))})"
                for _, r in bursts.iterrows()
            )
            + "."
        )
    return Chart(name, title, caption, fig)


def chart_load_faults(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "load_faults", "Hit rate over time through the fault schedule"
    timeline, faults = load_faults(run)
    if timeline.empty:
        return Omitted(name, title, NO_LOAD)
    modes = sorted(timeline["mode"].unique())
    fig, axes = _fig(title, ncols=len(modes), width=6 + 4 * len(modes), height=4.4)
    for ax, mode in zip(axes, modes, strict=True):
        g = timeline[timeline["mode"] == mode]
        ax.plot(
            g.t_s,
            g.truth * 100,
            ls=":",
            color="grey",
            label="sequential truth (store empty after a restart)",
        )
        ax.plot(g.t_s, g.hit_rate * 100, color=COLORS["after"], label="measured hit rate")
        err = g[g.errors > 0]
        if not err.empty:
            ax.plot(err.t_s, [2] * len(err), "rx", label="caller errors")
        for i, (_, f) in enumerate(faults[faults["mode"] == mode].iterrows()):
            color = "#d62728" if f.kind == "cache" else "#ff7f0e"
            ax.axvspan(f.start_s, max(f.end_s, f.start_s + 0.02), color=color, alpha=0.15)
            ax.annotate(
                str(f["name"]).replace("_", " "),
                (f.start_s, 100 - 8 * (i % 4)),
                fontsize=6,
                color=color,
                va="top",
            )
        ax.set_title(f"{mode} (red: cache fault, orange: provider fault)", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_xlabel("time since the schedule started (s; 100 ms bins)")
        ax.set_ylabel("hit rate (%)")
        ax.legend(fontsize=7, loc="lower right")
    _finish(fig)
    parts = []
    for _, f in faults.iterrows():
        rec = (
            "not recovered" if not np.isfinite(f.recover_s) else f"recovered in {f.recover_s:.1f} s"
        )
        parts.append(
            f"{f['mode']} {f['name']}: {int(f.caller_errors)} caller errors, "
            f"{int(f.extra_provider_calls):+d} provider calls, {rec}"
        )
    caption = "; ".join(parts) + "." if parts else "No fault records."
    return Chart(name, title, caption, fig)


# --- profiles -------------------------------------------------------------------------------


def _short(fn: str, n: int = 48) -> str:
    return fn if len(fn) <= n else "…" + fn[-(n - 1) :]


def _where(row: Mapping[str, Any]) -> str:
    """``function (file.py:line)`` with the file's base name only."""
    loc = str(row.get("location") or "")
    base = loc.replace("\\", "/").rsplit("/", 1)[-1]
    return _short(f"{row['function']} ({base})" if base else str(row["function"]), 60)


def chart_memory(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "memory_profile", "Memory profile of the pipeline replay (memray)"
    mem = (profile or {}).get("memory") or {}
    leak = (profile or {}).get("leak") or {}
    top = mem.get("top_functions") or []
    cps = leak.get("checkpoints") or []
    if mem.get("status") != "ok" or not top:
        why = "no profile given (samplemind-bench profile --out DIR, then --profile DIR)"
        if profile is not None:
            why = f"memray profile unavailable: {mem.get('message', 'no data')}"
        return Omitted(name, title, why)
    fig, axes = _fig(title, ncols=2 if cps else 1, width=13 if cps else 8, height=4.6)
    ax = axes[0]
    rows = top[:10]
    _hbars(
        ax,
        [_where(r) for r in rows],
        [([r["bytes"] / 2**20 for r in rows], "#9467bd", None)],
        xlabel="bytes allocated over the run (MiB)",
        ylabel="function",
    )
    ax.set_title("top allocating functions")
    if cps:
        ax2 = axes[1]
        n = [c["requests"] for c in cps]
        ax2.plot(n, [c["rss_bytes"] / 2**20 for c in cps], "o-", label="resident (RSS)")
        ax2.plot(n, [c["peak_rss_bytes"] / 2**20 for c in cps], "s--", label="peak RSS so far")
        ax2.set_xlabel("requests replayed")
        ax2.set_ylabel("memory (MiB)")
        ax2.set_title("memory over a long replay (leak check)")
        ax2.legend(fontsize=8)
    _finish(fig)
    caption = (
        f"Peak {mem['peak_bytes'] / 2**20:.1f} MiB, {int(mem.get('total_allocations', 0)):,} allocations "
        f"over {int(mem.get('requests') or (profile or {}).get('requests', 0)):,} requests (memray)"
    )
    if leak.get("verdict"):
        caption += (
            f"; RSS {leak['early_rss_bytes'] / 2**20:.1f} MiB after {leak['early']:,} vs "
            f"{leak['late_rss_bytes'] / 2**20:.1f} MiB after {leak['late']:,} requests: {leak['verdict']}"
        )
    return Chart(name, title, caption + ".", fig)


def chart_cpu(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "cpu_profile", "CPU profile of the pipeline replay (py-spy, own time)"
    cpu = (profile or {}).get("cpu") or {}
    top = cpu.get("top_functions") or []
    if cpu.get("status") != "ok" or not top:
        why = "no profile given (samplemind-bench profile --out DIR, then --profile DIR)"
        if profile is not None:
            why = f"py-spy profile unavailable: {cpu.get('message', 'no data')}"
        return Omitted(name, title, why)
    rows = top[:12]
    fig, axes = _fig(title, width=9, height=1.4 + 0.3 * len(rows))
    _hbars(
        axes[0],
        [_where(r) for r in rows],
        [([100 * r["own_fraction"] for r in rows], "#d62728", None)],
        xlabel="own time (% of samples)",
        ylabel="function",
    )
    _finish(fig)
    first = rows[0]
    share = sum(r["own_fraction"] for r in rows)
    caption = (
        f"Top: {first['function']} {fmt_pct(float(first['own_fraction']))} of {int(cpu.get('samples', 0)):,} "
        f"samples; the top {len(rows)} functions take {fmt_pct(share)}."
    )
    return Chart(name, title, caption, fig)


CHARTS: Final[tuple[Callable[[Run, Mapping[str, Any] | None], Result], ...]] = (
    chart_pipeline_latency,
    chart_hit_rate_vs_repeat,
    chart_hit_rate_replay,
    chart_hashing,
    chart_fingerprint,
    chart_cache,
    chart_client,
    chart_router_latency,
    chart_router_faults,
    chart_load_capacity,
    chart_load_faults,
    chart_instructions,
    chart_memory,
    chart_cpu,
)


CHART_SUITES: Final[dict[str, tuple[str, ...]]] = {
    "chart_pipeline_latency": ("pipeline",),
    "chart_hit_rate_vs_repeat": ("pipeline",),
    "chart_hit_rate_replay": ("pipeline",),
    "chart_hashing": ("hashing",),
    "chart_fingerprint": ("fingerprint",),
    "chart_cache": ("cache",),
    "chart_client": ("client",),
    "chart_router_latency": ("router",),
    "chart_router_faults": ("router",),
    "chart_load_capacity": ("load",),
    "chart_load_faults": ("load",),
}
PROFILE_SOURCE: Final = "mocks (profile workload: in-process fakeredis and world, latency scale 0)"


def with_chart_source(res: Result, run: Run, suites: tuple[str, ...] | str) -> Result:
    """``res`` with where its figures came from appended to its caption (a chart only)."""
    if not isinstance(res, Chart):
        return res
    label = suites if isinstance(suites, str) else suites_label(run, suites)
    return replace(res, caption=f"{res.caption.rstrip()} From: {label}.")


def build_charts(run: Run, profile: Mapping[str, Any] | None = None) -> Iterator[Result]:
    """Every chart of the report, in page order (omitted ones as :class:`Omitted`); each
    caption ends with where its figures came from (mocks / the emulator / live services).
    Drawn one at a time, as the caller asks for the next (so that a caller who saves each
    with :func:`save_chart` before the next holds one open figure, not twenty)."""
    for fn in CHARTS:
        res = fn(run, profile)
        if fn.__name__ in CHART_SUITES:
            res = with_chart_source(res, run, CHART_SUITES[fn.__name__])
        elif fn in (chart_memory, chart_cpu):
            res = with_chart_source(res, run, PROFILE_SOURCE)
        yield res
