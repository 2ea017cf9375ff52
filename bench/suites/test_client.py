"""Client suite: HTTP client variants × concurrency → req/s and latency percentiles.

One call = one ``POST /api/chat`` (Ollama wire format, non-streaming, small
reply) with its body read. One timed round = ``concurrency`` concurrent calls;
``req_per_s`` = calls / time, ``p50_ms``/``p95_ms``/``p99_ms`` from every
call's own latency. Group = ``client/<target>-c<N>``.

Targets:

* ``emulator`` (live, marked ``live``): the real emulator server
  (``fixtures.emulator``: hypercorn, HTTP/1.1 + h2c, zero modelled latency) on
  loopback. Variants: ``new_client`` (a fresh ``httpx.AsyncClient`` per request:
  the original code), ``pooled_http1`` (one :class:`HttpClient`), ``http2``
  (:class:`HttpClient` with HTTP/2 prior knowledge, h2c), ``aiohttp_transport``
  (:class:`HttpClient` on ``httpx_aiohttp``), ``raw_aiohttp`` (one
  ``aiohttp.ClientSession``: the floor). Issue 3's targets: ``pooled_http1`` ≥ 10x
  ``new_client`` at c=1; the best transport ≥ 0.7x ``raw_aiohttp`` at c=50.
* ``mock`` (mocked mode): the in-process world transport
  (``fixtures.mock.world_transport``, zero latency): the client's own overhead
  without sockets. Variants: ``new_client``, ``pooled`` (:class:`HttpClient`) and
  ``bare_httpx`` (one plain ``httpx.AsyncClient``, for reference). Protocol and
  transport variants need sockets, so they run in live mode only.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from bench.harness.fixture import AsyncBenchmark
from bench.harness.options import BenchOptions
from bench.suites.conftest import bench_options
from fixtures.mock import world_transport
from fixtures.world import WorldModel
from samplemind_core import HttpConfig
from samplemind_core.http import HttpClient, build_transport

__all__: list[str] = []

FULL_CONCURRENCY = (1, 10, 50, 100)
SMALL_CONCURRENCY = (1, 50)
MOCK_VARIANTS = ("new_client", "pooled", "bare_httpx")
LIVE_VARIANTS = ("new_client", "pooled_http1", "http2", "aiohttp_transport", "raw_aiohttp")
MOCK_BASE = "http://localhost:11434"  # Settings() default for Ollama; the world transport serves it
BODY: dict[str, Any] = {
    "model": "llama3.2:3b",
    "messages": [{"role": "user", "content": "Genre of a 92 BPM dusty Rhodes loop?"}],
    "stream": False,
    "options": {"num_predict": 16},
}

Call = Callable[[], Awaitable[int]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.name != "test_client":
        return
    opts = bench_options(metafunc.config)
    levels = SMALL_CONCURRENCY if opts.small_grid else FULL_CONCURRENCY
    live = [pytest.mark.live]
    cases: list[Any] = []
    if not (opts.live and not opts.disabled):  # a timed live run measures the emulator only
        cases += [
            pytest.param("mock", v, c, id=f"mock-{v}-c{c}") for v in MOCK_VARIANTS for c in levels
        ]
    # a new client per request costs ~0.1 s of TLS-context set-up each: one batch of 50
    # takes seconds, so quick runs keep that variant at c=1, and the smoke run marks it
    # slow (outside the tests' fast tier, docs/decisions/0421)
    costly = [*live, pytest.mark.slow]
    cases += [
        pytest.param(
            "emulator",
            v,
            c,
            id=f"emulator-{v}-c{c}",
            marks=costly if v == "new_client" and c > 1 else live,
        )
        for v in LIVE_VARIANTS
        for c in levels
        if not (v == "new_client" and opts.quick and c > 1)
    ]
    metafunc.parametrize(("target", "variant", "concurrency"), cases)


def _ok(status: int) -> int:
    if status != 200:  # every call of every round is checked, not only the last one
        raise AssertionError(f"HTTP {status}")
    return status


@contextlib.asynccontextmanager
async def _variant(variant: str, base: str | None) -> AsyncIterator[Call]:
    """A ``call()`` for ``variant``; ``base`` None = the in-process world transport."""
    url = f"{base or MOCK_BASE}/api/chat"
    world = WorldModel(seed=0, latency_scale=0.0)

    def mock() -> httpx.AsyncBaseTransport | None:
        return world_transport(world) if base is None else None

    if variant == "new_client":

        async def call() -> int:
            async with httpx.AsyncClient(transport=mock()) as client:
                resp = await client.post(url, json=BODY)
                await resp.aread()
                return _ok(resp.status_code)

        yield call
    elif variant in ("pooled", "pooled_http1", "http2", "aiohttp_transport"):
        config = HttpConfig(
            http2=variant == "http2",
            transport="aiohttp" if variant == "aiohttp_transport" else "httpx",
        )
        transport = mock()
        if variant == "http2":  # cleartext HTTP/2 needs prior knowledge (no ALPN without TLS)
            transport = build_transport(config, http1=False)
        async with HttpClient(config, transport=transport) as http:

            async def call() -> int:
                resp = await http.request("POST", url, json=BODY)
                return _ok(resp.status_code)

            yield call
    elif variant == "bare_httpx":
        async with httpx.AsyncClient(transport=mock()) as client:

            async def call() -> int:
                resp = await client.post(url, json=BODY)
                await resp.aread()
                return _ok(resp.status_code)

            yield call
    elif variant == "raw_aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def call() -> int:
                async with session.post(url, json=BODY) as resp:
                    await resp.read()
                    return _ok(resp.status)

            yield call
    else:  # pragma: no cover - parametrisation guards this
        raise ValueError(f"unknown client variant {variant!r}")


async def test_client(
    abenchmark: AsyncBenchmark,
    request: pytest.FixtureRequest,
    target: str,
    variant: str,
    concurrency: int,
) -> None:
    base = request.getfixturevalue("emulator_server").url if target == "emulator" else None
    abenchmark.describe(
        "client",
        f"{target}-c{concurrency}",
        variant,
        unit_per_call="request",
        target=target,
    )
    async with _variant(variant, base) as call:
        assert await call() == 200  # connection warm-up and a sanity check, untimed
        status = await abenchmark(call, concurrency=concurrency)
    assert status == 200


PAIRED_ROUNDS = 40  # timed rounds per contender (quick runs: half)


@pytest.mark.live
@pytest.mark.parametrize("concurrency", [50])
@pytest.mark.parametrize("variant", ["aiohttp_transport", "pooled_http1"])
async def test_transport_vs_raw_aiohttp_interleaved(
    abenchmark: AsyncBenchmark,
    request: pytest.FixtureRequest,
    bench_opts: BenchOptions,
    variant: str,
    concurrency: int,
) -> None:
    """Issue 3's throughput target side by side: rounds of ``concurrency`` concurrent calls
    through ``variant`` and through raw aiohttp alternate (order flipped every round), so
    both see the same machine state. Stored as ``<variant>_paired`` and ``raw_aiohttp_paired``
    (seconds per call, one sample per round); ``ratio_to_raw_aiohttp`` = median req/s of the
    variant / median req/s of raw aiohttp."""
    base = request.getfixturevalue("emulator_server").url
    subject = f"emulator-c{concurrency}"
    rounds = 1 if abenchmark.disabled else PAIRED_ROUNDS // (2 if bench_opts.quick else 1)
    per_call: dict[str, list[float]] = {variant: [], "raw_aiohttp": []}
    async with _variant(variant, base) as ours, _variant("raw_aiohttp", base) as raw:
        calls = {variant: ours, "raw_aiohttp": raw}
        for call in calls.values():  # warm both pools to `concurrency` connections, untimed
            await asyncio.gather(*(call() for _ in range(concurrency)))
        for i in range(rounds):
            order = [variant, "raw_aiohttp"] if i % 2 == 0 else ["raw_aiohttp", variant]
            for name in order:
                t0 = time.perf_counter()
                statuses = await asyncio.gather(*(calls[name]() for _ in range(concurrency)))
                per_call[name].append((time.perf_counter() - t0) / concurrency)
                assert all(s == 200 for s in statuses)
    ratio = statistics.median(per_call["raw_aiohttp"]) / statistics.median(per_call[variant])
    for name, samples in per_call.items():
        info: dict[str, Any] = {
            "suite": "client",
            "subject": subject,
            "variant": f"{name}_paired",
            "unit_per_call": "request",
            "target": "emulator",
            "concurrency": concurrency,
            "req_per_s": 1.0 / statistics.median(samples),
        }
        if name == variant:
            info["ratio_to_raw_aiohttp"] = ratio
        abenchmark.record(
            samples,
            label=f"{subject}-{name}_paired-vs-{variant}",
            params={"variant": f"{name}_paired", "concurrency": concurrency, "pair": variant},
            extra_info=info,
            group=f"client/{subject}-paired",
        )
