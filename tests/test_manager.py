"""AIManager: cache → router → providers, fallback, breaker, pinning, rate limits, secrets.

Providers are answered by an ``httpx.MockTransport`` that speaks the four real
wire formats (injected into ``HttpClient(transport=...)``); the cache runs on
``fakeredis`` and, in the ``redis``-marked test, on a real ``redis-server``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis
import httpx
import orjson
import pytest

import samplemind_core.manager as manager_module
from samplemind_core import (
    AllProvidersFailedError,
    ChatRequest,
    ClientStateError,
    ConfigError,
    HttpConfig,
    ResponseCache,
    RetryConfig,
    Secret,
    Settings,
)
from samplemind_core.manager import AIManager
from samplemind_core.router import BreakerConfig, BreakerState, Priority, Router, Task

CANARY = {
    "openai": "sk-CANARY-openai-5f1e0c7a9b",
    "anthropic": "sk-ant-CANARY-anthropic-77aa",
    "gemini": "AIzaCANARY-gemini-0d0d0d",
}


def settings(**provider_changes: dict[str, Any]) -> Settings:
    s = Settings(http=HttpConfig(retry=RetryConfig(attempts=3, jitter=False)))
    for name, key in CANARY.items():
        s = s.with_provider(name, api_key=Secret(key))
    for name, changes in provider_changes.items():
        s = s.with_provider(name, **changes)
    return s


def provider_of(request: httpx.Request) -> str:
    path = request.url.path
    if path.startswith("/api/"):
        return "ollama"
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/messages"):
        return "anthropic"
    if ":generateContent" in path:
        return "gemini"
    raise AssertionError(f"unexpected path {path}")


def ok_body(provider: str, model: str, text: str) -> dict[str, Any]:
    if provider == "ollama":
        return {
            "model": model,
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 12,
            "eval_count": 7,
        }
    if provider == "openai":
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        }
    if provider == "anthropic":
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 12, "output_tokens": 7},
        }
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 7, "totalTokenCount": 19},
        "modelVersion": model,
    }


def model_of(provider: str, request: httpx.Request) -> str:
    if provider == "gemini":
        return request.url.path.rsplit("/", 1)[1].split(":")[0]
    return str(orjson.loads(request.content)["model"])


Behaviour = int | str | Callable[[httpx.Request], httpx.Response]


class World:
    """The four providers behind one MockTransport; ``behave[name]`` = "ok" | status | callable."""

    def __init__(self) -> None:
        self.behave: dict[str, Behaviour] = {}
        self.calls: Counter[str] = Counter()
        self.models: dict[str, list[str]] = {}
        self.headers: list[httpx.Headers] = []
        self.gate: asyncio.Event | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        name = provider_of(request)
        self.calls[name] += 1
        self.headers.append(request.headers)
        model = model_of(name, request)
        self.models.setdefault(name, []).append(model)
        if self.gate is not None:
            await self.gate.wait()
        behaviour = self.behave.get(name, "ok")
        if callable(behaviour):
            return behaviour(request)
        if behaviour == "ok":
            return httpx.Response(200, json=ok_body(name, model, f"answer from {name}"))
        assert isinstance(behaviour, int)
        return httpx.Response(behaviour, json={"error": {"message": f"status {behaviour}"}})


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def redis_client() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    try:
        yield client
    finally:
        await client.aclose()


def build(
    world: World,
    redis: Any = None,
    *,
    router: Router | None = None,
    s: Settings | None = None,
) -> AIManager:
    from samplemind_core import HttpClient

    s = s or settings()
    http = HttpClient(s.http, transport=httpx.MockTransport(world.handle), sleep=no_sleep)
    cache = ResponseCache(redis) if redis is not None else None
    m = AIManager(s, cache=cache, http=http, router=router)
    return m


def req(text: str = "Tag this sample: dark_techno_kick_128bpm.wav", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


@pytest.fixture(autouse=True)
def _quiet_uncached(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests that run uncached should not depend on which test logged first.
    monkeypatch.setattr(manager_module, "_uncached_logged", True)


def provider_module(name: str) -> Any:
    import importlib

    return importlib.import_module(f"samplemind_core.providers.{name}")


# -- happy path ---------------------------------------------------------------


@pytest.mark.parametrize("task", list(Task))
async def test_happy_path_per_task(task: Task, world: World, redis_client: Any) -> None:
    async with build(world, redis_client) as ai:
        request = req(f"question for {task}", max_tokens=50)
        expected = ai.router.route(task, "speed")[0]
        plan = ai.router.plan(task, "speed", request)
        resp = await ai.complete(request, task=task, priority=Priority.SPEED)
    assert resp.provider == expected
    assert resp.text == f"answer from {expected}"
    assert resp.cached is False
    assert resp.attempts == 1
    assert resp.model == plan[0].model
    assert world.models[expected] == [plan[0].model]
    assert resp.usage.input_tokens == 12 and resp.usage.output_tokens == 7
    p_in, p_out = provider_module(expected).PRICES[resp.model]
    assert resp.cost_usd == pytest.approx((12 * p_in + 7 * p_out) / 1e6)
    assert resp.estimated_cost_usd == pytest.approx(plan[0].estimated_cost_usd)
    assert resp.latency_ms > 0
    assert [step["outcome"] for step in resp.metadata["route"]] == ["ok"]
    assert sum(world.calls.values()) == 1


async def test_costs_against_price_table_for_a_paid_provider(world: World) -> None:
    async with build(world) as ai:
        resp = await ai.complete(req("x" * 400, max_tokens=100), task="tools", priority="quality")
    assert resp.provider == "openai"
    p_in, p_out = provider_module("openai").PRICES[resp.model]
    assert p_in > 0 and p_out > 0
    assert resp.cost_usd == pytest.approx((12 * p_in + 7 * p_out) / 1e6)
    # Estimated before the call: 400 chars -> 100 tokens in, max_tokens out.
    assert resp.estimated_cost_usd == pytest.approx((100 * p_in + 100 * p_out) / 1e6)


# -- cache ----------------------------------------------------------------------


async def test_second_call_is_a_cache_hit(world: World, redis_client: Any) -> None:
    async with build(world, redis_client) as ai:
        first = await ai.complete(req(), task="creative", priority="quality")
        assert first.provider == "anthropic" and first.cost_usd > 0
        second = await ai.complete(req(), task="creative", priority="quality")
        stats = ai.cache.stats() if ai.cache else None
    assert world.calls["anthropic"] == 1
    assert sum(world.calls.values()) == 1
    assert second.cached is True
    assert second.text == first.text and second.provider == "anthropic"
    assert second.cost_usd == 0.0  # nothing was paid for this call
    assert second.attempts == 0
    assert second.metadata["cache"]["cost_usd"] == pytest.approx(first.cost_usd)
    assert stats is not None
    assert stats.hits == 1 and stats.misses == 1
    assert stats.cost_saved_usd == pytest.approx(first.cost_usd)


async def test_concurrent_identical_requests_make_one_call(world: World, redis_client: Any) -> None:
    world.gate = asyncio.Event()
    async with build(world, redis_client) as ai:
        tasks = [
            asyncio.create_task(ai.complete(req(), task="chat", priority="quality"))
            for _ in range(3)
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while loop.time() < deadline:  # poll until both followers wait on the leader's call
            if ai.cache is not None and ai.cache.stats().coalesced >= 2:
                break
            await asyncio.sleep(0.001)
        world.gate.set()
        replies = await asyncio.gather(*tasks)
    assert sum(world.calls.values()) == 1
    paid = [r for r in replies if not r.cached]
    assert len(paid) == 1 and paid[0].provider == "anthropic" and paid[0].cost_usd > 0
    shared = [r for r in replies if r.cached]
    assert len(shared) == 2
    for r in shared:
        assert r.metadata.get("coalesced") is True
        assert r.attempts == 0 and r.cost_usd == 0.0
        assert r.text == paid[0].text


async def test_uncached_mode_calls_every_time(world: World) -> None:
    async with build(world) as ai:
        assert ai.cache is None
        await ai.complete(req())
        await ai.complete(req())
    assert world.calls["ollama"] == 2


def test_no_redis_logs_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(manager_module, "_uncached_logged", False)
    with caplog.at_level(logging.INFO, logger="samplemind_core.manager"):
        AIManager(Settings())
        AIManager(Settings())
        AIManager.from_env({})
    records = [r for r in caplog.records if "uncached" in r.getMessage()]
    assert len(records) == 1
    assert "REDIS_URL" in records[0].getMessage()


# -- fallback, breaker ----------------------------------------------------------


async def test_fallback_on_503_uses_second_provider(world: World) -> None:
    world.behave["ollama"] = 503
    async with build(world) as ai:
        resp = await ai.complete(req(), task="factual", priority="speed")
    chain = ["ollama", "gemini", "openai", "anthropic"]
    assert resp.provider == chain[1]
    assert world.calls["ollama"] == 3  # the HTTP client retried 503 twice
    route = resp.metadata["route"]
    assert [(s["provider"], s["outcome"]) for s in route] == [("ollama", "error"), ("gemini", "ok")]
    assert "ProviderServerError" in route[0]["error"]


async def test_fallback_order_follows_the_chain(world: World) -> None:
    world.behave.update(anthropic=500, openai=500)
    async with build(world) as ai:
        resp = await ai.complete(req(), task="creative", priority="quality")
    assert resp.provider == "gemini"
    assert [s["provider"] for s in resp.metadata["route"]] == ["anthropic", "openai", "gemini"]


async def test_all_fail_raises_one_error_listing_each_attempt(world: World) -> None:
    world.behave.update(ollama=500, gemini=503, openai=429, anthropic=401)
    async with build(world) as ai:
        with pytest.raises(AllProvidersFailedError) as info:
            await ai.complete(req(), task="factual", priority="speed")
        chain = ai.router.route("factual", "speed")
    err = info.value
    assert [a.provider for a in err.attempts] == chain
    causes = {a.provider: a.error for a in err.attempts}
    assert "ProviderServerError" in causes["ollama"]
    assert "ProviderServerError" in causes["gemini"]
    assert "RateLimitError" in causes["openai"]
    assert "AuthenticationError" in causes["anthropic"]
    assert all(a.model for a in err.attempts)
    for name in chain:
        assert name in str(err)


async def test_all_fail_is_not_cached(world: World, redis_client: Any) -> None:
    world.behave.update(ollama=500, gemini=500, openai=500, anthropic=500)
    async with build(world, redis_client) as ai:
        with pytest.raises(AllProvidersFailedError):
            await ai.complete(req())
        world.behave.clear()
        resp = await ai.complete(req())
    assert resp.cached is False and resp.provider == "ollama"


async def test_transport_errors_fall_back(world: World) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    world.behave["ollama"] = refuse
    async with build(world) as ai:
        resp = await ai.complete(req(), task="factual", priority="speed")
    assert resp.provider == "gemini"
    assert "ConnectError" in resp.metadata["route"][0]["error"]


async def test_breaker_opens_and_provider_is_moved_last(world: World) -> None:
    world.behave["ollama"] = 500  # not retried by the client: one call per request
    router = Router(breaker=BreakerConfig(failure_threshold=3))
    async with build(world, router=router) as ai:
        for i in range(3):
            resp = await ai.complete(req(f"q{i}"), task="factual", priority="speed")
            assert resp.provider == "gemini"
        assert world.calls["ollama"] == 3
        assert ai.router.health("ollama").state is BreakerState.OPEN
        assert ai.router.route("factual", "speed")[-1] == "ollama"
        resp = await ai.complete(req("q3"), task="factual", priority="speed")
        assert resp.provider == "gemini"
        assert world.calls["ollama"] == 3  # not called while open
        assert [s["provider"] for s in resp.metadata["route"]] == ["gemini"]
        # Everything else failing too: the open provider is called last, as a last resort.
        world.behave.update(gemini=500, openai=500, anthropic=500)
        with pytest.raises(AllProvidersFailedError) as info:
            await ai.complete(req("q4"), task="factual", priority="speed")
        assert world.calls["ollama"] == 4
        assert [a.provider for a in info.value.attempts] == [
            "gemini",
            "openai",
            "anthropic",
            "ollama",
        ]
        # ... and when it has recovered, the last resort answers instead of an error.
        world.behave["ollama"] = "ok"
        resp = await ai.complete(req("q5"), task="factual", priority="speed")
        assert resp.provider == "ollama"
        steps = [(s["provider"], s["outcome"]) for s in resp.metadata["route"]]
        assert steps[-2:] == [("ollama", "last resort"), ("ollama", "ok")]


async def test_half_open_trial_closes_breaker_on_success(world: World) -> None:
    now = [0.0]
    router = Router(
        breaker=BreakerConfig(failure_threshold=1, cooldown_s=30.0), clock=lambda: now[0]
    )
    world.behave["ollama"] = 500
    async with build(world, router=router) as ai:
        await ai.complete(req("a"), task="factual", priority="speed")
        assert ai.router.health("ollama").state is BreakerState.OPEN
        world.behave["ollama"] = "ok"
        now[0] = 30.0
        resp = await ai.complete(req("b"), task="factual", priority="speed")
        assert resp.provider == "ollama"
        assert ai.router.health("ollama").state is BreakerState.CLOSED


async def test_health_is_fed_by_traffic(world: World) -> None:
    async with build(world) as ai:
        await ai.complete(req("a"), task="factual", priority="speed")
        h = ai.router.health("ollama")
    assert h.successes == 1 and h.latency_ewma_ms is not None and h.latency_ewma_ms > 0


async def test_bad_request_falls_back_without_hurting_health(world: World) -> None:
    world.behave["ollama"] = 400
    router = Router(breaker=BreakerConfig(failure_threshold=1))
    async with build(world, router=router) as ai:
        resp = await ai.complete(req(), task="factual", priority="speed")
        assert resp.provider == "gemini"
        assert "BadRequestError" in resp.metadata["route"][0]["error"]
        h = ai.router.health("ollama")
    assert h.state is BreakerState.CLOSED and h.failures == 0


async def test_missing_api_key_is_skipped_before_anything_is_sent(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(openai={"api_key": None})
    async with build(world, s=s) as ai:
        with caplog.at_level(logging.WARNING, logger="samplemind_core.manager"):
            for _ in range(3):
                resp = await ai.complete(req(), task="tools", priority="quality")
        h = ai.router.health("openai")
    assert resp.provider == "anthropic"
    assert world.calls["openai"] == 0  # nothing was sent without a key
    step = resp.metadata["route"][0]
    assert (step["provider"], step["outcome"]) == ("openai", "skipped")
    assert "no API key" in step["error"] and "OPENAI_API_KEY" in step["error"]
    assert (h.failures, h.state) == (0, BreakerState.CLOSED)  # not the provider's fault
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "openai" in skipped[0].getMessage()  # once per manager


async def test_no_keys_at_all_quality_chain_calls_only_ollama(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    s = Settings(http=HttpConfig(retry=RetryConfig(attempts=3, jitter=False)))  # no keys
    async with build(world, s=s) as ai:
        with caplog.at_level(logging.WARNING):
            for i in range(5):
                resp = await ai.complete(req(f"q{i}"), task="chat", priority="quality")
                assert resp.provider == "ollama"
        healths = [ai.router.health(p) for p in ("openai", "anthropic", "gemini")]
    assert dict(world.calls) == {"ollama": 5}  # no keyless request left the process
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert sorted(m.split()[1] for m in skipped) == ["anthropic", "gemini", "openai"]
    assert all(h.failures == 0 and h.state is BreakerState.CLOSED for h in healths)
    outcomes = {st["provider"]: st["outcome"] for st in resp.metadata["route"]}
    assert outcomes["ollama"] == "ok"
    assert all(o == "skipped" for p, o in outcomes.items() if p != "ollama")
    assert len(outcomes) == 4  # the chain went through every hosted provider first


async def test_a_bad_request_timeout_never_feeds_the_breaker(world: World) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        ChatRequest(messages=[{"role": "user", "content": "hi"}], timeout=-1)
    async with build(world) as ai:
        for _ in range(6):
            bad = req("hi")
            bad.timeout = -1.0  # changed after construction: complete() checks again
            with pytest.raises(ConfigError, match="timeout"):
                await ai.complete(bad, task="chat", priority="quality")
        healths = [ai.router.health(p) for p in ("ollama", "openai", "anthropic", "gemini")]
        ok = await ai.complete(req("hi"), task="chat", priority="quality")
    assert sum(world.calls.values()) == 1  # the six bad calls sent nothing
    assert all(h.failures == 0 and h.state is BreakerState.CLOSED for h in healths)
    assert ok.metadata["route"][0]["outcome"] == "ok"


async def test_http_client_refuses_a_bad_timeout_before_sending(world: World) -> None:
    from samplemind_core import HttpClient

    async with HttpClient(transport=httpx.MockTransport(world.handle)) as http:
        for bad in (-1.0, 0.0, float("nan"), float("inf")):
            with pytest.raises(ConfigError, match="timeout"):
                await http.request("POST", "http://h/api/chat", json={}, timeout=bad)
        with pytest.raises(ConfigError, match="cannot be encoded as JSON"):
            await http.request("POST", "http://h/api/chat", json={"x": "\ud800"})
    assert not world.calls


# -- pinning, validation -------------------------------------------------------


async def test_pinned_provider_and_model(world: World) -> None:
    model = sorted(provider_module("gemini").PRICES)[0]
    async with build(world) as ai:
        resp = await ai.complete(
            req(provider="gemini", model=model), task="creative", priority="quality"
        )
    assert resp.provider == "gemini"
    assert world.models["gemini"] == [model]
    assert sum(world.calls.values()) == 1


async def test_pinned_provider_falls_back_when_it_fails(world: World) -> None:
    world.behave["openai"] = 500
    async with build(world) as ai:
        resp = await ai.complete(req(provider="openai"), task="factual", priority="speed")
    assert resp.provider == "ollama"
    assert [s["provider"] for s in resp.metadata["route"]] == ["openai", "ollama"]


async def test_unknown_task_priority_or_provider(world: World) -> None:
    async with build(world) as ai:
        with pytest.raises(ConfigError, match="unknown task"):
            await ai.complete(req(), task="poetry")
        with pytest.raises(ConfigError, match="unknown priority"):
            await ai.complete(req(), priority="cheap")
        with pytest.raises(ConfigError, match="unknown provider"):
            await ai.complete(req(provider="mistral"))
    assert sum(world.calls.values()) == 0


async def test_prompt_too_long_for_every_model(world: World) -> None:
    async with build(world) as ai:
        with pytest.raises(AllProvidersFailedError) as info:
            await ai.complete(req("x" * 40, max_tokens=100_000_000))
    assert sum(world.calls.values()) == 0
    assert all("context window" in a.error for a in info.value.attempts)


# -- rate limits ------------------------------------------------------------------


async def test_rate_limiter_wiring(world: World) -> None:
    from aiolimiter import AsyncLimiter

    s = settings(ollama={"rate_limit_per_s": 0.01}, openai={"rate_limit_per_s": 20.0})
    async with build(world, s=s) as ai:
        limiters = ai._limiters
        assert isinstance(limiters["ollama"], AsyncLimiter)
        assert isinstance(limiters["openai"], AsyncLimiter)
        assert limiters["openai"].max_rate == 20.0 and limiters["openai"].time_period == 1.0
        assert limiters["gemini"] is None and limiters["anthropic"] is None
        ollama = limiters["ollama"]
        assert ollama.max_rate == 1 and ollama.time_period == pytest.approx(100.0)
        assert ollama.has_capacity()
        await ai.complete(req("a"), task="factual", priority="speed")
        # One request used the bucket of 1 (it leaks 1 per 100 s): the next would wait.
        assert not ollama.has_capacity()
        # A second request is held by the limiter, not sent.
        pending = asyncio.create_task(ai.complete(req("b"), task="factual", priority="speed"))
        for _ in range(5):  # uncached: nothing before the limiter awaits, so it is parked there
            await asyncio.sleep(0)
        assert not pending.done()
        assert world.calls["ollama"] == 1
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert ai.router.health("ollama").state is BreakerState.CLOSED


def test_bad_rate_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rate_limit_per_s"):
        AIManager(settings(ollama={"rate_limit_per_s": 0.0}))


# -- lifecycle ---------------------------------------------------------------------


async def test_closes_what_it_created_not_what_was_injected(world: World) -> None:
    from samplemind_core import HttpClient

    injected = HttpClient(transport=httpx.MockTransport(world.handle))
    ai = AIManager(settings(), http=injected)
    await ai.aclose()
    assert not injected.closed
    await injected.aclose()

    own = AIManager(settings())
    await own.aclose()
    assert own.http.closed
    await own.aclose()  # idempotent
    with pytest.raises(ClientStateError):
        await own.complete(req())


async def test_from_env_builds_redis_cache_without_connecting() -> None:
    ai = AIManager.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"})
    try:
        assert ai.cache is not None
        assert type(ai._redis).__name__ == "Redis"
    finally:
        await ai.aclose()
    cluster = AIManager.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_CLUSTER": "1"})
    try:
        assert type(cluster._redis).__name__ == "RedisCluster"
    finally:
        await cluster.aclose()


def test_bad_redis_url_does_not_echo_it() -> None:
    with pytest.raises(ConfigError) as info:
        AIManager(Settings(redis_url="http://:hunter2secret@host:1"))
    assert "hunter2secret" not in str(info.value)


async def test_redis_unreachable_degrades_to_uncached(world: World) -> None:
    from samplemind_core import HttpClient

    s = Settings(redis_url="redis://127.0.0.1:1/0")
    http = HttpClient(transport=httpx.MockTransport(world.handle))
    async with AIManager(s, http=http) as ai:
        resp = await ai.complete(req())
        assert resp.provider == "ollama" and resp.cached is False
    await http.aclose()


@pytest.mark.redis
async def test_real_redis_cache_hit(world: World, redis_server: Any) -> None:
    from samplemind_core import CacheConfig, HttpClient

    cache = CacheConfig(namespace="test-manager-real", op_timeout_s=2.0)  # xdist load: see TLS test
    s = Settings(redis_url=redis_server.url, cache=cache)
    http = HttpClient(transport=httpx.MockTransport(world.handle))
    async with AIManager(s, http=http) as ai:
        assert ai.cache is not None
        await ai.cache.clear()
        text = f"real redis {id(ai)}"
        first = await ai.complete(req(text))
        second = await ai.complete(req(text))
    assert first.cached is False and second.cached is True
    assert world.calls["ollama"] == 1
    await http.aclose()


async def test_owned_redis_client_is_closed(monkeypatch: pytest.MonkeyPatch, world: World) -> None:
    closed: list[bool] = []

    class Fake(fakeredis.FakeAsyncRedis):  # type: ignore[misc]
        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            closed.append(True)
            await super().aclose()

    monkeypatch.setattr(
        manager_module, "_make_redis", lambda s: Fake(server=fakeredis.FakeServer())
    )
    fake = Fake(server=fakeredis.FakeServer())
    async with build(world, fake) as injected:
        assert injected.cache is not None
    assert closed == []  # injected: not ours to close
    await fake.aclose()
    closed.clear()
    async with AIManager(Settings(redis_url="redis://127.0.0.1:1/0")) as ai:
        assert ai.cache is not None
    assert closed == [True]
    assert ai.http.closed


# -- secrets -------------------------------------------------------------------------


async def test_canary_keys_never_leak(
    world: World, redis_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def echo_key(request: httpx.Request) -> httpx.Response:
        # A hostile provider that echoes the credential it received into its error body.
        sent = " ".join(
            request.headers.get(h, "") for h in ("authorization", "x-api-key", "x-goog-api-key")
        )
        return httpx.Response(401, json={"error": {"message": f"bad key {sent}"}})

    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with build(world, redis_client) as ai:
        await ai.complete(req("first"), task="factual", priority="quality")  # openai answers
        world.behave.update(openai=echo_key, gemini=echo_key)
        await ai.complete(req("second"), task="factual", priority="quality")  # anthropic answers
        world.behave.update(anthropic=echo_key, ollama=500)
        try:
            await ai.complete(req("third"), task="factual", priority="quality")
        except AllProvidersFailedError as exc:
            errors.append(exc)
        keys = await redis_client.keys("*")
        values = [
            await redis_client.get(k) for k in keys if await redis_client.type(k) == b"string"
        ]
    # The keys were really sent to the providers...
    sent = " ".join(v for h in world.headers for v in h.values())
    assert all(k in sent for k in CANARY.values())
    # ...and appear nowhere we store, log or raise.
    assert len(errors) == 1 and len(values) >= 2
    texts: list[str] = []
    exc: BaseException | None = errors[0]
    while exc is not None:
        texts.append(str(exc))
        texts.extend(repr(a) for a in getattr(exc, "attempts", []))
        exc = exc.__cause__ or exc.__context__
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(str(record.exc_info[1]))
    blob = b"\n".join([*keys, *values, "\n".join(texts).encode()])
    for name, key in CANARY.items():
        assert key.encode() not in blob, f"{name} key leaked"
    assert b"bad key" in blob  # the hostile bodies really reached the error texts (redacted)


# -- real sockets: the emulator server and a real redis-server ---------------------


@pytest.mark.live
@pytest.mark.redis
@pytest.mark.parametrize("provider", ["ollama", "openai", "anthropic", "gemini"])
async def test_live_emulator_and_real_redis(
    provider: str, emulator_server: Any, redis_server: Any
) -> None:
    from samplemind_core import CacheConfig

    namespace = f"test-manager-live-{provider}"
    cache = CacheConfig(namespace=namespace, op_timeout_s=2.0)  # xdist load: see the TLS test
    base = Settings(redis_url=redis_server.url, cache=cache)
    s = emulator_server.settings(base)
    async with AIManager(s) as ai:
        assert ai.cache is not None
        await ai.cache.clear()
        before = emulator_server.stats()["calls"].get(provider, 0)
        request = req(f"live {provider}", provider=provider, max_tokens=64)
        first = await ai.complete(request, task="genre", priority="speed")
        second = await ai.complete(request, task="genre", priority="speed")
        after = emulator_server.stats()["calls"].get(provider, 0)
    assert first.provider == provider and first.text and first.cached is False
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    price = ai.router.catalog.price(provider, first.model)
    assert price is not None
    p_in, p_out = price
    assert first.cost_usd == pytest.approx(
        (first.usage.input_tokens * p_in + first.usage.output_tokens * p_out) / 1e6
    )
    assert second.cached is True and second.text == first.text and second.cost_usd == 0.0
    assert after - before == 1


@pytest.mark.live
async def test_live_fallback_on_refused_connection(emulator_server: Any) -> None:
    from fixtures.ports import free_port

    s = emulator_server.settings().with_provider(
        "ollama", base_url=f"http://127.0.0.1:{free_port()}"
    )
    s = Settings(http=HttpConfig(retry=RetryConfig(attempts=1)), providers=s.providers)
    async with AIManager(s) as ai:
        resp = await ai.complete(req("refused"), task="factual", priority="speed")
    assert resp.provider == "gemini"
    assert resp.metadata["route"][0]["provider"] == "ollama"
    assert "ConnectError" in resp.metadata["route"][0]["error"]


def test_configured_default_model_wins_over_per_task_models() -> None:
    ai = AIManager(settings(openai={"default_model": "gpt-4o"}))
    assert ai.router.model_for("openai", "tools") == "gpt-4o"
    assert ai.router.model_for("openai", "chat") == "gpt-4o"
    # Providers without a configured model keep the built-in per-task choice.
    assert ai.router.model_for("anthropic", "creative").startswith("claude-sonnet-4")


@pytest.mark.redis
async def test_rediss_url_from_settings(world: World, redis_server_factory: Any) -> None:
    """REDIS_URL=rediss://...?ssl_ca_certs=... gives a verified TLS cache through the manager."""
    from samplemind_core import CacheConfig, HttpClient

    server = redis_server_factory(tls=True)
    # op_timeout_s also bounds the TLS handshake of a new connection (see CacheConfig):
    # 50 ms is too tight for that on this 2-core machine under xdist load
    cache = CacheConfig(namespace="test-manager-tls", op_timeout_s=2.0)
    s = Settings(redis_url=server.url, cache=cache)
    http = HttpClient(transport=httpx.MockTransport(world.handle))
    async with AIManager(s, http=http) as ai:
        first = await ai.complete(req("over TLS"))
        second = await ai.complete(req("over TLS"))
        assert ai.cache is not None and ai.cache.healthy
    assert first.cached is False and second.cached is True
    assert world.calls["ollama"] == 1
    await http.aclose()
