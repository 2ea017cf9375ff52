"""The stream suite in the report: TTFT before/after the cache, ITL, one request's chunks, claims.

Reads the ``stream`` suite's entries (and the load suite's open-loop streams for the
goodput chart) (bench/suites/test_stream.py): ``extra_info["stream"]``
(percentiles and raw ``samples_ms`` as defined in bench/harness/streams.py), the ratios of
the replay entries and ``timeline_ms`` (one request's chunk arrivals). Each chart's caption
is a headline line of ``summary.md``; a run without a stream suite omits them with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from bench.figures import display_model, knee_text

from . import provenance
from .analysis import fmt_ms, fmt_ratio
from .charts import Chart, Omitted, Result, _fig, _finish, with_chart_source
from .claims import DOES_NOT_HOLD, HOLDS, NOT_MEASURED, Claim, with_source
from .data import Benchmark, Run

__all__ = [
    "chart_stream_goodput",
    "chart_stream_itl",
    "chart_stream_timeline",
    "chart_stream_ttft_cdf",
    "claim_cached_ttft",
    "claim_local_ttft",
    "local_model_entries",
    "stream_charts",
    "stream_claims",
    "stream_entries",
]

NO_STREAM: Final = "no stream suite in this run (samplemind-bench run --suite stream)"
NO_STREAM_LOAD: Final = (
    "no open-loop streams in this run (the load suite's stream mode: "
    "samplemind-bench run --suite load)"
)
STATES: Final = ("upstream", "replay")
LIMIT_MS: Final = 50.0
_STATE: Final = {"cold": "upstream"}
"""The suite's ``cache`` parameter ("cold": streamed from the provider) as a chart state."""


def stream_entries(run: Run) -> pd.DataFrame:
    """One row per stream-suite entry with stream figures: test, label, state, provider, ..."""
    rows: list[dict[str, Any]] = []
    for b in run.suite("stream"):
        info = b.extra_info
        stream = info.get("stream")
        if not isinstance(stream, Mapping):
            continue
        params = b.params
        samples = stream.get("samples_ms")
        samples = samples if isinstance(samples, Mapping) else {}
        rows.append(
            {
                "test": b.name.split("[", 1)[0],
                "label": b.param or b.name,
                "group": b.group,
                "world": params.get("world", run.mode),
                "transport": params.get("transport", ""),
                "provider": params.get("provider", "openai"),
                "state": _STATE.get(str(params.get("cache", "")), str(params.get("cache", ""))),
                "ttft": np.asarray(samples.get("ttft", []), dtype=float),
                "itl": np.asarray(samples.get("itl", []), dtype=float),
                "ttft_p50": _num(stream.get("ttft_ms", {}), "p50"),
                "ttft_p99": _num(stream.get("ttft_ms", {}), "p99"),
                "itl_p50": _num(stream.get("itl_ms", {}), "p50"),
                "itl_p99": _num(stream.get("itl_ms", {}), "p99"),
                "timeline": list(info.get("timeline_ms") or []),
                "ttft_speedup": info.get("ttft_speedup"),
                "replay_vs_hit": info.get("replay_vs_complete_hit"),
                "chunk_fidelity": info.get("chunk_fidelity"),
            }
        )
    return pd.DataFrame(rows)


def _num(d: Any, key: str) -> float:
    v = d.get(key) if isinstance(d, Mapping) else None
    return float(v) if isinstance(v, int | float) else float("nan")


def _cache_rows(run: Run) -> pd.DataFrame:
    t = stream_entries(run)
    if t.empty:
        return t
    return t[(t.test == "test_stream_cache") & t.state.isin(STATES)]


def _cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values)
    return x, np.arange(1, len(x) + 1) / len(x)


def chart_stream_ttft_cdf(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "stream_ttft_cdf", "Time to first token before / after the cache (CDF)"
    t = _cache_rows(run)
    if t.empty:
        return Omitted(name, title, NO_STREAM)
    fig, axes = _fig(title, width=8, height=4.4)
    ax = axes[0]
    parts = []
    for (provider, state), g in t.groupby(["provider", "state"], sort=True):
        ttft = np.concatenate(list(g.ttft))
        if ttft.size == 0:
            continue
        x, y = _cdf(ttft)
        ax.step(
            x, y, where="post", ls="-" if state == "replay" else "--", label=f"{provider} {state}"
        )
    for provider, g in t[t.state == "replay"].groupby("provider", sort=True):
        up = t[(t.provider == provider) & (t.state == "upstream")]
        if up.empty:
            continue
        rep_p50 = float(np.median(np.concatenate(list(g.ttft))))
        up_p50 = float(np.median(np.concatenate(list(up.ttft))))
        parts.append(
            f"{provider!s} {fmt_ms(up_p50)} upstream → {fmt_ms(rep_p50)} replayed "
            f"({fmt_ratio(up_p50 / rep_p50)} faster)"
        )
    ax.set_xscale("log")
    ax.set_xlabel("time to first token (ms, log)")
    ax.set_ylabel("share of requests")
    ax.legend(fontsize=7)
    _finish(fig)
    caption = "TTFT p50 " + "; ".join(parts) + "." if parts else "TTFT per request."
    hit = t[t.state == "replay"].replay_vs_hit.dropna()
    if not hit.empty:
        caption += (
            " Replay TTFT vs a non-streamed cache hit (p50, same run): "
            + ", ".join(fmt_ratio(float(v)) for v in hit)
            + "."
        )
    return Chart(name, title, caption, fig)


def chart_stream_itl(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "stream_itl", "Inter-token latency (every gap, pooled over requests)"
    t = stream_entries(run)
    t = t[t.itl.map(len) > 0] if not t.empty else t
    if t.empty:
        return Omitted(name, title, NO_STREAM)
    fig, axes = _fig(title, width=8, height=4.4)
    ax = axes[0]
    parts = []
    for label, g in t.groupby("label", sort=True):
        itl = np.concatenate(list(g.itl))
        x, y = _cdf(np.maximum(itl, 1e-4))
        ax.step(x, y, where="post", label=str(label))
        parts.append(
            f"{label} p50 {fmt_ms(float(np.percentile(itl, 50)))}, "
            f"p99 {fmt_ms(float(np.percentile(itl, 99)))}"
        )
    ax.set_xscale("log")
    ax.set_xlabel("gap between chunks (ms, log)")
    ax.set_ylabel("share of gaps")
    ax.legend(fontsize=6)
    _finish(fig)
    return Chart(name, title, "ITL " + "; ".join(parts[:6]) + ".", fig)


def chart_stream_timeline(run: Run, profile: Mapping[str, Any] | None) -> Result:
    name, title = "stream_timeline", "One request's chunk arrivals: upstream beside replay"
    t = _cache_rows(run)
    t = t[t.timeline.map(len) > 0] if not t.empty else t
    if t.empty or set(t.state) != set(STATES):
        return Omitted(name, title, NO_STREAM)
    provider = sorted(t.provider.unique())[-1]  # the slowest-named last: openai before ollama
    rows = {state: t[(t.provider == provider) & (t.state == state)] for state in STATES}
    if any(r.empty for r in rows.values()):
        return Omitted(name, title, NO_STREAM)
    fig, axes = _fig(title, width=8, height=3.2)
    ax = axes[0]
    parts = []
    for y, state in enumerate(STATES):
        times = list(rows[state].timeline.iloc[0])
        ax.plot(times, [y] * len(times), "|", ms=14, label=f"{state}: {len(times)} chunks")
        parts.append(
            f"{state} {len(times)} chunks, first at {fmt_ms(times[0])}, last at {fmt_ms(times[-1])}"
        )
    ax.set_yticks(range(len(STATES)), list(STATES))
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("ms from the call (symlog)")
    ax.legend(fontsize=7)
    _finish(fig)
    return Chart(name, title, f"{provider}: " + "; ".join(parts) + ".", fig)


def claim_cached_ttft(run: Run) -> Claim:
    text = "Cached answers under 50 ms (as time to first token of a replayed stream)"
    t = _cache_rows(run)
    rep = t[t.state == "replay"] if not t.empty else t
    if rep.empty:
        return Claim(text, "no stream suite in this run", NOT_MEASURED, "stream")
    ttft = np.concatenate(list(rep.ttft))
    p99 = float(np.percentile(ttft, 99))
    measured = (
        f"replay TTFT p99 {fmt_ms(p99)}, p50 {fmt_ms(float(np.median(ttft)))} over "
        f"{ttft.size} replays ({', '.join(sorted(rep.provider.unique()))}; {run.mode} mode)"
    )
    return Claim(text, measured, HOLDS if p99 < LIMIT_MS else DOES_NOT_HOLD, "stream, replay")


def local_model_entries(run: Run) -> list[Benchmark]:
    """The stream entries measured against a model server the user named (``test_stream_local``)."""
    return [b for b in run.suite("stream") if isinstance(b.extra_info.get("local_model"), Mapping)]


def _samples_ms(b: Benchmark, key: str = "ttft") -> np.ndarray:
    stream = b.extra_info.get("stream")
    if isinstance(stream, Mapping):
        samples = stream.get("samples_ms")
        if isinstance(samples, Mapping):
            return np.asarray(samples.get(key, []), dtype=float)
        return np.asarray([], dtype=float)
    return np.asarray(b.data, dtype=float) * 1e3


def _pick(entries: list[Benchmark], **match: Any) -> np.ndarray:
    got = [_samples_ms(b) for b in entries if all(b.params.get(k) == v for k, v in match.items())]
    got = [g for g in got if g.size]
    return np.concatenate(got) if got else np.asarray([], dtype=float)


def _p(values: np.ndarray, q: float) -> str:
    return fmt_ms(float(np.percentile(values, q))) if values.size else "-"


def _local_model_claim(text: str, entries: list[Benchmark]) -> Claim:
    """The claim measured on real local models: TTFT of new prompts and of a cached prefix."""
    by_label: dict[str, list[Benchmark]] = {}
    for b in entries:
        by_label.setdefault(str(b.extra_info["local_model"].get("label", "?")), []).append(b)
    parts: list[str] = []
    verdicts: list[bool] = []
    prefix_only = False
    for label, group in sorted(by_label.items()):
        info = group[0].extra_info["local_model"]
        ttft = {"cache": "cold", "concurrency": 1, "answer": None, "figure": None}  # no -itl twin
        new = _pick(group, prompt="new", **ttft)
        prefix = _pick(group, prompt="cached_prefix", **ttft)
        short_new = _pick(group, answer="short", prompt="new")
        short_prefix = _pick(group, answer="short", prompt="cached_prefix")
        many = [
            b
            for b in group
            if int(b.params.get("concurrency") or 1) > 1 and b.params.get("figure") is None
        ]
        model = (
            label
            if info.get("emulator")
            else display_model(str(info.get("served_model") or info.get("model")))
        )
        part = (
            f"{model}: TTFT p50 {_p(new, 50)} (p99 {_p(new, 99)}) for new prompts, "
            f"p50 {_p(prefix, 50)} (p99 {_p(prefix, 99)}) with a cached prompt prefix"
        )
        if short_new.size or short_prefix.size:
            part += f"; a short answer p50 {_p(short_new, 50)} new, {_p(short_prefix, 50)} cached prefix"
        figures = next((g.extra_info for g in group if "cut_streams" in g.extra_info), {})
        for b in many:  # the cut count is recorded once, on the new-prompt entry
            cut, n = figures.get("cut_streams"), figures.get("concurrent_streams")
            part += (
                f"; {b.params.get('concurrency')} concurrent streams: TTFT p50 "
                f"{_p(_samples_ms(b), 50)}"
                + (f", {cut} of {n} cut short" if cut is not None else "")
            )
        if info.get("emulator"):
            part += " (the emulator: a world-model input, not a model: no verdict)"
        elif not info.get("local"):
            part += " (not on this machine: no verdict)"
        elif new.size and prefix.size:
            new_ok = float(np.percentile(new, 99)) < LIMIT_MS
            prefix_ok = float(np.percentile(prefix, 99)) < LIMIT_MS
            verdicts.append(new_ok and prefix_ok)
            prefix_only = prefix_only or (prefix_ok and not new_ok)
        parts.append(part)
    verdict = (HOLDS if all(verdicts) else DOES_NOT_HOLD) if verdicts else NOT_MEASURED
    measured = "; ".join(parts)
    if verdict == DOES_NOT_HOLD and prefix_only:
        measured += " (under 50 ms only with a cached prompt prefix)"
    sources = " + ".join(sorted(by_label))
    return Claim(text, measured, verdict, f"stream, local model (p99) [from: {sources}]")


def claim_local_ttft(run: Run) -> Claim:
    """Settled only by a real local model (``test_stream_local``): the emulator's Ollama TTFT
    is a world-model input. Holds when TTFT p99 is under 50 ms for new prompts and with a
    cached prompt prefix, on every local model measured."""
    text = "Local answers under 50 ms (as time to first token)"
    local = local_model_entries(run)
    if local:
        return _local_model_claim(text, local)
    t = _cache_rows(run)
    up = t[(t.state == "upstream") & (t.provider == "ollama")] if not t.empty else t
    if up.empty:
        return Claim(text, "no uncached Ollama stream in this run", NOT_MEASURED, "stream")
    ttft = np.concatenate(list(up.ttft))
    why = (
        f"modelled upstream TTFT p50 {fmt_ms(float(np.median(ttft)))}, p99 "
        f"{fmt_ms(float(np.percentile(ttft, 99)))} ({run.mode} mode): the emulator's Ollama "
        "TTFT is a world-model input (fixtures/world.py), not a local model's measurement; "
        "name a local model server to measure it (README: 'Against a real local model')"
    )
    return Claim(text, why, NOT_MEASURED, "stream, upstream")


def chart_stream_goodput(run: Run, profile: Mapping[str, Any] | None) -> Result:
    """Goodput against offered rate of the load suite's open-loop streams, the knee starred."""
    name, title = "stream_goodput", "Stream goodput against offered rate (open loop, SLOs)"
    points = [
        b
        for b in run.suite("load")
        if isinstance(b.extra_info.get("curve_goodput_rps"), list)
        and "stream_knee_per_s" in b.extra_info
    ]
    if not points:
        return Omitted(name, title, NO_STREAM_LOAD)
    fig, axes = _fig(title, width=8, height=4.4)
    ax = axes[0]
    parts = []
    top = 0.0
    for b in sorted(points, key=lambda b: b.name):
        info = b.extra_info
        offered = [float(v) for v in info.get("curve_offered_per_s") or []]
        good = [float(v or 0.0) for v in info["curve_goodput_rps"]]
        if not offered or len(good) != len(offered):
            continue
        mode = str(info.get("mode", b.param or b.name))
        ax.plot(offered, good, "o-", label=mode)
        top = max(top, *offered)
        knee = float(info.get("stream_knee_per_s") or 0.0)
        limit = info.get("generator_limit_per_s")
        phrase = knee_text(knee, offered, float(limit) if limit is not None else None)
        if phrase.startswith("knee "):  # a rate that met the criterion below one that did not
            ax.plot(
                [knee], [good[offered.index(knee)]], "*", ms=14, color="red", label=f"{mode}: knee"
            )
        if limit is not None and float(limit) in offered:
            at = offered.index(float(limit))
            ax.plot(
                [offered[at]],
                [good[at]],
                "x",
                ms=10,
                color="black",
                label=f"{mode}: generator limit",
            )
        parts.append(
            f"{mode}: {phrase} (≥ {float(info.get('good_share_bound', 0.95)):.0%} of requests "
            f"meeting '{info.get('slo', '')}'), {int(info.get('stream_interrupted', 0))} "
            f"interrupted, {int(info.get('other_errors', 0))} other errors"
        )
    ax.plot([0, top], [0, top], ":", color="grey", label="goodput = offered")
    ax.set_xlabel("offered rate (streams/s)")
    ax.set_ylabel("goodput (streams/s meeting every SLO)")
    ax.legend(fontsize=7)
    _finish(fig)
    return Chart(name, title, "; ".join(parts) + ".", fig)


def stream_charts(run: Run, profile: Mapping[str, Any] | None = None) -> list[Result]:
    """The stream charts, in page order (after :func:`reports.charts.build_charts`'s)."""
    return [
        *(
            with_chart_source(fn(run, profile), run, ("stream",))
            for fn in (chart_stream_ttft_cdf, chart_stream_itl, chart_stream_timeline)
        ),
        with_chart_source(  # from the load suite's stream entries only (their own scale)
            chart_stream_goodput(run, profile),
            run,
            provenance.source_label(
                run, [b for b in run.suite("load") if "stream_knee_per_s" in b.extra_info]
            ),
        ),
    ]


def _local_with_source(run: Run) -> Claim:
    claim = claim_local_ttft(run)
    if local_model_entries(run):  # its source column names the model that answered
        return claim
    return with_source(claim, run, ("stream",))


def stream_claims(run: Run) -> list[Claim]:
    """The claims measured as TTFT (after :func:`reports.claims.evaluate_claims`'s)."""
    cached = claim_cached_ttft(run)
    return [
        with_source(cached, run, ("stream",)) if not _cache_rows(run).empty else cached,
        _local_with_source(run),
    ]
