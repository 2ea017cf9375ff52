"""Stream metrics: TTFT, time to second token, ITL, TPOT, E2E, tokens/s and goodput.

One request's stream is a :class:`Timeline`: when it was sent and when each chunk
arrived, with the chunk's text. The figures follow the serving benchmarks' own
definitions, so that ours can be set beside theirs (see
``docs/measurements/2026-12-06-stream-metrics.md`` for the table):

* **TTFT** (time to first token) = arrival of the first chunk with non-empty text -
  send time. Empty chunks are dropped first, as NVIDIA genai-perf/aiperf does (vLLM
  ``bench serve`` takes the first SSE message with non-empty ``choices``; for OpenAI
  that is the role chunk whose ``content`` is ``""``, so vLLM's TTFT would be the
  framing's, not the model's: we drop it).
* **TTST** (time to second token) = arrival of the second non-empty chunk - arrival
  of the first (aiperf's ``TTSTMetric``: "second response timestamp - first").
* **ITL** (inter-token latency) = every gap between consecutive non-empty chunks of a
  request, *pooled* over all requests (vLLM: each token weighs the same).
* **TPOT** (time per output token) per request = (E2E - TTFT) / (output tokens - 1),
  only for requests with more than one output token (vLLM: each request weighs the same).
* **E2E** = arrival of the last non-empty chunk - send time (vLLM: the usage-only chunk
  and ``[DONE]`` do not move the end).
* **Output tokens/s** per request = output tokens / E2E (genai-perf's per-request
  output token throughput); :attr:`StreamStats.output_tokens_per_s` is the
  aggregate (all output tokens / wall duration), vLLM's "output token throughput".
* **Goodput** = requests per second (of the wall duration) that meet every SLO given
  (vLLM ``--goodput ttft:ms tpot:ms e2el:ms``).
* **Paired cost** (:func:`paired_cost`; ours, no serving benchmark has it): for streams sent
  in pairs (the same request read twice, e.g. raw and through the layer, from an emulator
  whose delays are keyed by the request, so both reads get the same TTFT and token gaps),
  the median and p99 over pairs of the TTFT ratio (second / first) and of the TTFT
  difference, and the percentiles of the per-gap differences (gap ``k`` of the second read
  minus gap ``k`` of the first): the added ITL with the upstream's draw taken out.
  :func:`cost_figures` puts these beside the issue's own (ratio of the two sides' TTFT
  percentiles, difference of their pooled ITL percentiles) under one prefix, so that one
  layer-cost entry can hold several comparisons (against raw aiohttp, against raw httpx,
  raw httpx against raw aiohttp: decision 0860).

Percentiles use :func:`numpy.percentile` (linear interpolation, as vLLM does).

>>> t = Timeline(0.0, ((0.5, ""), (1.0, "a"), (1.25, "b"), (1.75, "c")))
>>> t.ttft_s, t.ttst_s, t.e2e_s, t.itl_s, t.tpot_s
(1.0, 0.25, 1.75, (0.25, 0.5), 0.375)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from bench.figures import knee_text

if TYPE_CHECKING:
    from bench.results import Benchmark

__all__ = [
    "PERCENTILES",
    "SLO",
    "PairedCost",
    "StreamStats",
    "Timeline",
    "cost_figures",
    "goodput_line",
    "headline_lines",
    "paired_cost",
    "percentiles",
    "summarize",
]

PERCENTILES: Final = (1, 5, 10, 25, 50, 75, 90, 95, 99)
"""The percentiles of every distribution (genai-perf reports p1 to p99)."""


@dataclass(frozen=True, slots=True)
class Timeline:
    """One request's stream: send time and ``(arrival time, text)`` per chunk, in seconds.

    Times come from one monotonic clock (``time.perf_counter()``). ``output_tokens``
    is the provider's count (``usage``) when known; otherwise every non-empty chunk
    counts as one token (the emulator and most providers send about one token a chunk).
    """

    start: float
    chunks: tuple[tuple[float, str], ...]
    output_tokens: int | None = None

    def __post_init__(self) -> None:
        last = self.start
        for at, text in self.chunks:
            if not isinstance(at, int | float) or not math.isfinite(at) or at < last:
                raise ValueError(
                    f"chunk arrival times must be finite and non-decreasing from start "
                    f"{self.start}: got {at!r} after {last}"
                )
            if not isinstance(text, str):
                raise ValueError(f"chunk text must be a string, got {type(text).__name__}")
            last = at
        if self.output_tokens is not None and self.output_tokens < 0:
            raise ValueError(f"output_tokens must be >= 0, got {self.output_tokens}")

    @property
    def token_times(self) -> tuple[float, ...]:
        """Arrival times of the non-empty chunks (empty ones dropped, as genai-perf does)."""
        return tuple(at for at, text in self.chunks if text)

    @property
    def tokens(self) -> int:
        """Output tokens: the provider's count, or the number of non-empty chunks."""
        if self.output_tokens is not None:
            return self.output_tokens
        return len(self.token_times)

    @property
    def ttft_s(self) -> float | None:
        """Time to the first non-empty chunk (``None``: no text came)."""
        times = self.token_times
        return times[0] - self.start if times else None

    @property
    def ttst_s(self) -> float | None:
        """Gap from the first to the second non-empty chunk (``None``: fewer than two)."""
        times = self.token_times
        return times[1] - times[0] if len(times) > 1 else None

    @property
    def itl_s(self) -> tuple[float, ...]:
        """Every gap between consecutive non-empty chunks."""
        times = self.token_times
        return tuple(b - a for a, b in pairwise(times))

    @property
    def e2e_s(self) -> float | None:
        """Time to the last non-empty chunk (``None``: no text came)."""
        times = self.token_times
        return times[-1] - self.start if times else None

    @property
    def tpot_s(self) -> float | None:
        """(E2E - TTFT) / (output tokens - 1); ``None`` for fewer than two tokens."""
        ttft, e2e, n = self.ttft_s, self.e2e_s, self.tokens
        if ttft is None or e2e is None or n < 2:
            return None
        return (e2e - ttft) / (n - 1)

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens / E2E (``None`` when E2E is 0 or unknown)."""
        e2e = self.e2e_s
        return self.tokens / e2e if e2e else None


@dataclass(frozen=True, slots=True)
class SLO:
    """Service-level objectives of one request, in milliseconds (``None``: not checked).

    A request meets them when it produced text and each given bound holds (``<=``).
    """

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "tpot_ms", "e2e_ms"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"SLO {name} must be a finite number > 0 ms, got {value!r}")

    @classmethod
    def parse(cls, spec: str) -> SLO:
        """vLLM's ``--goodput`` syntax: ``"ttft:1000 tpot:50 e2el:5000"`` (ms).

        >>> SLO.parse("ttft:1000 tpot:50")
        SLO(ttft_ms=1000.0, tpot_ms=50.0, e2e_ms=None)
        """
        names = {"ttft": "ttft_ms", "tpot": "tpot_ms", "e2el": "e2e_ms", "e2e": "e2e_ms"}
        values: dict[str, float] = {}
        for part in spec.replace(",", " ").split():
            key, sep, raw = part.partition(":")
            if not sep or key not in names:
                raise ValueError(
                    f"bad SLO {part!r} in {spec!r}: expected NAME:MS with NAME one of "
                    "ttft, tpot, e2el"
                )
            try:
                values[names[key]] = float(raw)
            except ValueError:
                raise ValueError(f"bad SLO {part!r} in {spec!r}: {raw!r} is not a number") from None
        return cls(**values)

    def met_by(self, timeline: Timeline) -> bool:
        """Whether ``timeline`` produced text and meets every bound given."""
        ttft, e2e = timeline.ttft_s, timeline.e2e_s
        if ttft is None or e2e is None:
            return False
        if self.ttft_ms is not None and ttft * 1e3 > self.ttft_ms:
            return False
        if self.e2e_ms is not None and e2e * 1e3 > self.e2e_ms:
            return False
        if self.tpot_ms is not None:
            tpot = timeline.tpot_s
            if tpot is not None and tpot * 1e3 > self.tpot_ms:
                return False
        return True


def percentiles(values: Iterable[float], scale: float = 1e3) -> dict[str, float | int]:
    """``n``, ``mean``, ``min``, ``max`` and ``p1`` ... ``p99`` of ``values`` x ``scale``.

    Default ``scale`` turns seconds into milliseconds. Empty input gives ``{"n": 0}``.

    >>> percentiles([0.001, 0.002, 0.003])["p50"]
    2.0
    """
    data = np.asarray(list(values), dtype=float) * scale
    if data.size == 0:
        return {"n": 0}
    out: dict[str, float | int] = {
        "n": int(data.size),
        "mean": float(data.mean()),
        "min": float(data.min()),
        "max": float(data.max()),
    }
    for p, v in zip(PERCENTILES, np.percentile(data, PERCENTILES), strict=True):
        out[f"p{p}"] = float(v)
    return out


@dataclass(frozen=True, slots=True)
class StreamStats:
    """The figures of a set of streams (times in ms, distributions as :func:`percentiles`)."""

    requests: int
    completed: int
    """Requests that produced text."""
    duration_s: float
    ttft_ms: Mapping[str, float | int]
    ttst_ms: Mapping[str, float | int]
    itl_ms: Mapping[str, float | int]
    tpot_ms: Mapping[str, float | int]
    e2e_ms: Mapping[str, float | int]
    tokens_per_s: Mapping[str, float | int]
    """Per-request output tokens / E2E (not in ms)."""
    output_tokens: int
    output_tokens_per_s: float
    """All output tokens / ``duration_s`` (vLLM's output token throughput)."""
    good: int | None = None
    """Requests that met every SLO (``None``: no SLO given)."""
    goodput_rps: float | None = None
    samples: Mapping[str, Sequence[float]] = field(default_factory=dict)
    """Raw samples in ms (``ttft``, ``ttst``, ``itl``, ``tpot``, ``e2e``)."""

    def as_dict(self, *, raw: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (for ``extra_info["stream"]``); ``raw=False`` drops the samples."""
        out: dict[str, Any] = {
            "requests": self.requests,
            "completed": self.completed,
            "duration_s": self.duration_s,
            "ttft_ms": dict(self.ttft_ms),
            "ttst_ms": dict(self.ttst_ms),
            "itl_ms": dict(self.itl_ms),
            "tpot_ms": dict(self.tpot_ms),
            "e2e_ms": dict(self.e2e_ms),
            "tokens_per_s": dict(self.tokens_per_s),
            "output_tokens": self.output_tokens,
            "output_tokens_per_s": self.output_tokens_per_s,
            "good": self.good,
            "goodput_rps": self.goodput_rps,
        }
        if raw:
            out["samples_ms"] = {k: list(v) for k, v in self.samples.items()}
        return out


def summarize(
    timelines: Sequence[Timeline], *, duration_s: float | None = None, slo: SLO | None = None
) -> StreamStats:
    """The :class:`StreamStats` of ``timelines``.

    ``duration_s`` is the wall time of the whole run (default: first send to the last
    chunk of any request); it divides output tokens and good requests into rates.
    """
    if duration_s is None:
        ends = [t.chunks[-1][0] for t in timelines if t.chunks]
        starts = [t.start for t in timelines]
        duration_s = (max(ends) - min(starts)) if ends and starts else 0.0
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s must be a finite number >= 0, got {duration_s!r}")
    done = [t for t in timelines if t.ttft_s is not None]
    ttft = [t.ttft_s for t in done if t.ttft_s is not None]
    ttst = [t.ttst_s for t in done if t.ttst_s is not None]
    itl = [gap for t in done for gap in t.itl_s]
    tpot = [t.tpot_s for t in done if t.tpot_s is not None]
    e2e = [t.e2e_s for t in done if t.e2e_s is not None]
    rate = [t.tokens_per_s for t in done if t.tokens_per_s is not None]
    tokens = sum(t.tokens for t in done)
    good = sum(slo.met_by(t) for t in timelines) if slo is not None else None
    return StreamStats(
        requests=len(timelines),
        completed=len(done),
        duration_s=duration_s,
        ttft_ms=percentiles(ttft),
        ttst_ms=percentiles(ttst),
        itl_ms=percentiles(itl),
        tpot_ms=percentiles(tpot),
        e2e_ms=percentiles(e2e),
        tokens_per_s=percentiles(rate, scale=1.0),
        output_tokens=tokens,
        output_tokens_per_s=tokens / duration_s if duration_s > 0 else 0.0,
        good=good,
        goodput_rps=(good / duration_s if duration_s > 0 else 0.0) if good is not None else None,
        samples={
            "ttft": [v * 1e3 for v in ttft],
            "ttst": [v * 1e3 for v in ttst],
            "itl": [v * 1e3 for v in itl],
            "tpot": [v * 1e3 for v in tpot],
            "e2e": [v * 1e3 for v in e2e],
        },
    )


@dataclass(frozen=True, slots=True)
class PairedCost:
    """What the second read of each pair added over the first (:func:`paired_cost`; ms)."""

    pairs: int
    """Pairs in which both reads produced text (the others are left out of every figure)."""
    ttft_ratio_p50: float
    """Median over pairs of (second TTFT / first TTFT)."""
    ttft_ratio_p99: float
    added_ttft_p50_ms: float
    """Median over pairs of (second TTFT - first TTFT)."""
    added_ttft_p99_ms: float
    added_itl_p1_ms: float
    """Percentiles of the per-gap differences, pooled over the matched pairs (each gap weighs
    the same, as ITL does): ``p1`` and ``p99`` show the spread both ways, ``p50`` the centre."""
    added_itl_p50_ms: float
    added_itl_p99_ms: float
    gaps: int
    """Paired gaps (from the pairs whose reads have the same number of tokens)."""
    unmatched: int
    """Pairs with text whose reads have different numbers of tokens (no gap of theirs counts)."""

    def as_dict(self, prefix: str = "paired_") -> dict[str, float | int]:
        """The figures as a flat dict (for ``extra_info``), each name with ``prefix``."""
        return {f"{prefix}{name}": getattr(self, name) for name in self.__slots__}


def paired_cost(first: Sequence[Timeline], second: Sequence[Timeline]) -> PairedCost:
    """The cost of ``second[i]`` over ``first[i]``, pair by pair (the same request read twice).

    TTFT: the ratio and the difference per pair, then their median and p99 over pairs. ITL:
    the difference of gap ``k`` per pair, for pairs whose reads have the same number of
    non-empty chunks, pooled over those pairs. Percentiles as :func:`percentiles`
    (:func:`numpy.percentile`, linear); ``nan`` where no pair or gap is there.

    >>> raw = [Timeline(0.0, ((0.100, "a"), (0.110, "b"), (0.120, "c")))]
    >>> layer = [Timeline(5.0, ((5.110, "a"), (5.121, "b"), (5.130, "c")))]
    >>> cost = paired_cost(raw, layer)
    >>> round(cost.ttft_ratio_p50, 6), round(cost.added_ttft_p50_ms, 6)
    (1.1, 10.0)
    >>> round(cost.added_itl_p1_ms, 2), round(cost.added_itl_p99_ms, 2), cost.gaps, cost.unmatched
    (-0.98, 0.98, 2, 0)
    """
    if len(first) != len(second):
        raise ValueError(
            f"paired reads need as many first as second: {len(first)} != {len(second)}"
        )
    ratios: list[float] = []
    added: list[float] = []
    diffs: list[float] = []
    unmatched = 0
    for a, b in zip(first, second, strict=True):
        ta, tb = a.ttft_s, b.ttft_s
        if ta is None or tb is None:
            continue
        if ta > 0:
            ratios.append(tb / ta)
        added.append(tb - ta)
        ga, gb = a.itl_s, b.itl_s
        if len(ga) != len(gb):
            unmatched += 1
            continue
        diffs.extend(y - x for x, y in zip(ga, gb, strict=True))

    def q(values: list[float], p: float, scale: float = 1e3) -> float:
        return float(np.percentile(values, p)) * scale if values else math.nan

    return PairedCost(
        pairs=len(added),
        ttft_ratio_p50=q(ratios, 50, 1.0),
        ttft_ratio_p99=q(ratios, 99, 1.0),
        added_ttft_p50_ms=q(added, 50),
        added_ttft_p99_ms=q(added, 99),
        added_itl_p1_ms=q(diffs, 1),
        added_itl_p50_ms=q(diffs, 50),
        added_itl_p99_ms=q(diffs, 99),
        gaps=len(diffs),
        unmatched=unmatched,
    )


def cost_figures(
    first: Sequence[Timeline], second: Sequence[Timeline], prefix: str = ""
) -> dict[str, float | int]:
    """What ``second`` costs over ``first`` (the same requests, in pair order), as flat figures.

    The issue's figures: ``ttft_ratio_p50``/``_p99`` (second's TTFT pNN / first's TTFT pNN)
    and ``added_itl_p50_ms``/``_p99_ms`` (second's pooled ITL pNN - first's), then the paired
    ones of :func:`paired_cost` as ``paired_*``; every name with ``prefix``. ``nan`` where a
    side has no TTFT (or ITL) at all.

    >>> raw = [Timeline(0.0, ((0.100, "a"), (0.110, "b"), (0.120, "c")))]
    >>> layer = [Timeline(5.0, ((5.110, "a"), (5.121, "b"), (5.130, "c")))]
    >>> f = cost_figures(raw, layer, "vs_raw_httpx_")
    >>> round(f["vs_raw_httpx_ttft_ratio_p50"], 6), round(f["vs_raw_httpx_paired_ttft_ratio_p50"], 6)
    (1.1, 1.1)
    >>> round(f["vs_raw_httpx_added_itl_p99_ms"], 2), f["vs_raw_httpx_paired_gaps"]
    (0.98, 2)
    """
    a, b = summarize(first), summarize(second)

    def ratio(q: str) -> float:
        x, y = a.ttft_ms.get(q, math.nan), b.ttft_ms.get(q, math.nan)
        return y / x if x > 0 else math.nan

    def added(q: str) -> float:
        return b.itl_ms.get(q, math.nan) - a.itl_ms.get(q, math.nan)

    return {
        f"{prefix}ttft_ratio_p50": ratio("p50"),
        f"{prefix}ttft_ratio_p99": ratio("p99"),
        f"{prefix}added_itl_p50_ms": added("p50"),
        f"{prefix}added_itl_p99_ms": added("p99"),
        **paired_cost(first, second).as_dict(f"{prefix}paired_"),
    }


def headline_lines(benchmarks: Sequence[Benchmark]) -> list[str]:
    """The stream suite's headline lines (``samplemind-bench headline``): TTFT and ITL first.

    ``benchmarks`` are the stream suite's benchmarks as the results reader gives them
    (:class:`bench.results.Benchmark`).
    """
    lines: list[str] = []

    def ms(value: Any) -> str:
        if not isinstance(value, int | float) or not math.isfinite(value):
            return "-"
        return f"{value:.2f} ms" if abs(value) >= 0.1 else f"{value * 1e3:.1f} µs"

    def ratio(value: Any) -> str:
        return f"{value:.1f}x" if isinstance(value, int | float) else "-"

    def ratio2(value: Any) -> str:  # the layer cost's goal is 1.1x: two decimals
        return f"{value:.2f}x" if isinstance(value, int | float) else "-"

    for b in benchmarks:
        name, x = b.name, b.extra_info
        label = name[name.find("[") + 1 : -1] if "[" in name else name
        local = x.get("local_model")
        if isinstance(local, Mapping) and "ttft_new_p50_ms" in x:  # test_stream_local
            lines.append(
                f"stream {local.get('label')}: TTFT p50 {ms(x['ttft_new_p50_ms'])} for a new "
                f"prompt, {ms(x.get('ttft_prefix_p50_ms'))} with a cached prefix; a short answer "
                f"p50 {ms(x.get('short_new_p50_ms'))} ({ms(x.get('short_prefix_p50_ms'))} cached "
                f"prefix); {x.get('concurrent_streams')} streams {x.get('concurrent_at_once')} at "
                f"a time: TTFT p50 "
                f"{ms(x.get('concurrent_ttft_p50_ms'))}, {x.get('cut_streams')} cut short; "
                f"replayed from the cache {ms(x.get('replay_ttft_p50_ms'))} "
                f"({ratio(x.get('replay_speedup'))} faster)"
            )
        elif "ttft_speedup" in x:
            lines.append(
                f"stream {label}: TTFT p50 {ms(x.get('ttft_p50_ms'))} (p99 "
                f"{ms(x.get('ttft_p99_ms'))}), {ratio(x['ttft_speedup'])} faster than upstream, "
                f"{ratio(x.get('replay_vs_complete_hit'))} a plain cache hit; ITL p99 "
                f"{ms(x.get('itl_p99_ms'))}; chunk fidelity {x.get('chunk_fidelity')}; "
                f"upstream calls {x.get('upstream_calls')} for {x.get('distinct_requests')} requests"
            )
        elif label.endswith("-upstream"):
            lines.append(
                f"stream {label}: TTFT p50 {ms(x.get('ttft_p50_ms'))}, p99 "
                f"{ms(x.get('ttft_p99_ms'))}; ITL p99 {ms(x.get('itl_p99_ms'))}"
            )
        elif "burst" in x:
            lines.append(
                f"stream single-flight {x['burst']}: {x.get('upstream_calls')} upstream call(s), "
                f"chunk fidelity {x.get('chunk_fidelity')}, followers' TTFT p50 "
                f"{ms(x.get('follower_ttft_p50_ms'))} vs leader {ms(x.get('leader_ttft_ms'))}"
            )
        elif "ttft_ratio_p50" in x:
            paired = x.get("paired_ttft_ratio_p50")
            cell = x.get("cell")
            own = x.get("vs_raw_httpx_ttft_ratio_p50")  # the httpx cells (decision 0860)
            lines.append(
                f"stream layer cost {label}: TTFT p50 {ratio2(x['ttft_ratio_p50'])} the raw aiohttp "
                f"read, added ITL p50 {ms(x.get('added_itl_p50_ms'))}, p99 "
                f"{ms(x.get('added_itl_p99_ms'))} at {x.get('concurrent_streams')} streams"
                + (
                    f"; paired reads: TTFT ratio p50 {ratio2(paired)}, added ITL p99 "
                    f"{ms(x.get('paired_added_itl_p99_ms'))}"
                    if paired is not None
                    else ""
                )
                + (
                    f"; on httpx: the layer's own TTFT p50 {ratio2(own)} a raw httpx read "
                    f"(paired {ratio2(x.get('vs_raw_httpx_paired_ttft_ratio_p50'))}), added ITL "
                    f"p99 {ms(x.get('vs_raw_httpx_added_itl_p99_ms'))}; raw httpx TTFT p50 "
                    f"{ratio2(x.get('raw_httpx_vs_raw_aiohttp_ttft_ratio_p50'))} raw aiohttp's "
                    f"(paired {ratio2(x.get('raw_httpx_vs_raw_aiohttp_paired_ttft_ratio_p50'))})"
                    if own is not None
                    else ""
                )
                + (
                    f" ({'the goal cell' if x.get('goal_cell') else 'stress cell'}, "
                    f"latency scale {x.get('latency_scale')})"
                    if cell is not None
                    else ""
                )
            )
        elif "processes" in x:
            calls = x.get("upstream_calls", x.get("upstream_calls_unshared"))
            lines.append(
                f"stream {label}: {calls} upstream call(s), chunk fidelity "
                f"{x.get('chunk_fidelity')}, others' TTFT p50 "
                f"{ms(x.get('follower_ttft_p50_ms'))} vs leader {ms(x.get('leader_ttft_ms'))}"
            )
    return lines


def goodput_line(x: Mapping[str, Any]) -> str | None:
    """The headline line of an open-loop stream entry (the load suite's stream mode), or None."""
    mode = x.get("mode", "")
    slo = x.get("slo", "")
    if "stream_knee_per_s" in x:
        offered = [float(v) for v in x.get("curve_offered_per_s") or []]
        good = x.get("curve_good_share") or []
        limit = x.get("generator_limit_per_s")
        shares = ", ".join(
            f"{o:g}/s {float(g):.0%}" for o, g in zip(offered, good, strict=False) if g is not None
        )
        return (
            f"load {mode} streams: {knee_text(float(x['stream_knee_per_s']), offered, limit)} "
            f"({x.get('good_share_bound', 0.95):.0%} of requests meeting '{slo}'; good share "
            f"{shares}); {x.get('stream_interrupted')} interrupted, "
            f"{x.get('other_errors')} other errors"
        )
    if "stream_interrupted" in x and "faults" in x:
        faults = ", ".join(
            f"{f.get('name')} ({f.get('spec')}) {f.get('caller_errors')} interrupted"
            for f in x.get("faults") or []
        )
        return (
            f"load {mode} stream faults at {x.get('offered_per_s'):g}/s: "
            f"{x.get('stream_interrupted')} StreamInterrupted, {x.get('other_errors')} other "
            f"errors of {x.get('requests')} streams; good share {float(x.get('good_share', 0)):.0%} "
            f"('{slo}'); {faults}"
        )
    return None
