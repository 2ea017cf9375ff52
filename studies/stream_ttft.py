"""Time to first chunk of many concurrent streams: the layer against raw aiohttp, side by side.

Issue 20 §2 (the layer's cost to the first token). Starts the emulator (``latency_scale``
0 by default: the first chunk leaves at once, so what is measured is the client side)
and, for the ``+redis`` variants, a redis-server, then runs ``--rounds`` rounds; each
round runs every variant once as a wave of ``--concurrency`` concurrent streams
(distinct prompts, a miss each time), in an order that rotates per round. Each caller
reads up to its first text chunk and leaves (as ``studies/stream_first_chunk.py``).

Variants (``--variants``, comma-separated):

- ``raw``: ``aiohttp.ClientSession.post`` (its own session, no connection limit),
  bytes split on blank lines, ``orjson`` per ``data:`` line, up to the first text delta;
- ``hxaio``: the same read through ``httpx.AsyncClient`` on httpx-aiohttp's
  ``AiohttpTransport`` (the layer's default wire, without the layer): the floor of
  the layer on that transport;
- ``adapter``: ``Provider.open_stream`` on the manager's ``HttpClient``;
- ``layer``: ``AIManager.stream`` without a cache;
- ``layer+redis``: with a ``ResponseCache`` on the redis-server (default ``CacheConfig``,
  the relay on); ``layer+redis-norelay``: ``StreamConfig(relay=False)``;
  ``layer+redis-mcN``: ``CacheConfig(max_connections=N)``; ``layer+redis-nobatch``:
  ``CacheConfig(batch_gets=False)``; ``layer+redis-nowrite``: the relay's lease and claim
  kept but no relay entry written (what a relay written only for followed streams would
  save on streams nobody follows; a measurement, not a mode of the package);
  ``layer+redis-pyparser``: a client of its own whose connections use redis-py's pure-Python
  reply parser and command packer even when ``hiredis`` is installed (with hiredis importable,
  ``layer+redis`` and ``layer+redis-pyparser`` side by side show what hiredis saves).

Order matters: with ``--settle 0`` a wave starts while the previous one's leftovers (its
producers' relay ends and lease releases, its abandoned streams in the emulator) still
run, and the variants keep their cyclic predecessor in the rotation; at 100 streams that
moved a variant's TTFT ratio by up to 1.7x (docs/measurements/2026-12-06-stream-miss-path.md).
Compare TTFT with ``--settle 0.5`` or in both orders; CPU per stream is not affected.

``--base DIR``: DIR holds a copy of another tree's package renamed ``samplemind_base``
(``git archive <ref> samplemind_core | tar -x -C DIR && mv DIR/samplemind_core
DIR/samplemind_base``), or is a checkout of another tree (``git worktree add --detach DIR
main``: its ``samplemind_core`` is copied to a temporary directory as ``samplemind_base``);
every ``base:<variant>`` then runs that code in the same process and the same waves:
before/after side by side.

Prints one JSON object: per variant the TTFT median and p90 over all callers, the ratio
of medians to ``raw``, and the process CPU time per stream (a wave's ``process_time``
over its streams; the emulator and redis-server are other processes), and of that CPU
the part spent in the garbage collector (``gc_us_per_stream``, timed by ``gc.callbacks``;
``gc_collections``: collections per wave by generation); with ``--count-commands``, the Redis
commands and packets (round trips, pipelines included) sent per stream, leftovers included
(``redis_commands_per_stream``, ``redis_sends_per_stream``). ``--profile N``
then runs N more waves of each variant under cProfile (timer: process CPU time, so
waits count nothing) and prints, per stream, the cumulative CPU time of the parts of
the path (nested: a part includes the parts under it; profiler overhead included)::

    nice python studies/stream_ttft.py --rounds 15 --concurrency 100 \\
        --variants raw,hxaio,layer,layer+redis --profile 3

``--read written`` (issue 20 §2, the CPU of a stream's start): each caller still reads up to
its first chunk, but what is reported is the start: the moment each request has been written
(aiohttp's ``ClientRequest.send`` returned; raw and the layer's default transport both go
through it), as ``start_cpu_us`` (the wave's process CPU from its launch to its last request
written, per stream: with N at once, what N starts cost the loop before the last request goes
out) and ``written_first/median/last_ms`` (wall time from the wave's launch); with
``--profile`` the profiler stops at the wave's last write, so its parts are the starts' alone.
Use a latency scale at which no first chunk arrives before the last write
(``first_chunks_before_last_write`` must be 0), e.g.::

    nice python studies/stream_ttft.py --read written --latency-scale 2 --concurrency 100 \\
        --variants raw,layer,layer+fakeredis,layer+redis --rounds 10 --profile 3

``layer+fakeredis``: the layer with a ``ResponseCache`` on ``fakeredis.FakeAsyncRedis``
(no scripting: the claim's three-command path).

``--gens expired`` makes every cache's copy of the generations older than
``generation_ttl_s`` before each wave (the goal cell's rounds start after more than a second
of quiet: decision 0920), ``--gens fresh`` makes it fresh; by default it is left as the
waves' timing leaves it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.redis import RedisServer
from fixtures.servers import start_emulator


def _first_text(buffer: bytes) -> tuple[bool, bytes]:
    while b"\n\n" in buffer:
        event, buffer = buffer.split(b"\n\n", 1)
        for line in event.split(b"\n"):
            if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                continue
            choices = orjson.loads(line[5:]).get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                return True, buffer
    return False, buffer


READ_ALL = False
"""``--read all``: every caller reads its stream to the end (as the bench suite does);
otherwise it leaves after its first text chunk."""


class WriteProbe:
    """``--read written``: the moment each aiohttp request of this process has been written
    (aiohttp's ``ClientRequest.send`` returned: headers and body handed to the socket), on
    the wall clock and on the process's CPU clock. Both sides (raw aiohttp, and the layer on
    its default transport) go through ``ClientRequest.send``, so the same probe times both.
    ``profile``: a profiler disabled as soon as ``expect`` requests have been written (the
    profile then holds the starts only)."""

    def __init__(self) -> None:
        from aiohttp.client_reqrep import ClientRequest

        self.walls: list[float] = []
        self.cpus: list[float] = []
        self.expect = 0
        self.profile: cProfile.Profile | None = None
        send = ClientRequest.send
        probe = self

        async def timed_send(req: Any, conn: Any) -> Any:
            resp = await send(req, conn)
            probe.walls.append(time.perf_counter())
            probe.cpus.append(time.process_time())
            if probe.profile is not None and len(probe.walls) >= probe.expect:
                probe.profile.disable()
                probe.profile = None
            return resp

        ClientRequest.send = timed_send  # type: ignore[method-assign,assignment]

    def reset(self, expect: int, profile: cProfile.Profile | None = None) -> None:
        self.walls.clear()
        self.cpus.clear()
        self.expect = expect
        self.profile = profile


PROBE: WriteProbe | None = None


async def _drain_raw(chunks: Any, buffer: bytes) -> None:
    async for data in chunks:
        found = True
        while found:  # parse every event (the same work per chunk as before the first)
            found, buffer = _first_text(buffer + data)
            data = b""


async def raw_first(session: Any, url: str, headers: dict[str, str], body: bytes) -> float:
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as resp:
        buffer = b""
        chunks = resp.content.iter_any().__aiter__()
        async for data in chunks:
            found, buffer = _first_text(buffer + data)
            if found:
                ms = (time.perf_counter() - t0) * 1000.0
                if READ_ALL:
                    await _drain_raw(chunks, buffer)
                return ms
    raise RuntimeError("no text in the stream")


async def hxaio_first(client: Any, url: str, headers: dict[str, str], body: bytes) -> float:
    t0 = time.perf_counter()
    async with client.stream("POST", url, content=body, headers=headers) as resp:
        buffer = b""
        chunks = resp.aiter_raw().__aiter__()
        async for data in chunks:
            found, buffer = _first_text(buffer + data)
            if found:
                ms = (time.perf_counter() - t0) * 1000.0
                if READ_ALL:
                    await _drain_raw(chunks, buffer)
                return ms
    raise RuntimeError("no text in the stream")


async def adapter_first(ai: Any, request: Any) -> float:
    t0 = time.perf_counter()
    stream = await ai.provider("openai").open_stream(ai.http, request, "gpt-4o-mini")
    async with stream:
        async for _ in stream:
            ms = (time.perf_counter() - t0) * 1000.0
            if READ_ALL:
                async for _ in stream:
                    pass
            return ms
    raise RuntimeError("no chunk")


async def layer_first(ai: Any, request: Any) -> float:
    t0 = time.perf_counter()
    async with ai.stream(request) as stream:
        async for _ in stream:
            ms = (time.perf_counter() - t0) * 1000.0
            if READ_ALL:
                async for _ in stream:
                    pass
            return ms
    raise RuntimeError("no chunk")


# The parts of the path, by (file fragment, function name): cumulative time per stream.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("AIManager.stream (validate, route check)", "samplemind_core/manager.py", "stream"),
    ("  _open_feed (key: fingerprint; lookup; feed)", "samplemind_core/manager.py", "_open_feed"),
    ("    key_for (fingerprint)", "samplemind_core/cache/_entries.py", "key_for"),
    (
        "    _lookup_or_claim (lookup + claim, one script)",
        "samplemind_core/cache/_relay.py",
        "_lookup_or_claim",
    ),
    (
        "    _fresh_gens (generations, when expired)",
        "samplemind_core/cache/_entries.py",
        "_fresh_gens",
    ),
    ("  _start_producer (create the task)", "samplemind_core/manager.py", "_start_producer"),
    ("  _produce (the producer task, on a miss)", "samplemind_core/manager.py", "_produce"),
    ("      _get_batch (batched GETs, own task)", "samplemind_core/cache/_store.py", "_get_batch"),
    ("    _relay_claim (SET NX, UNLINK)", "samplemind_core/cache/_relay.py", "_relay_claim"),
    ("    _lookup (incl. the re-check)", "samplemind_core/cache/_entries.py", "_lookup"),
    ("    _bounded (every Redis op)", "samplemind_core/cache/_store.py", "_bounded"),
    ("    _relay_writer (make the writer)", "samplemind_core/cache/_relay.py", "_relay_writer"),
    ("    _read_chain", "samplemind_core/manager.py", "_read_chain"),
    ("      AsyncLimiter.acquire (rate limiter)", "aiolimiter", "acquire"),
    ("      _choices (router plan)", "samplemind_core/manager.py", "_choices"),
    ("      open_stream (build + send)", "samplemind_core/providers/base.py", "open_stream"),
    ("        build_stream_request", "samplemind_core/providers/openai.py", "build_stream_request"),
    ("        HttpClient._send", "samplemind_core/http.py", "_send"),
    ("          httpx.Request()", "httpx/_models.py", "__init__"),
    (
        "          AiohttpTransport.handle_async_request",
        "httpx_aiohttp/transport.py",
        "handle_async_request",
    ),
    ("            aiohttp ClientSession._request", "aiohttp/client.py", "_request"),
    (
        "      ProviderStream.__anext__ (read + SSE)",
        "samplemind_core/providers/_stream.py",
        "__anext__",
    ),
    ("        SSEDecoder.feed", "samplemind_core/providers/_stream.py", "feed"),
    ("        iter_body", "samplemind_core/http.py", "iter_body"),
    ("      ProviderStream.aclose", "samplemind_core/providers/_stream.py", "aclose"),
    ("    _relay_release (UNLINK lease)", "samplemind_core/cache/_relay.py", "_relay_release"),
    ("    RelayWriter.close", "samplemind_core/cache/_relay.py", "close"),
    ("        HttpClient._open_raw (raw aiohttp path)", "samplemind_core/http.py", "_open_raw"),
    ("          _send_raw", "samplemind_core/http.py", "_send_raw"),
    ("    ClientRequest.send (write the request)", "aiohttp/client_reqrep.py", "send"),
    ("    build_stream_request (any)", "samplemind_core/providers/", "build_stream_request"),
    ("    json/orjson encode (_prepare)", "samplemind_core/http.py", "_prepare"),
    ("ResponseStream.__aenter__", "samplemind_core/_streaming.py", "__aenter__"),
    ("ResponseStream.__anext__", "samplemind_core/_streaming.py", "__anext__"),
    ("ResponseStream.aclose", "samplemind_core/_streaming.py", "aclose"),
    ("raw: aiohttp ClientSession._request", "aiohttp/client.py", "_request"),
    ("redis-py execute_command", "redis/asyncio/client.py", "execute_command"),
    ("redis-py Pipeline.execute", "redis/asyncio/client.py", "execute"),
    ("asyncio Task.__step (all tasks)", "asyncio", "__step"),
)

AREAS = (
    ("samplemind", ("samplemind_core", "samplemind_base")),
    ("aiohttp", ("aiohttp", "multidict", "yarl")),
    ("httpx", ("httpx", "httpcore")),
    ("redis-py", ("redis/",)),
    ("asyncio", ("asyncio",)),
)


def _area(filename: str, name: str) -> str:
    if filename == "~":
        return "builtins/kernel"
    for label, needles in AREAS:
        if any(n in filename for n in needles):
            return label
    return "other"


def attribution(profile: cProfile.Profile, streams: int, base: bool) -> dict[str, Any]:
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    parts: dict[str, float] = {}
    for label, fragment, name in PARTS:
        if base:
            fragment = fragment.replace("samplemind_core", "samplemind_base")
        total = 0.0
        for (filename, _, fn), (_, _, _, cumtime, _) in stats.items():
            if fn == name and fragment in filename.replace("\\", "/"):
                total += cumtime
        if total:
            parts[label] = round(total / streams * 1e6, 1)
    areas: dict[str, float] = {}
    calls = 0
    for (filename, _, fn), (_, ncalls, tottime, _, _) in stats.items():
        label = _area(filename, fn)
        areas[label] = areas.get(label, 0.0) + tottime
        calls += ncalls
    return {
        "cumtime_us_per_stream": parts,
        "tottime_us_per_stream_by_area": {
            k: round(v / streams * 1e6, 1) for k, v in sorted(areas.items(), key=lambda kv: -kv[1])
        },
        "function_calls_per_stream": round(calls / streams, 1),
    }


def _maker(
    first: Callable[[Any, Any], Awaitable[float]], ai: Any, pkg: Any
) -> Callable[[str], Awaitable[float]]:
    """``text -> first(ai, pkg.request(text))``: one variant's stream starter."""

    def make(text: str) -> Awaitable[float]:
        return first(ai, pkg.request(text))

    return make


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
    }


class GcTimer:
    """CPU time spent in the garbage collector (``gc.callbacks``) and collections by generation."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.counts = [0, 0, 0]
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.process_time()
        else:
            self.spent += time.process_time() - self._t0
            self.counts[info["generation"]] += 1

    def mark(self) -> tuple[float, list[int]]:
        return self.spent, list(self.counts)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


def _python_parser_client(url: str) -> Any:
    """A redis.asyncio client whose connections parse replies and pack commands in Python
    (what redis-py does without ``hiredis``), whether or not ``hiredis`` is importable."""
    from redis.asyncio import ConnectionPool, Redis
    from redis.asyncio.connection import (  # type: ignore[attr-defined]
        Connection,
        _AsyncRESP3Parser,
    )

    class PythonParserConnection(Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["parser_class"] = _AsyncRESP3Parser  # (RESP2 when protocol 2: redis-py)
            super().__init__(*args, **kwargs)
            self._command_packer = None  # redis-py's Python packer

    return Redis(
        connection_pool=ConnectionPool.from_url(url, connection_class=PythonParserConnection)
    )


def _base_dir(base: str) -> str:
    """The directory to put on ``sys.path`` for ``samplemind_base``: ``base`` itself, or, for
    a checkout (``base/samplemind_core``), a temporary copy of its package under that name."""
    root = Path(base)
    if (root / "samplemind_base").is_dir() or not (root / "samplemind_core").is_dir():
        return base
    tmp = tempfile.mkdtemp(prefix="stream_ttft_base_")
    shutil.copytree(
        root / "samplemind_core",
        Path(tmp) / "samplemind_base",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp


class RedisCounter:
    """Commands packed and packets sent by every ``redis.asyncio`` connection of this process
    (``--count-commands``: redis-py's ``pack_command`` and ``send_packed_command`` wrapped;
    a script counts as one command, whatever it calls inside)."""

    def __init__(self) -> None:
        from redis.asyncio.connection import AbstractConnection

        self.commands = 0
        self.sends = 0
        pack, send = AbstractConnection.pack_command, AbstractConnection.send_packed_command
        counter = self

        def pack_command(conn: Any, *args: Any) -> Any:
            counter.commands += 1
            return pack(conn, *args)

        async def send_packed_command(conn: Any, *args: Any, **kwargs: Any) -> Any:
            counter.sends += 1
            return await send(conn, *args, **kwargs)

        AbstractConnection.pack_command = pack_command  # type: ignore[method-assign,assignment]
        AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign,assignment]

    def mark(self) -> tuple[int, int]:
        return self.commands, self.sends


class _NoWriter:
    """A relay writer that writes nothing (the ``-nowrite`` variants)."""

    failed = lost = False

    def put(self, fields: Any) -> None:
        pass

    async def close(self, fields: Any) -> None:
        pass


class Package:
    """One copy of the package (this tree's, or ``samplemind_base``) and its managers."""

    def __init__(self, name: str, settings_of: Callable[[Any], Any]) -> None:
        self.name = name
        self.m = importlib.import_module(name)
        self.settings = settings_of(self.m)
        self.managers: list[Any] = []

    def manager(self, redis_client: Any = None, **cache_kw: Any) -> Any:
        m = self.m
        settings = self.settings
        cache = None
        if redis_client is not None:
            relay = cache_kw.pop("relay", True)
            nowrite = cache_kw.pop("nowrite", False)
            if not relay:
                settings = replace(settings, stream=m.StreamConfig(relay=False))
            namespace = f"ttft-{len(self.managers)}-{time.time_ns() % 10**9}"
            cache = m.ResponseCache(
                redis_client, config=m.CacheConfig(namespace=namespace, **cache_kw)
            )
        if cache is not None and nowrite:
            # The lease and claim kept, no relay entry written: what writing the relay only
            # for streams another process follows would save on streams nobody follows.
            cache._relay_writer = lambda *a, **k: _NoWriter()
        ai = m.AIManager(settings, cache=cache)
        self.managers.append(ai)
        return ai

    def request(self, text: str) -> Any:
        return self.m.ChatRequest(messages=[{"role": "user", "content": text}], provider="openai")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp
    import httpx
    from httpx_aiohttp import AiohttpTransport

    global READ_ALL, PROBE
    READ_ALL = args.read == "all"
    if args.read == "written":
        PROBE = WriteProbe()
    probe = PROBE
    starts: dict[str, list[dict[str, float]]] = {}
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    emulator = start_emulator(latency_scale=args.latency_scale)
    need_redis = any("redis" in v and "fakeredis" not in v for v in names)
    server = RedisServer().start() if need_redis else None
    redis_client: Any = None
    python_parser: Any = None
    if server is not None:
        from redis.asyncio import Redis

        redis_client = Redis.from_url(server.url)
        if any("pyparser" in v for v in names):
            python_parser = _python_parser_client(server.url)

    def settings_of(m: Any) -> Any:
        return emulator.settings(m.Settings(http=m.HttpConfig(transport=args.transport)))

    packages = {"": Package("samplemind_core", settings_of)}
    if args.base:
        sys.path.insert(0, _base_dir(args.base))
        packages["base:"] = Package("samplemind_base", settings_of)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    hx = httpx.AsyncClient(
        transport=AiohttpTransport(limits=httpx.Limits(max_connections=None)), timeout=30.0
    )
    new = packages[""]
    adapter = new.manager().provider("openai")

    makers: dict[str, Callable[[str], Awaitable[float]]] = {}
    for name in names:
        prefix = "base:" if name.startswith("base:") else ""
        kind = name[len(prefix) :]
        pkg = packages[prefix]
        if kind in ("raw", "hxaio"):

            def wire(text: str, kind: str = kind) -> Awaitable[float]:
                _, url, headers, body = adapter.build_stream_request(
                    new.request(text), "gpt-4o-mini"
                )
                if kind == "raw":
                    return raw_first(session, url, headers, orjson.dumps(body))
                return hxaio_first(hx, url, headers, orjson.dumps(body))

            makers[name] = wire
        elif kind == "adapter":
            ai = pkg.manager()
            makers[name] = _maker(adapter_first, ai, pkg)
        elif kind == "layer":
            ai = pkg.manager()
            makers[name] = _maker(layer_first, ai, pkg)
        elif kind == "layer+fakeredis":
            import fakeredis

            ai = pkg.manager(fakeredis.FakeAsyncRedis())
            makers[name] = _maker(layer_first, ai, pkg)
        elif kind.startswith("layer+redis"):
            opts = kind[len("layer+redis") :]
            kw: dict[str, Any] = {}
            client = redis_client
            for opt in filter(None, opts.split("-")):
                if opt == "pyparser":
                    client = python_parser
                elif opt == "norelay":
                    kw["relay"] = False
                elif opt == "nobatch":
                    kw["batch_gets"] = False
                elif opt == "nowrite":
                    kw["nowrite"] = True
                elif opt.startswith("mc"):
                    kw["max_connections"] = int(opt[2:])
                else:
                    raise SystemExit(f"unknown option {opt!r} in {name!r}")
            ai = pkg.manager(client, **kw)
            makers[name] = _maker(layer_first, ai, pkg)
        else:
            raise SystemExit(f"unknown variant {name!r}")

    samples: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    gc_cpu: dict[str, list[float]] = {n: [] for n in names}
    gc_counts: dict[str, list[list[int]]] = {n: [] for n in names}
    gc_timer = GcTimer()
    counter = RedisCounter() if args.count_commands else None
    redis_counts: dict[str, list[tuple[int, int]]] = {n: [] for n in names}
    n = args.concurrency

    async def leftovers_done() -> None:
        """Wait (10 s at most) until every manager's producers and lease releases have ended."""
        for pkg in packages.values():
            for ai in pkg.managers:
                for _ in range(1000):
                    releases = getattr(ai.cache, "_releases", None) if ai.cache else None
                    if not ai._stream_tasks and not releases:
                        break
                    await asyncio.sleep(0.01)

    async def settle() -> None:
        # Let the previous wave's leftovers end before the next wave starts (its producers'
        # relay ends and lease releases here, the abandoned streams in the emulator): else
        # each variant's TTFT carries a share of its predecessor's work (``--settle``).
        if args.settle <= 0:
            return
        await leftovers_done()
        await asyncio.sleep(args.settle)

    async def wave(
        name: str, i: int, profiling: cProfile.Profile | None = None
    ) -> tuple[list[float], float]:
        make = makers[name]
        await settle()
        if args.gens != "natural":
            # ``--gens``: every cache's in-process copy of the generations made older than
            # ``generation_ttl_s`` (as after a second of quiet: the goal cell's rounds), or
            # fresh, before the wave (both trees have the same attribute)
            for pkg in packages.values():
                for ai in pkg.managers:
                    if ai.cache is not None:
                        ai.cache._gens_expiry = (
                            0.0 if args.gens == "expired" else ai.cache._clock() + 3600.0
                        )
        g0, k0 = gc_timer.mark()
        r0 = counter.mark() if counter is not None else (0, 0)
        if probe is not None:
            probe.reset(n, profiling)
        c0 = time.process_time()
        w0 = time.perf_counter()
        # The same prompts for every variant of a round (each variant's cache has a namespace
        # of its own, so none hits another's entries): whole streams (``--read all``) of all
        # variants then carry the same texts (the emulator's answer depends on the prompt).
        got = await asyncio.gather(*(make(f"describe {i} {j}") for j in range(n)))
        spent = time.process_time() - c0
        if probe is not None and i < 10**6:
            if len(probe.walls) != n:
                raise RuntimeError(f"{name}: {len(probe.walls)} requests written, not {n}")
            walls = sorted(w - w0 for w in probe.walls)
            starts.setdefault(name, []).append(
                {
                    # the wave's CPU up to its last request written, per start
                    "cpu": (max(probe.cpus) - c0) / n,
                    "first": walls[0],
                    "median": statistics.median(walls),
                    "last": walls[-1],
                    # first chunks that came before the wave's last write (must be 0: else
                    # response reads are in the starts' CPU; raise --latency-scale)
                    "early": sum(1 for t in got if t / 1000.0 < walls[-1]),
                }
            )
        g1, k1 = gc_timer.mark()
        if counter is not None:
            # the wave's leftovers (relay ends, lease releases) count too: wait for them
            await leftovers_done()
            r1 = counter.mark()
        if i < 10**6:  # (not the profiled waves)
            gc_cpu[name].append(g1 - g0)
            gc_counts[name].append([b - a for a, b in zip(k0, k1, strict=True)])
            if counter is not None:
                redis_counts[name].append((r1[0] - r0[0], r1[1] - r0[1]))
        return list(got), spent

    out: dict[str, Any] = {}
    try:
        for i in range(args.warmup + args.rounds):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                got, spent = await wave(name, i)
                if i >= args.warmup:
                    samples[name].extend(got)
                    cpu[name].append(spent / n)
                else:
                    gc_cpu[name].pop()
                    gc_counts[name].pop()
                    if counter is not None:
                        redis_counts[name].pop()
        raw_median = statistics.median(samples[names[0]])
        for name in names:
            s: dict[str, Any] = dict(summary(samples[name]))
            s["ratio_to_" + names[0]] = round(s["median_ms"] / raw_median, 3)
            s["cpu_us_per_stream"] = round(statistics.median(cpu[name]) * 1e6, 1)
            s["gc_us_per_stream"] = round(statistics.median(gc_cpu[name]) / n * 1e6, 1)
            if counter is not None:
                s["redis_commands_per_stream"] = round(
                    statistics.median(c for c, _ in redis_counts[name]) / n, 2
                )
                s["redis_sends_per_stream"] = round(
                    statistics.median(k for _, k in redis_counts[name]) / n, 3
                )
            s["gc_collections_per_wave"] = [
                round(statistics.mean(c[g] for c in gc_counts[name]), 1) for g in range(3)
            ]
            if probe is not None:
                kept = starts[name][args.warmup :]
                s["start_cpu_us"] = round(statistics.median(x["cpu"] for x in kept) * 1e6, 1)
                for k in ("first", "median", "last"):
                    s[f"written_{k}_ms"] = round(statistics.median(x[k] for x in kept) * 1000.0, 3)
                s["first_chunks_before_last_write"] = sum(x["early"] for x in kept)
            out[name] = s
        if args.profile:
            prof: dict[str, Any] = {}
            for name in names:
                profile = cProfile.Profile(time.process_time)  # CPU time, not waits
                c0 = time.process_time()
                for j in range(args.profile):
                    profile.enable()
                    await wave(name, 10**6 + j, profile if probe is not None else None)
                    profile.disable()
                spent = time.process_time() - c0
                streams = args.profile * n
                prof[name] = {
                    "cpu_us_per_stream_profiled": round(spent / streams * 1e6, 1),
                    **attribution(profile, streams, name.startswith("base:")),
                }
                if args.dump:
                    profile.dump_stats(f"{args.dump}.{name.replace(':', '_')}.prof")
            out["profile"] = prof
        stats = {}
        for pkg in packages.values():
            for ai in pkg.managers:
                if ai.cache is not None:
                    st = ai.cache.stats()
                    stats[ai.cache.namespace] = {
                        k: getattr(st, k)
                        for k in ("pool_waits", "pool_timeouts", "leases", "misses")
                    }
        out["cache_stats"] = stats
        out["rounds"] = args.rounds
        out["concurrency"] = n
        out["transport"] = args.transport
        out["latency_scale"] = args.latency_scale
        out["read"] = args.read
        return out
    finally:
        gc_timer.close()
        await session.close()
        await hx.aclose()
        for pkg in packages.values():
            for ai in pkg.managers:
                await ai.aclose()
        if redis_client is not None:
            await redis_client.aclose()
        if python_parser is not None:
            await python_parser.aclose()
        emulator.stop()
        if server is not None:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency-scale", type=float, default=0.0)
    parser.add_argument("--transport", default="aiohttp", choices=["aiohttp", "httpx"])
    parser.add_argument("--variants", default="raw,hxaio,adapter,layer,layer+redis")
    parser.add_argument("--read", default="first", choices=["first", "all", "written"])
    parser.add_argument("--base", default="")
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="before each wave, wait for the previous wave's producers and lease releases "
        "to end, then this many seconds (0: start at once, as before)",
    )
    parser.add_argument(
        "--dump", default="", help="write each variant's profile to DUMP.<variant>.prof"
    )
    parser.add_argument(
        "--gens",
        default="natural",
        choices=["natural", "expired", "fresh"],
        help="the caches' in-process copy of the generations before each wave: as it is "
        "(natural), older than generation_ttl_s (expired: as after a second of quiet, every "
        "round of the goal cell), or fresh (decision 0920)",
    )
    parser.add_argument(
        "--count-commands",
        action="store_true",
        help="count the Redis commands and packets sent per stream (each wave's leftovers "
        "awaited before the next one starts)",
    )
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(run(args)), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
