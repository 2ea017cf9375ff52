"""Pipeline suite: the same workload through the "before" and the "after" stack, A/B interleaved.

* **before** (:mod:`bench.suites.before_stack`): a new ``httpx.AsyncClient`` per request, no
  cache, the json + sha256 key, the fixed order gemini → anthropic → openai (never Ollama);
* **after**: :class:`AIManager` with its :class:`ResponseCache` (fakeredis in
  mocked mode, the real redis-server in live mode; default cache settings in a
  fresh namespace), the router picking the chain by the item's task and priority.

Each request of a committed workload (``fixtures/workloads/*.jsonl``) goes through
both stacks back to back, alternating which goes first, so drift (a busy
machine, warming caches) hits both alike. Both talk to the same world: the
respx-mocked providers in mocked mode, a private emulator server in live mode
(plus any provider the environment names), at latency scale
:data:`LATENCY_SCALE` (recorded as ``extra_info["latency_scale"]``: a 3 s
Gemini call takes 30 ms at 0.01).

Two benchmark entries per workload (``test_pipeline[<workload>-before]`` and
``[...-after]``, group ``pipeline/<workload>``): ``stats.data`` = every request's
latency; ``extra_info``: ``stack``, ``requests`` (one record per request:
``i``, ``latency_ms``, ``provider``, ``cached``, ``cost_usd``, ``task``),
``hit_rate``, ``repeat_fraction`` (the workload's truth for the replayed
requests: the ceiling of the hit rate), ``provider_calls``, ``cost_usd`` (what
the stack paid), ``baseline_cost_usd`` (what the *same* stack would have paid
without a cache: hits priced at their original cost; for "before", its own
cost), ``before_cost_usd`` (the before stack's dollars in this run),
``p50_ms``/``p95_ms``/``p99_ms``, ``latency_scale``, ``workload``, ``live_providers``
(providers the environment pointed at real services in live mode; the report names them).

Why the baseline is the stack's own uncached cost: the before stack calls the
cloud providers in a fixed order while the after stack's router also sends
work to the free local Ollama, so before-vs-after dollars mix two levers (the
router and the cache); ``baseline_cost_usd`` isolates the cache's. Note also that only
the *world's* delays are scaled: client set-up and the layer's own overheads
are not, so at a small scale they weigh more than they would at scale 1.

``test_request_cpu`` (group ``pipeline/request-cpu``): the client-side CPU of one
``AIManager.complete()`` (no cache, the default router) over the in-process mock at
latency 0: what the layer itself costs per request; counted by ``--instructions``.

Quick runs replay the first :data:`QUICK_REQUESTS` requests; smoke runs the
first :data:`SMOKE_REQUESTS` and store nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest

from bench.harness.aggregate import latency_figures
from bench.harness.fixture import AsyncBenchmark
from bench.harness.options import BenchOptions
from bench.suites.before_stack import BeforeStack
from bench.suites.conftest import bench_options
from fixtures.workloads import DATA_DIR, WorkloadItem, load, measured_repeat_fraction
from samplemind_core import (
    AllProvidersFailedError,
    CacheConfig,
    ChatRequest,
    ChatResponse,
    Secret,
    Settings,
)
from samplemind_core.cache import ResponseCache
from samplemind_core.manager import AIManager

__all__: list[str] = []

LATENCY_SCALE = 0.01
"""World time scale: every modelled provider delay × 0.01."""
FULL_WORKLOADS = ("samplemind_200_r60", "samplemind_200_r80", "samplemind_1000_r70")
SMALL_WORKLOADS = ("samplemind_200_r60",)
SMOKE_REQUESTS = 6
QUICK_REQUESTS = 100


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "workload" in metafunc.fixturenames:
        small = bench_options(metafunc.config).small_grid
        metafunc.parametrize("workload", SMALL_WORKLOADS if small else FULL_WORKLOADS)


@dataclass
class _Series:
    """What one stack did over the replay."""

    stack: str
    latencies_s: list[float] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    provider_calls: int = 0
    failures: int = 0
    saved_usd: float = 0.0

    def add(self, i: int, item: WorkloadItem, seconds: float, resp: ChatResponse | None) -> None:
        self.latencies_s.append(seconds)
        self.records.append(
            {
                "i": i,
                "latency_ms": seconds * 1000.0,
                "provider": resp.provider if resp is not None else "failed",
                "cached": bool(resp.cached) if resp is not None else False,
                "cost_usd": resp.cost_usd if resp is not None else 0.0,
                "task": item.task,
            }
        )

    @property
    def cost_usd(self) -> float:
        return float(sum(r["cost_usd"] for r in self.records))

    @property
    def uncached_cost_usd(self) -> float:
        """What the stack would have paid without its cache (hits at their original price)."""
        return self.cost_usd + self.saved_usd

    @property
    def hit_rate(self) -> float:
        return sum(1 for r in self.records if r["cached"]) / max(1, len(self.records))


def _with_keys(settings: Settings) -> Settings:
    """Dummy keys for the cloud providers that have none (mocked APIs, like real ones, want one)."""
    for name in ("openai", "anthropic", "gemini"):
        if settings.provider(name).api_key is None:
            settings = settings.with_provider(name, api_key=Secret(f"sk-bench-{name}"))
    return settings


@pytest.fixture(
    params=[
        pytest.param("mocked", id="mocked"),
        pytest.param("live", id="live", marks=[pytest.mark.live, pytest.mark.redis]),
    ]
)
async def world(
    request: pytest.FixtureRequest, bench_opts: BenchOptions
) -> AsyncIterator[tuple[str, Settings, Any]]:
    """``(mode, settings, redis client)``: respx + fakeredis, or emulator + redis-server."""
    if request.param == "mocked" and bench_opts.live and not bench_opts.disabled:
        pytest.skip("a timed live run replays against the emulator and redis-server")
    if request.param == "live":
        from fixtures.servers import env_provided_providers

        env = Settings.from_env()
        server = request.getfixturevalue("emulator_factory")(latency_scale=LATENCY_SCALE, seed=0)
        settings = server.settings(env)
        for name in env_provided_providers(env):  # services named by the environment win
            settings = settings.with_provider(
                name,
                base_url=env.provider(name).base_url,
                api_key=env.provider(name).api_key,
            )
        client = request.getfixturevalue("redis_server").client()
        mode = "live"
    else:
        mock = request.getfixturevalue("mock_providers")
        mock.configure(latency_scale=LATENCY_SCALE, seed=0)
        settings = _with_keys(mock.settings)
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        mode = "mocked"
    try:
        yield mode, settings, client
    finally:
        await client.aclose()


def _after_calls(resp: ChatResponse) -> int:
    if resp.cached:
        return 0
    route = resp.metadata.get("route", [])
    errors = sum(1 for step in route if step.get("outcome") == "error")
    return errors + max(1, resp.attempts)


async def test_pipeline(
    world: tuple[str, Settings, Any],  # first: its skip must come before the benchmark fixture
    workload: str,
    abenchmark: AsyncBenchmark,
    bench_opts: BenchOptions,
) -> None:
    mode, settings, client = world
    items = load(DATA_DIR / f"{workload}.jsonl")
    if not abenchmark.enabled:
        items = items[:SMOKE_REQUESTS]
    elif bench_opts.quick:
        items = items[:QUICK_REQUESTS]
    before_stack = BeforeStack(settings)
    cache = ResponseCache(
        client, config=CacheConfig(namespace=f"pipe{uuid.uuid4().hex[:8]}", ttl_s=600.0)
    )
    before, after = _Series("before"), _Series("after")
    async with AIManager(settings, cache=cache) as manager:

        async def run_before(i: int, item: WorkloadItem) -> None:
            t0 = time.perf_counter()
            try:
                resp: ChatResponse | None = await before_stack.complete(item.request)
            except AllProvidersFailedError:
                resp = None
                before.failures += 1
            before.add(i, item, time.perf_counter() - t0, resp)

        async def run_after(i: int, item: WorkloadItem) -> None:
            t0 = time.perf_counter()
            try:
                resp: ChatResponse | None = await manager.complete(
                    item.request, task=item.task, priority=item.priority
                )
            except AllProvidersFailedError:
                resp = None
                after.failures += 1
            after.add(i, item, time.perf_counter() - t0, resp)
            if resp is not None:
                after.provider_calls += _after_calls(resp)
                if resp.cached:
                    after.saved_usd += float(resp.metadata.get("cache", {}).get("cost_usd", 0.0))

        for i, item in enumerate(items):
            if i % 2 == 0:
                await run_before(i, item)
                await run_after(i, item)
            else:
                await run_after(i, item)
                await run_before(i, item)
    await cache.aclose()
    before.provider_calls = before_stack.provider_calls

    # The world is fault-free: every request must be answered, and the cache can
    # only hit on repeats.
    assert before.failures == 0 and after.failures == 0
    repeat = measured_repeat_fraction(items)
    assert after.hit_rate <= repeat + 1e-9 + _cross_task_slack(items)
    if abenchmark.enabled:
        assert after.hit_rate > 0

    live_providers: list[str] = []
    if mode == "live":  # services the environment named are live; the rest is the emulator
        from fixtures.servers import env_provided_providers

        live_providers = sorted(env_provided_providers(Settings.from_env()))
    for series in (before, after):
        info: dict[str, Any] = {
            "suite": "pipeline",
            "subject": f"{workload}-{mode}",
            "variant": series.stack,
            "unit_per_call": "request",
            "stack": series.stack,
            "workload": workload,
            "mode": mode,
            "latency_scale": LATENCY_SCALE,
            "live_providers": live_providers,
            "requests_replayed": len(items),
            "hit_rate": series.hit_rate,
            "repeat_fraction": repeat,
            "provider_calls": series.provider_calls,
            "cost_usd": series.cost_usd,
            "baseline_cost_usd": series.uncached_cost_usd,
            "before_cost_usd": before.cost_usd,
            "requests": series.records,
            **latency_figures(series.latencies_s),
        }
        abenchmark.record(
            series.latencies_s,
            label=f"{workload}-{mode}-{series.stack}",
            params={"workload": workload, "stack": series.stack, "world": mode},
            extra_info=info,
            group=f"pipeline/{workload}-{mode}",
        )


async def test_request_cpu(abenchmark: AsyncBenchmark, mock_providers: Any) -> None:
    mock_providers.configure(latency_scale=0.0, seed=0)
    settings = dataclasses.replace(_with_keys(mock_providers.settings), redis_url=None)
    request = ChatRequest(
        messages=[{"role": "user", "content": "Suggest a name for a lo-fi sample pack."}],
        max_tokens=32,
    )
    abenchmark.describe("pipeline", "request-cpu", "mock-nocache", unit_per_call="request")
    async with AIManager(settings) as manager:
        complete = functools.partial(manager.complete, request, task="chat", priority="speed")
        resp = await abenchmark(complete)
    assert resp.text and not resp.cached


def _cross_task_slack(items: list[WorkloadItem]) -> float:
    """Hits the workload's repeat count cannot see: the same request under another task/priority.

    The workload counts a repeat by task + priority + fingerprint; the cache keys by the
    request alone, so a request asked again under another task may hit too.
    """
    from samplemind_core.fingerprint import fingerprint

    seen_full: set[tuple[str, str, str]] = set()
    seen_req: set[str] = set()
    extra = 0
    for item in items:
        fp = fingerprint(item.request, hasher="sha256")
        full = (item.task, item.priority, fp)
        if full not in seen_full and fp in seen_req:
            extra += 1
        seen_full.add(full)
        seen_req.add(fp)
    return extra / max(1, len(items))
