"""What the stream suite drives: timed reads through ``AIManager.stream()`` and a raw aiohttp read.

* :func:`timed_stream`: one request through the layer, as a
  :class:`~bench.harness.streams.Timeline` (send time, arrival and text of every chunk,
  the provider's output token count) plus the chunk texts and the final response.
* :func:`raw_openai_stream`: the same emulator stream read with plain aiohttp (the
  request the layer's OpenAI adapter builds, SSE lines parsed with orjson, no layer):
  the floor the layer's per-chunk cost is measured against.
* :func:`raw_httpx_stream` on :func:`raw_httpx_client`: the same read with a plain
  ``httpx.AsyncClient`` set up as the layer's httpx transport is (limits, timeouts, HTTP/1.1
  or HTTP/2): what httpx costs without the layer, so that the layer's own cost on httpx and
  httpx's wire cost against aiohttp are two figures (decision 0860; not a floor: its plain
  pool is slower at 100 streams than the layer's guarded one, decision 0861).
* :func:`wave`: N coroutines started together (``asyncio.gather``), each returning its result.
* :func:`paired_rounds`: the layer-cost test's schedule: each request read once raw and once
  through the layer (pair ``i``), per round either each side alone (``alternating``) or both
  at once with pair ``i``'s two reads started next to each other (``together``).
  :func:`side_rounds` is the same schedule for any number of reads per request (the httpx
  cells' ``alternating`` reads each request three times: raw aiohttp, raw httpx, the layer);
  :func:`phase_rounds` runs several such comparisons one after another, each on its own
  requests (the httpx cells' ``together``: three pairs, each pair alone).
* Open loop (the load suite's stream mode): :class:`StreamRecorder` turns the load engine's
  calls (bench/suites/load_engine.py, Poisson arrivals, fault schedule) into streams timed
  from their *scheduled* arrival, and :func:`goodput_point` measures one offered rate:
  goodput under an :class:`~bench.harness.streams.SLO` (vLLM ``--goodput``), the share of
  requests meeting it, ``StreamInterrupted`` apart from every other caller error, and how
  late the generator launched arrivals (its own limit, :data:`GENERATOR_LAG_MS`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import aiohttp
import httpx
import orjson

from bench.harness.aggregate import percentile
from bench.harness.streams import SLO, StreamStats, Timeline, summarize
from bench.suites import load_engine
from fixtures.workloads import WorkloadItem
from samplemind_core import ChatRequest, ChatResponse, HttpConfig
from samplemind_core.manager import AIManager
from samplemind_core.providers import Provider

__all__ = [
    "GENERATOR_LAG_MS",
    "GOOD_SHARE",
    "LIVENESS_S",
    "SCHEDULES",
    "GoodputPoint",
    "Reader",
    "StreamRead",
    "StreamRecorder",
    "goodput_point",
    "paired_rounds",
    "phase_rounds",
    "raw_httpx_client",
    "raw_httpx_stream",
    "raw_openai_stream",
    "same_chunks",
    "side_rounds",
    "stream_items",
    "timed_stream",
    "wave",
]

T = TypeVar("T")
LIVENESS_S = 120.0
"""No stream of the suite may take longer (a hang fails instead of blocking the run)."""


@dataclass(frozen=True, slots=True)
class StreamRead:
    """One stream as a caller saw it."""

    timeline: Timeline
    chunks: tuple[str, ...]
    response: ChatResponse | None
    launch_lag_s: float = 0.0
    """How late the read started after its scheduled arrival (0 unless ``start`` was given)."""
    http_version: str | None = None
    """The reply's HTTP version, where the reader saw it (:func:`raw_httpx_stream`)."""


STREAM_MAX_TOKENS: Final = 64
"""``max_tokens`` of the stream and load suites' streamed requests (:func:`stream_request`):
a short description, which keeps one upstream wave at real pacing to a few seconds."""


def stream_request(
    provider: str, tag: str, max_tokens: int = STREAM_MAX_TOKENS, *, sample: str = "stream"
) -> ChatRequest:
    """A streamed request ``tag`` to ``provider``, describing the sample ``<sample>_<tag>.wav``
    (a distinct prompt per tag; the emulator's reply, and with keyed latency its pacing,
    depend on it)."""
    return ChatRequest(
        messages=[
            {"role": "system", "content": "You describe music samples for producers."},
            {"role": "user", "content": f"Describe '{sample}_{tag}.wav' in two sentences."},
        ],
        provider=provider,
        max_tokens=max_tokens,
        temperature=0.0,
    )


async def timed_stream(
    ai: AIManager,
    request: ChatRequest,
    *,
    clock: Callable[[], float] = time.perf_counter,
    start: float | None = None,
) -> StreamRead:
    """Read ``request`` through ``ai.stream()``, timing every chunk's arrival.

    ``start``: the request's scheduled arrival on ``clock`` (open loop): its TTFT and E2E are
    measured from there, so a loop too busy to start the read on time shows as queueing
    delay (no coordinated omission); the lateness itself is ``launch_lag_s``.
    """
    arrivals: list[tuple[float, str]] = []
    async with asyncio.timeout(LIVENESS_S):
        now = clock()
        start = now if start is None or start > now else start
        async with ai.stream(request) as stream:
            async for chunk in stream:
                arrivals.append((clock(), chunk.text))
            response = stream.response
    tokens = response.usage.output_tokens or None
    return StreamRead(
        Timeline(start, tuple(arrivals), tokens),
        tuple(t for _, t in arrivals),
        response,
        launch_lag_s=now - start,
    )


def _sse_line(line: bytes) -> tuple[str | None, int | None]:
    """One line of an OpenAI SSE stream: (the text of a chunk with ``choices``, or None;
    the output tokens of the usage-only chunk, or None). Keep-alives, ``[DONE]`` and blank
    lines give (None, None)."""
    if not line.startswith(b"data: {"):
        return None, None
    event: Any = orjson.loads(line[6:])
    choices = event.get("choices")
    if choices:
        return choices[0].get("delta", {}).get("content") or "", None
    if event.get("usage"):
        return None, int(event["usage"].get("completion_tokens") or 0) or None
    return None, None


async def raw_openai_stream(
    session: aiohttp.ClientSession,
    provider: Provider,
    request: ChatRequest,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> StreamRead:
    """Read the OpenAI-format stream of ``request`` with plain aiohttp (no layer)."""
    method, url, headers, body = provider.build_stream_request(request, provider.default_model)
    arrivals: list[tuple[float, str]] = []
    tokens: int | None = None
    async with asyncio.timeout(LIVENESS_S):
        start = clock()
        async with session.request(method, url, headers=headers, data=orjson.dumps(body)) as r:
            r.raise_for_status()
            async for line in r.content:
                text, used = _sse_line(line)
                if text is not None:
                    arrivals.append((clock(), text))
                elif used is not None:
                    tokens = used
    return StreamRead(
        Timeline(start, tuple(arrivals), tokens), tuple(t for _, t in arrivals if t), None
    )


def raw_httpx_client(config: HttpConfig) -> httpx.AsyncClient:
    """A plain ``httpx.AsyncClient`` with the settings the layer's httpx transport takes from
    ``config`` (:func:`samplemind_core.http.build_transport`): the same ``httpx.Limits``
    (``max_connections``, ``max_keepalive_connections``, ``keepalive_expiry_s``), the same
    timeouts, HTTP/1.1 always and HTTP/2 when ``config.http2`` (negotiated by ALPN over TLS,
    so HTTP/1.1 on a cleartext URL, as the layer), no environment (``trust_env=False``).

    What it has not: the layer's pool guard (admission gate, linear assignment pass,
    coalesced writes: :mod:`samplemind_core._pool_guard`). It is what a user of httpx who
    wrote the call without SampleMind would run (at 100 concurrent streams slower than the
    layer on httpx: its pool's bookkeeping, decision 0861).
    """
    return httpx.AsyncClient(
        limits=httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_keepalive_connections,
            keepalive_expiry=config.keepalive_expiry_s,
        ),
        timeout=httpx.Timeout(
            connect=config.connect_timeout_s,
            read=config.read_timeout_s,
            write=config.write_timeout_s,
            pool=config.pool_timeout_s,
        ),
        http1=True,
        http2=config.http2,
        trust_env=False,
    )


async def raw_httpx_stream(
    client: httpx.AsyncClient,
    provider: Provider,
    request: ChatRequest,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> StreamRead:
    """Read the OpenAI-format stream of ``request`` with a plain ``httpx.AsyncClient`` (no layer).

    The same request bytes and SSE parsing as :func:`raw_openai_stream`: the body as it
    arrives (``aiter_bytes``), split into lines as bytes (aiohttp's ``StreamReader`` line
    iteration does the same), each ``data:`` line decoded with orjson; so the two raw reads
    differ by their transport only. The response's HTTP version is kept in ``http_version``.
    """
    method, url, headers, body = provider.build_stream_request(request, provider.default_model)
    arrivals: list[tuple[float, str]] = []
    tokens: int | None = None
    async with asyncio.timeout(LIVENESS_S):
        start = clock()
        async with client.stream(method, url, headers=headers, content=orjson.dumps(body)) as r:
            r.raise_for_status()
            version = r.http_version
            tail = b""
            async for data in r.aiter_bytes():
                lines = (tail + data).split(b"\n") if tail else data.split(b"\n")
                tail = lines.pop()
                for line in lines:
                    text, used = _sse_line(line)
                    if text is not None:
                        arrivals.append((clock(), text))
                    elif used is not None:
                        tokens = used
            text, used = _sse_line(tail)  # a last line without its newline
            if text is not None:
                arrivals.append((clock(), text))
            elif used is not None:
                tokens = used
    return StreamRead(
        Timeline(start, tuple(arrivals), tokens),
        tuple(t for _, t in arrivals if t),
        None,
        http_version=version,
    )


async def wave(n: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    """``make(0)`` ... ``make(n - 1)`` started together; their results in order."""
    return list(await asyncio.gather(*(make(i) for i in range(n))))


SCHEDULES: Final = ("alternating", "together", "together_waves")
"""The schedules of :func:`paired_rounds` (the layer-cost test runs the first two)."""

Reader = Callable[[ChatRequest], Awaitable[StreamRead]]
"""One way of reading a request (raw aiohttp, raw httpx, through the layer)."""


async def side_rounds(
    sides: Sequence[Reader],
    requests: Callable[[int], Sequence[ChatRequest]],
    *,
    rounds: int,
    schedule: str,
    start: int = 0,
) -> list[list[StreamRead]]:
    """Read each request of ``requests(r)`` (r = start .. start + rounds - 1) once with every
    reader of ``sides``; returns one list per side, all in request order (``out[s][k]`` and
    ``out[t][k]`` read the same request: with an emulator in keyed latency, the same TTFT and
    token gaps).

    * ``alternating``: per round one wave per side (all its reads at once), each side alone;
      the sides in their given order in even rounds, reversed in odd rounds.
    * ``together``: per round every read at once, request ``i``'s reads started next to each
      other, in the given order for even ``i`` and reversed for odd ``i``.
    * ``together_waves``: every read at once, side by side wave after wave (each side's wave
      started before the next side's).

    Reversing (rather than rotating) the order makes every *pair* of sides swap places from
    one round (or request) to the next: with an even number of rounds (``alternating``) or of
    requests (``together``), each side of any pair goes first equally often, whatever the
    number of sides. With two sides this is exactly :func:`paired_rounds`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if not sides:
        raise ValueError("side_rounds needs at least one side")
    k = len(sides)
    out: list[list[StreamRead]] = [[] for _ in sides]
    forward = list(range(k))
    backward = forward[::-1]
    for r in range(start, start + rounds):
        batch = list(requests(r))
        n = len(batch)

        def side_wave(s: int, batch: list[ChatRequest] = batch) -> Awaitable[list[StreamRead]]:
            return wave(len(batch), lambda j: sides[s](batch[j]))

        if schedule == "together":
            reads: list[Awaitable[StreamRead]] = []
            for i in range(n):
                reads.extend(sides[s](batch[i]) for s in (forward if i % 2 == 0 else backward))
            done = await asyncio.gather(*reads)
            for i in range(n):
                group = done[k * i : k * i + k]
                for pos, s in enumerate(forward if i % 2 == 0 else backward):
                    out[s].append(group[pos])
        elif schedule == "together_waves":
            waves = await asyncio.gather(*(side_wave(s) for s in forward))
            for s in forward:
                out[s].extend(waves[s])
        else:
            for s in forward if r % 2 == 0 else backward:
                out[s].extend(await side_wave(s))
    return out


async def phase_rounds(
    phases: Mapping[str, Sequence[Reader]],
    requests: Callable[[str, int], Sequence[ChatRequest]],
    *,
    rounds: int,
    schedule: str,
) -> dict[str, list[list[StreamRead]]]:
    """Several comparisons, each its own :func:`side_rounds` on its own requests, one round
    of each after the other: per round ``r`` every phase of ``phases`` (name -> its sides)
    reads ``requests(name, r)`` with ``schedule``, the phases in their given order in even
    rounds and reversed in odd rounds. Returns per phase one list per side, in request order.

    For comparisons that must not share the event loop with a third side: the httpx cells'
    ``together`` runs (raw aiohttp, layer), (raw httpx, layer) and (raw aiohttp, raw httpx)
    as three such phases, each pair alone under the load of its own 2 x N reads (a plain
    httpx pool beside the other two would set the load of all three: decision 0860).
    """
    names = list(phases)
    out: dict[str, list[list[StreamRead]]] = {name: [[] for _ in phases[name]] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            got = await side_rounds(
                phases[name],
                functools.partial(requests, name),
                rounds=1,
                schedule=schedule,
                start=r,
            )
            for side, reads in zip(out[name], got, strict=True):
                side.extend(reads)
    return out


async def paired_rounds(
    ai: AIManager,
    session: aiohttp.ClientSession,
    provider: Provider,
    requests: Callable[[int], Sequence[ChatRequest]],
    *,
    rounds: int,
    schedule: str,
    second: Reader | None = None,
) -> tuple[list[StreamRead], list[StreamRead]]:
    """Read each request of ``requests(r)`` (r = 0 .. rounds - 1) raw and through ``ai``.

    ``second`` replaces the read through ``ai`` (e.g. a second raw read: an A/A pair, the
    schedule's own noise floor).

    Returns (raw reads, layer reads), both in pair order: ``raw[k]`` and ``layer[k]`` read the
    same request (with an emulator started with keyed latency, the same TTFT and token gaps).
    :func:`side_rounds` with the sides (raw, layer):

    * ``alternating``: per round one wave of every raw read, then one of every layer read, the
      side that goes first alternating by round (even rounds raw first): each side alone.
    * ``together``: per round all reads at once, pair ``i``'s two reads started next to each
      other, which side first alternating by ``i`` (even ``i`` raw first): the same load on
      both sides, and no side started ahead of the other.
    * ``together_waves``: all reads at once, the raw wave's 100 started before the layer's
      (the test's order before 2026-12-07, kept to measure what that order did).
    """

    def raw_read(request: ChatRequest) -> Awaitable[StreamRead]:
        return raw_openai_stream(session, provider, request)

    def layer_read(request: ChatRequest) -> Awaitable[StreamRead]:
        return timed_stream(ai, request) if second is None else second(request)

    raw, layer = await side_rounds(
        [raw_read, layer_read], requests, rounds=rounds, schedule=schedule
    )
    return raw, layer


def same_chunks(first: Sequence[StreamRead], second: Sequence[StreamRead]) -> float:
    """Share of pairs whose chunk lists are identical (1.0: every replay chunk-faithful)."""
    if not first:
        return 0.0
    same = sum(a.chunks == b.chunks for a, b in zip(first, second, strict=True))
    return same / len(first)


# --------------------------------------------------------------------------- open loop

GOOD_SHARE: Final = 0.95
"""The knee's criterion: at least this share of the offered requests met every SLO."""
GENERATOR_LAG_MS: Final = 100.0
"""The generator's own limit: when the median of how late arrivals were launched exceeds this,
the one event loop that runs the generator and the layer could not keep the schedule, and the
point says so instead of blaming the layer alone. The median, not a tail: a moment the loop
was blocked (a connection's first TLS context, a GC pause) delays a few arrivals; a generator
at its limit is late for most of them."""


def stream_items(requests: Sequence[ChatRequest]) -> list[WorkloadItem]:
    """The load engine's items for ``requests`` (task and priority are not used by streams)."""
    return [WorkloadItem("chat", "quality", r) for r in requests]


@dataclass(slots=True)
class StreamRecorder:
    """The load engine's ``complete_at`` for streams: one timed read per call, kept in ``reads``.

    ``LoadTarget.complete_at`` gets the call's scheduled arrival; :func:`timed_stream` measures
    TTFT from it. A stream that fails raises through (the engine counts the error by type:
    ``StreamInterrupted`` when text had gone out) and leaves no read.
    """

    ai: AIManager
    reads: list[StreamRead] = field(default_factory=list)

    async def complete_at(self, item: WorkloadItem, scheduled: float) -> ChatResponse | None:
        read = await timed_stream(self.ai, item.request, start=scheduled)
        self.reads.append(read)
        return read.response

    def take(self) -> list[StreamRead]:
        """The reads since the last call, and start afresh."""
        reads, self.reads = self.reads, []
        return reads


@dataclass(frozen=True, slots=True)
class GoodputPoint:
    """One offered rate of open-loop streams: the engine's point, the reads, the SLO figures."""

    offered_per_s: float
    window_s: float
    """The arrival window: goodput and the offered rate are per second of it (vLLM)."""
    point: load_engine.Point
    reads: list[StreamRead]
    stats: StreamStats
    slo: SLO

    @property
    def requests(self) -> int:
        return len(self.point.calls)

    @property
    def error_types(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.point.calls:
            if c.error is not None:
                out[c.error] = out.get(c.error, 0) + 1
        return out

    @property
    def stream_interrupted(self) -> int:
        """Callers who got ``StreamInterrupted`` (text had gone out, then the stream failed)."""
        return self.error_types.get("StreamInterrupted", 0)

    @property
    def other_errors(self) -> int:
        """Every other error a caller saw (goal 0: the gate holds it)."""
        return self.point.errors - self.stream_interrupted

    @property
    def good_share(self) -> float:
        return (self.stats.good or 0) / self.requests if self.requests else 0.0

    def launch_lag_ms(self, q: float) -> float:
        """The ``q``-th percentile of how late the reads started after their arrivals (ms)."""
        lags = [r.launch_lag_s for r in self.reads]
        return percentile(lags, q) * 1e3 if lags else 0.0

    @property
    def generator_limited(self) -> bool:
        """Most arrivals were launched too late to call the point a measure of the layer."""
        return self.launch_lag_ms(50) > GENERATOR_LAG_MS

    @property
    def acceptable(self) -> bool:
        """Under the knee: :data:`GOOD_SHARE` good, no other error, the generator on time."""
        return (
            self.requests > 0
            and self.good_share >= GOOD_SHARE
            and self.other_errors == 0
            and not self.generator_limited
        )

    def figures(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.offered_per_s,
            "requests": self.requests,
            "goodput_rps": self.stats.goodput_rps,
            "good_share": self.good_share,
            "ttft_p50_ms": self.stats.ttft_ms.get("p50"),
            "ttft_p99_ms": self.stats.ttft_ms.get("p99"),
            "tpot_p99_ms": self.stats.tpot_ms.get("p99"),
            "stream_interrupted": self.stream_interrupted,
            "other_errors": self.other_errors,
            "launch_lag_p50_ms": self.launch_lag_ms(50),
            "launch_lag_p99_ms": self.launch_lag_ms(99),
            "loop_lag_p99_ms": self.point.lag.get("loop_lag_p99_ms", 0.0),
        }


async def goodput_point(
    target: load_engine.LoadTarget,
    recorder: StreamRecorder,
    items: Sequence[WorkloadItem],
    *,
    rate: float,
    seconds: float,
    slo: SLO,
    seed: int = 0,
) -> GoodputPoint:
    """Poisson arrivals of ``items`` at ``rate``/s for ``seconds`` through ``target`` (whose
    ``complete_at`` is ``recorder``'s), every stream read to its end: one :class:`GoodputPoint`."""
    recorder.take()
    point = await load_engine.open_loop(
        target, items, rate=rate, duration_s=seconds, seed=seed, truth=[False] * len(items)
    )
    reads = recorder.take()
    stats = summarize([r.timeline for r in reads], duration_s=seconds, slo=slo)
    return GoodputPoint(rate, seconds, point, reads, stats, slo)
