"""Where the layer's clumped chunk gaps come from (issue 20 §2, the added-ITL goal).

The layer-cost test (``bench/suites/test_stream.py::test_stream_layer_cost``, paired reads of
the same emulator streams with keyed latency) found, at real-world pacing with both sides
running at once (``together``), the layer's gap ``k`` off its raw twin's by -135/+102 ms at
p1/p99 against an A/A floor of about ±6 ms (docs/measurements/2026-12-07-layer-cost-paced.md).
This study times every text chunk of both reads at three points:

* ``sock``: when the bytes that complete its SSE event were handed to the response's
  ``aiohttp.StreamReader`` (``feed_data``, called from the protocol's ``data_received``: the
  loop iteration that read them from the socket);
* ``push`` (the layer only): when the layer's producer task parsed it
  (``UpstreamFeed.push``);
* ``recv``: when the caller's task got it (the raw read's own loop; the layer's
  ``async for chunk in stream``).

and during the run the event loop's lag (a ticker task sleeping 1 ms: how late it woke) and
every garbage collection (``gc.callbacks``). The pairs are split into: the part of the per-gap
difference already in the bytes' arrival (``sock`` gaps, layer minus raw), and the part added
between arrival and the caller (each side's ``recv - sock`` delay, layer minus raw).

``--reads`` names the reads of each request, started side by side (the first rotating), every
pair of them compared: ``raw`` (the suite's raw aiohttp read), ``layer`` (``AIManager.stream``),
``raw^`` (a raw read started when the layer read's request begins to go out: aligned with the
layer in time, no layer on its path), ``direct`` (the layer's provider stream read in the
caller's own task, no router, feed or cache: the prototype of decision 0760), ``hop`` (the
layer with its read never lent to the caller: the producer task reads every chunk and hands
it over, the per-chunk path before decision 0800; ``layer`` lends it to a single reader),
each optionally ``@MS`` (started MS later: is a later start alone enough to make the gaps
differ?). ``raw,raw@0`` is the A/A floor. The instrumentation is in this study, not
in the product (it wraps ``StreamReader.feed_data``, ``UpstreamFeed.push``,
``ClientRequest.send`` and the raw path's response for the duration of the run)::

    nice python studies/stream_clumps.py --rounds 2 --no-cache --reads raw,raw^,layer
    nice python studies/stream_clumps.py --rounds 2 --reads raw,raw^,layer
    nice python studies/stream_clumps.py --rounds 2 --no-cache --reads raw,raw@130
    nice python studies/stream_clumps.py --rounds 2 --no-cache --reads raw,direct,layer
    nice python studies/stream_clumps.py --rounds 2 --no-cache --reads raw,hop,layer,direct

Prints one JSON object. Only the aiohttp transport (the probe is aiohttp's StreamReader).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import itertools
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import aiohttp.streams
import numpy as np
import orjson
from redis.asyncio import Redis

from bench.suites.stream_engine import LIVENESS_S, stream_request
from fixtures.redis import RedisServer
from fixtures.servers import start_emulator
from samplemind_core import (
    CacheConfig,
    ChatRequest,
    HttpConfig,
    Settings,
    StreamConfig,
    _streaming,
    http,
)
from samplemind_core.cache import ResponseCache
from samplemind_core.manager import AIManager
from samplemind_core.providers import Provider

_perf = time.perf_counter


@dataclass(slots=True)
class Probe:
    """One read's times (perf_counter seconds)."""

    side: str
    start: float = 0.0
    sent: float = 0.0  # when aiohttp began writing the request (ClientRequest.send)
    sending: asyncio.Event | None = None  # set when this read's request starts going out
    lend: bool = True  # layer: the producer may lend its read to the caller (False: hop)
    opened: float = 0.0  # layer: AIManager._open_feed returned (key, lookup; the feed's there)
    produce: float = 0.0  # layer: the producer task's first step (AIManager._produce)
    claimed: float = 0.0  # the producer's own relay claim returned (ResponseCache._relay_claim;
    # on one server the claim goes with the lookup, before ``opened``: decision 0880)
    reader: Any = None  # the response's aiohttp StreamReader
    pushes: list[float] = field(default_factory=list)
    recv: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def sock(self) -> list[float]:
        """Per text chunk: when the bytes completing its SSE event were fed to the reader."""
        out: list[float] = []
        buf = b""
        for at, data in FEEDS.get(self.reader, ()):
            buf += data
            while (end := buf.find(b"\n\n")) >= 0:
                event, buf = buf[:end], buf[end + 2 :]
                for line in event.split(b"\n"):
                    if line.startswith(b"data: {"):
                        obj = orjson.loads(line[6:])
                        choices = obj.get("choices")
                        if choices and (choices[0].get("delta", {}).get("content") or ""):
                            out.append(at)
        return out


PROBE: contextvars.ContextVar[Probe | None] = contextvars.ContextVar("probe", default=None)
FEEDS: dict[Any, list[tuple[float, bytes]]] = {}


PAUSES: list[float] = []
"""When aiohttp paused a response's transport (its StreamReader over the high-water mark)."""


def _install() -> Callable[[], None]:
    """Wrap the probe points; returns the function that unwraps them."""
    from aiohttp.client_proto import ResponseHandler

    from samplemind_core.cache import ResponseCache

    pause = ResponseHandler.pause_reading
    open_feed = AIManager._open_feed
    produce = AIManager._produce
    claim = ResponseCache._relay_claim
    drive = _streaming.UpstreamFeed.drive

    def pause_probe(self: Any) -> None:
        PAUSES.append(_perf())
        pause(self)

    async def open_probe(self: Any, *args: Any) -> Any:
        got = await open_feed(self, *args)
        if (probe := PROBE.get()) is not None:
            probe.opened = _perf()
        return got

    async def produce_probe(self: Any, *args: Any) -> None:
        if (probe := PROBE.get()) is not None:
            probe.produce = _perf()
        await produce(self, *args)

    async def claim_probe(self: Any, *args: Any, **kwargs: Any) -> Any:
        got = await claim(self, *args, **kwargs)
        if (probe := PROBE.get()) is not None and not probe.claimed:
            probe.claimed = _perf()
        return got

    reader_cls = aiohttp.streams.StreamReader
    feed_data = reader_cls.feed_data
    push = _streaming.UpstreamFeed.push
    init = http._AiohttpStreamResponse.__init__
    send = aiohttp.ClientRequest.send

    async def drive_probe(self: Any, step: Any, watch: Any, *, lend: bool) -> None:
        probe = PROBE.get()  # a hop read: the producer reads every chunk itself
        await drive(self, step, watch, lend=lend and (probe is None or probe.lend))

    def feed_probe(self: Any, data: bytes, *args: Any) -> Any:
        log = FEEDS.get(self)
        if log is not None and data:
            log.append((_perf(), bytes(data)))
        return feed_data(self, data, *args)

    def push_probe(self: Any, text: str) -> None:
        probe = PROBE.get()  # the producer task's context is a copy of its caller's
        if probe is not None:
            probe.pushes.append(_perf())
        push(self, text)

    def init_probe(self: Any, raw: Any, *args: Any) -> None:
        probe = PROBE.get()
        if probe is not None:
            _watch(probe, raw)
        init(self, raw, *args)

    async def send_probe(self: Any, conn: Any) -> Any:
        probe = PROBE.get()
        if probe is not None:
            probe.sent = _perf()
            if probe.sending is not None:
                probe.sending.set()
        return await send(self, conn)

    ResponseHandler.pause_reading = pause_probe  # type: ignore[method-assign]
    AIManager._open_feed = open_probe  # type: ignore[method-assign,assignment]
    AIManager._produce = produce_probe  # type: ignore[method-assign,assignment]
    ResponseCache._relay_claim = claim_probe  # type: ignore[method-assign]
    aiohttp.ClientRequest.send = send_probe  # type: ignore[method-assign]
    reader_cls.feed_data = feed_probe  # type: ignore[method-assign,assignment]
    _streaming.UpstreamFeed.push = push_probe  # type: ignore[method-assign]
    _streaming.UpstreamFeed.drive = drive_probe  # type: ignore[method-assign]
    http._AiohttpStreamResponse.__init__ = init_probe  # type: ignore[method-assign,assignment]

    def undo() -> None:
        ResponseHandler.pause_reading = pause  # type: ignore[method-assign]
        AIManager._open_feed = open_feed  # type: ignore[method-assign]
        AIManager._produce = produce  # type: ignore[method-assign]
        ResponseCache._relay_claim = claim  # type: ignore[method-assign]
        aiohttp.ClientRequest.send = send  # type: ignore[method-assign]
        reader_cls.feed_data = feed_data  # type: ignore[method-assign]
        _streaming.UpstreamFeed.push = push  # type: ignore[method-assign]
        _streaming.UpstreamFeed.drive = drive  # type: ignore[method-assign]
        http._AiohttpStreamResponse.__init__ = init  # type: ignore[method-assign]

    return undo


def _watch(probe: Probe, response: aiohttp.ClientResponse) -> None:
    """Log the body bytes of ``response`` from now (and what it holds already)."""
    reader = response.content
    probe.reader = reader
    held = b"".join(reader._buffer) if reader._buffer else b""
    FEEDS[reader] = [(_perf(), held)] if held else []


async def raw_read(
    session: aiohttp.ClientSession, provider: Provider, request: ChatRequest, probe: Probe
) -> Probe:
    """``bench.suites.stream_engine.raw_openai_stream`` with the probe (same reads)."""
    method, url, headers, body = provider.build_stream_request(request, provider.default_model)
    PROBE.set(probe)  # (ClientRequest.send's probe)
    async with asyncio.timeout(LIVENESS_S):
        probe.start = _perf()
        async with session.request(method, url, headers=headers, data=orjson.dumps(body)) as r:
            r.raise_for_status()
            _watch(probe, r)
            async for line in r.content:
                if not line.startswith(b"data: {"):
                    continue
                event: Any = orjson.loads(line[6:])
                choices = event.get("choices")
                if choices:
                    text = choices[0].get("delta", {}).get("content") or ""
                    if text:
                        probe.recv.append(_perf())
                        probe.texts.append(text)
    return probe


async def layer_read(ai: AIManager, request: ChatRequest, probe: Probe) -> Probe:
    """``bench.suites.stream_engine.timed_stream`` with the probe (same reads)."""
    PROBE.set(probe)  # this task's context; the producer task copies it
    async with asyncio.timeout(LIVENESS_S):
        probe.start = _perf()
        async with ai.stream(request) as stream:
            async for chunk in stream:
                probe.recv.append(_perf())
                probe.texts.append(chunk.text)
    return probe


async def direct_read(ai: AIManager, request: ChatRequest, probe: Probe) -> Probe:
    """The layer's own stream reading (HTTP client, ``StreamResponse.read_chunk``, the OpenAI
    SSE decoder, ``ProviderStream``) in the caller's task: no feed, no producer task, no hop;
    what a caller that reads the upstream itself would get per chunk (a prototype: no router,
    no cache, no sharing)."""
    PROBE.set(probe)
    adapter = ai.provider("openai")
    async with asyncio.timeout(LIVENESS_S):
        probe.start = _perf()
        upstream = await adapter.open_stream(ai._http, request)
        async with upstream:
            async for text in upstream:
                probe.recv.append(_perf())
                probe.texts.append(text)
    return probe


@dataclass(slots=True)
class LoopWatch:
    """A ticker's lateness (ms) and the GC pauses (ms, per generation) during a run."""

    lags_ms: list[float] = field(default_factory=list)
    gc_ms: dict[int, list[float]] = field(default_factory=dict)
    _gc_start: float = 0.0

    async def tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            self.lags_ms.append((loop.time() - due) * 1e3)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = _perf()
        else:
            ms = (_perf() - self._gc_start) * 1e3
            self.gc_ms.setdefault(int(info["generation"]), []).append(ms)

    def figures(self, seconds: float) -> dict[str, Any]:
        lags = np.array(self.lags_ms or [0.0])
        return {
            "ticks": len(self.lags_ms),
            "loop_lag_ms": {f"p{q}": float(np.percentile(lags, q)) for q in (50, 90, 99, 99.9)}
            | {"max": float(lags.max())},
            "gc": {
                str(g): {
                    "count": len(v),
                    "total_ms": float(sum(v)),
                    "max_ms": float(max(v)),
                    "share_of_run": float(sum(v) / 1e3 / seconds),
                }
                for g, v in sorted(self.gc_ms.items())
            },
        }


def _pct(values: list[float]) -> dict[str, float]:
    v = np.array(values or [0.0])
    return {
        "p1": float(np.percentile(v, 1)),
        "p50": float(np.percentile(v, 50)),
        "p99": float(np.percentile(v, 99)),
        "share_abs_over_5": float(np.mean(np.abs(v) > 5.0)),
    }


def _gaps(times: list[float]) -> list[float]:
    return [(b - a) * 1e3 for a, b in itertools.pairwise(times)]


def _analyse(pairs: list[tuple[Probe, Probe]]) -> dict[str, Any]:
    """Per-gap differences (second minus first read, ms) at each probe point, and delays."""
    d_recv: list[float] = []
    d_sock: list[float] = []
    d_hop: list[float] = []  # (second's recv - sock) gap change minus the first's
    first_delay: list[float] = []  # recv - sock per chunk, first read
    second_delay: list[float] = []
    sock_to_push: list[float] = []
    push_to_recv: list[float] = []
    start_offset: list[float] = []
    send_diff: list[float] = []
    sock_ttft_diff: list[float] = []
    stages: dict[str, list[float]] = {}
    skipped = 0
    for a, b in pairs:
        sa, sb = a.sock(), b.sock()
        if not (len(sa) == len(a.recv) == len(sb) == len(b.recv)) or a.texts != b.texts:
            skipped += 1
            continue
        ga, gb = _gaps(a.recv), _gaps(b.recv)
        sga, sgb = _gaps(sa), _gaps(sb)
        d_recv += [y - x for x, y in zip(ga, gb, strict=True)]
        d_sock += [y - x for x, y in zip(sga, sgb, strict=True)]
        d_hop += [(y - x) - (sy - sx) for x, y, sx, sy in zip(ga, gb, sga, sgb, strict=True)]
        first_delay += [(r - s) * 1e3 for r, s in zip(a.recv, sa, strict=True)]
        second_delay += [(r - s) * 1e3 for r, s in zip(b.recv, sb, strict=True)]
        if b.pushes and len(b.pushes) == len(sb):
            sock_to_push += [(p - s) * 1e3 for p, s in zip(b.pushes, sb, strict=True)]
            push_to_recv += [(r - p) * 1e3 for r, p in zip(b.recv, b.pushes, strict=True)]
        start_offset.append((b.start - a.start) * 1e3)
        send_diff.append(((b.sent - b.start) - (a.sent - a.start)) * 1e3)
        if sa and sb:
            sock_ttft_diff.append(((sb[0] - b.start) - (sa[0] - a.start)) * 1e3)
        if b.opened and b.produce:  # the second read is the layer: where its time to send goes
            marks = [("start_to_opened", b.start, b.opened)]
            marks.append(("opened_to_producer", b.opened, b.produce))
            if b.claimed:
                marks.append(("producer_to_claimed", b.produce, b.claimed))
                marks.append(("claimed_to_sent", b.claimed, b.sent))
            else:
                marks.append(("producer_to_sent", b.produce, b.sent))
            for name, t0, t1 in marks:
                stages.setdefault(name, []).append((t1 - t0) * 1e3)
    return {
        "pairs": len(pairs) - skipped,
        "pairs_skipped": skipped,
        "per_gap_diff_recv_ms": _pct(d_recv),
        "per_gap_diff_sock_ms": _pct(d_sock),
        "per_gap_diff_after_sock_ms": _pct(d_hop),
        "first_read_sock_to_recv_ms": _pct(first_delay),
        "second_read_sock_to_recv_ms": _pct(second_delay),
        "second_read_sock_to_push_ms": _pct(sock_to_push) if sock_to_push else None,
        "second_read_push_to_recv_ms": _pct(push_to_recv) if push_to_recv else None,
        "start_offset_ms": _pct(start_offset),
        "added_time_to_send_ms": _pct(send_diff),
        "added_ttft_at_sock_ms": _pct(sock_ttft_diff),
        "second_read_time_to_send_ms": {k: _pct(v) for k, v in stages.items()} or None,
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    import os

    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _spec(text: str) -> tuple[str, float]:
    kind, _, offset = text.partition("@")
    if kind not in ("raw", "layer", "raw^", "direct", "hop"):
        raise SystemExit(
            f"a read is raw, layer, raw^, direct or hop, optionally @OFFSET_MS: got {text!r}"
        )
    return kind, float(offset or 0.0) / 1e3


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    specs = [_spec(x) for x in args.reads.split(",") if x]
    if len(specs) < 2:
        raise SystemExit("--reads needs at least two reads per request")
    emulator = start_emulator(latency_scale=args.scale, keyed_latency=True)
    server = None if args.no_cache else RedisServer().start()
    client = None if server is None else Redis.from_url(server.url)
    cache = (
        None
        if client is None
        else ResponseCache(client, config=CacheConfig(namespace="clump-" + uuid.uuid4().hex[:8]))
    )
    # hop reads go through a manager of their own (own pool, own cache namespace): a layer
    # read and a hop read of the same body must not share one upstream.
    hop_cache = (
        None
        if client is None
        else ResponseCache(client, config=CacheConfig(namespace="clump-" + uuid.uuid4().hex[:8]))
    )
    FEEDS.clear()
    PAUSES.clear()
    undo = _install()
    watch = LoopWatch()
    groups: list[list[Probe]] = []
    seconds = 0.0
    cpu: dict[str, float] = {}
    try:
        settings = emulator.settings(
            Settings(
                http=HttpConfig(transport="aiohttp", max_connections=args.max_connections),
                stream=StreamConfig(relay=not args.no_relay),
            )
        )
        async with (
            AIManager(settings, cache=cache) as ai,
            AIManager(settings, cache=hop_cache) as ai_hop,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        ):
            provider = ai.provider("openai")

            async def read(
                req: ChatRequest, kind: str, offset: float, name: str, sending: asyncio.Event
            ) -> Probe:
                if offset > 0:
                    await asyncio.sleep(offset)
                if kind == "raw^":  # when the layer's request of the group goes out
                    async with asyncio.timeout(LIVENESS_S):
                        await sending.wait()
                if kind in ("raw", "raw^"):
                    return await raw_read(session, provider, req, Probe(name))
                if kind == "direct":
                    return await direct_read(ai, req, Probe(name))
                if kind == "hop":
                    return await layer_read(ai_hop, req, Probe(name, sending=sending, lend=False))
                return await layer_read(ai, req, Probe(name, sending=sending))

            pids = {"emulator": emulator.pid}
            if server is not None and server.proc is not None:
                pids["redis"] = server.proc.pid
            for r in range(-args.warmup, args.rounds):
                tag = uuid.uuid4().hex[:8]
                batch = [stream_request("openai", f"{tag}-{i}") for i in range(args.streams)]
                reads: list[Awaitable[Probe]] = []
                for i, req in enumerate(batch):  # request i's reads side by side, rotating
                    k = i % len(specs)
                    order = list(range(len(specs)))[k:] + list(range(len(specs)))[:k]
                    sending = asyncio.Event()
                    reads.extend(
                        read(req, *specs[j], args.reads.split(",")[j], sending) for j in order
                    )
                if r == 0:
                    gc.callbacks.append(watch.on_gc)
                    ticker = asyncio.create_task(watch.tick())
                    t0 = _perf()
                    c0 = time.process_time()
                    p0 = {n: _cpu_s(pid) for n, pid in pids.items()}
                done = await asyncio.gather(*reads)
                if r >= 0:
                    n = len(specs)
                    for i in range(len(batch)):
                        got = done[n * i : n * (i + 1)]
                        groups.append(
                            sorted(got, key=lambda p: args.reads.split(",").index(p.side))
                        )
            seconds = _perf() - t0
            cpu = {"client": time.process_time() - c0}
            cpu |= {n: _cpu_s(pid) - p0[n] for n, pid in pids.items()}
            ticker.cancel()
            gc.callbacks.remove(watch.on_gc)
    finally:
        undo()
        if cache is not None:
            await cache.aclose()
        if hop_cache is not None:
            await hop_cache.aclose()
        if client is not None:
            await client.aclose()
        if server is not None:
            server.stop()
        emulator.stop()
    names = args.reads.split(",")
    chunks = sum(len(p.recv) for g in groups for p in g)
    return {
        "scale": args.scale,
        "rounds": args.rounds,
        "streams": args.streams,
        "reads": names,
        "cache": not args.no_cache,
        "relay": not args.no_relay,
        "max_connections": args.max_connections,
        "seconds": seconds,
        "text_chunks": chunks,
        "cpu_s": cpu,
        "cpu_us_per_chunk": {k: v / chunks * 1e6 for k, v in cpu.items()},
        "comparisons": {
            f"{names[j]} vs {names[i]}": _analyse([(g[i], g[j]) for g in groups])
            for i in range(len(names))
            for j in range(i + 1, len(names))
        },
        "loop": watch.figures(seconds),
        "transport_pauses": len(PAUSES),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1, help="rounds run first, not recorded")
    p.add_argument("--streams", type=int, default=100, help="requests per round")
    p.add_argument("--scale", type=float, default=1.0, help="the emulator's latency_scale")
    p.add_argument(
        "--reads",
        default="raw,layer",
        help="the reads of each request, side by side: raw, layer, raw^ (a raw read started "
        "when the layer's request goes out: aligned with it in time), direct (the layer's "
        "provider stream read in the caller's task: no hand-off) or hop (the layer, its read "
        "never lent: the producer hands each chunk over), optionally @MS (started "
        "MS later), distinct, e.g. raw,layer,raw@130 (every pair of them is compared)",
    )
    p.add_argument("--no-cache", action="store_true", help="the layer without a cache")
    p.add_argument(
        "--max-connections",
        type=int,
        default=HttpConfig().max_connections,
        help="the layer's HttpConfig.max_connections (direct reads share the layer's pool: "
        "give layer + direct streams room, e.g. 200 for 100 of each)",
    )
    p.add_argument(
        "--no-relay",
        action="store_true",
        help="StreamConfig(relay=False): no cross-process relay of the stream through Redis",
    )
    args = p.parse_args(argv)
    if args.rounds < 1 or args.streams < 1 or args.warmup < 0:
        p.error("--rounds and --streams must be >= 1, --warmup >= 0")
    names = args.reads.split(",")
    if len(set(names)) != len(names):
        p.error("--reads: every read once (raw,raw@0 to compare two raw reads)")
    kinds = {n.partition("@")[0] for n in names}
    if "raw^" in kinds and not kinds & {"layer", "hop"}:
        p.error("--reads: raw^ starts when the layer's request goes out: it needs a layer read")
    print(json.dumps(asyncio.run(_run(args)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
