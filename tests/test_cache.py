"""Behaviour of ResponseCache, one suite run on fakeredis, a real redis-server and a real cluster."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest

from fixtures.redis import ExternalRedis, LocalRedisCluster, RedisServer
from samplemind_core import (
    CacheConfig,
    ChatRequest,
    ChatResponse,
    ConfigError,
    Secret,
    ToolCall,
    Usage,
    fingerprint,
)
from samplemind_core.cache import CacheStats, ResponseCache
from tests._helpers import until

BACKENDS = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis", id="redis-server", marks=pytest.mark.redis),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
]

Factory = Callable[..., ResponseCache]


@pytest.fixture(params=BACKENDS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A ready async client of the backend under test."""
    kind = request.param
    if kind == "fakeredis":
        c: Any = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    elif kind == "redis":
        server: RedisServer | ExternalRedis = request.getfixturevalue("redis_server")
        c = server.client()
    else:
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        c = cluster.client()
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def make_cache(client: Any) -> AsyncIterator[Factory]:
    """Caches on the backend, each in a fresh namespace unless one is given."""
    made: list[ResponseCache] = []
    default_ns = f"t{uuid.uuid4().hex[:12]}"

    def factory(**kwargs: Any) -> ResponseCache:
        config: CacheConfig = kwargs.pop("config", None) or CacheConfig(op_timeout_s=2.0)
        kwargs.setdefault("namespace", default_ns)
        cache = ResponseCache(client, config=config, **kwargs)
        made.append(cache)
        return cache

    yield factory
    for cache in made:
        await cache.aclose()


def req(text: str = "What genre is this loop?", provider: str | None = "ollama") -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": text}],
        provider=provider,
        model="llama3.2:3b-instruct-q8_0",
        temperature=0.2,
        max_tokens=256,
    )


def resp(text: str = "house", provider: str = "ollama", **kw: Any) -> ChatResponse:
    return ChatResponse(text=text, provider=provider, model="llama3.2:3b-instruct-q8_0", **kw)


async def keys_of(client: Any, cache: ResponseCache) -> list[str]:
    """Entry keys (not the generation hash) of the cache's namespace."""
    found = [
        k.decode() async for k in client.scan_iter(match=f"sm:{cache.namespace}:*", count=1000)
    ]
    return sorted(k for k in found if not k.endswith(":gen"))


async def test_miss_set_hit_round_trips_every_field(make_cache: Factory) -> None:
    cache = make_cache()
    original = resp(
        "house, 124 bpm",
        tool_calls=[ToolCall("tag", {"genre": "house", "bpm": 124}, id="c1")],
        finish_reason="stop",
        usage=Usage(120, 8),
        cost_usd=0.0042,
        estimated_cost_usd=0.005,
        latency_ms=812.5,
        attempts=2,
        metadata={"trace": "abc"},
    )
    assert await cache.get(req()) is None
    assert await cache.set(req(), original) is True
    hit = await cache.get(req())
    assert hit is not None
    assert hit.cached is True and original.cached is False
    assert (hit.text, hit.provider, hit.model) == (original.text, "ollama", original.model)
    assert hit.tool_calls == original.tool_calls
    assert hit.usage == Usage(120, 8)
    assert hit.finish_reason == "stop" and hit.attempts == 2
    assert hit.estimated_cost_usd == 0.005
    assert hit.cost_usd == 0.0  # a hit costs nothing ...
    assert hit.metadata["trace"] == "abc"
    assert hit.metadata["cache"]["cost_usd"] == 0.0042  # ... the original figures are kept
    assert hit.metadata["cache"]["latency_ms"] == 812.5


async def test_key_layout_and_default_ttl(make_cache: Factory, client: Any) -> None:
    cache = make_cache()
    key = cache.key_for(req())
    assert re.fullmatch(rf"sm:{cache.namespace}:0\.0:ollama:v1\.[0-9a-f]{{64}}", key)
    assert cache.key_for(req(provider=None)).split(":")[3] == "_"
    assert key.endswith(":" + fingerprint(req(), namespace=cache.namespace))
    sha = make_cache(config=CacheConfig(hasher="sha256", fingerprint_key=Secret("cd" * 32)))
    assert sha.key_for(req()).endswith(
        fingerprint(req(), namespace=sha.namespace, hasher="sha256", key=bytes.fromhex("cd" * 32))
    )
    await cache.set(req(), resp())
    assert await keys_of(client, cache) == [key]
    pttl = await client.pttl(key)
    week_ms = 7 * 24 * 3600 * 1000
    assert week_ms - 600_000 < pttl <= week_ms


async def test_per_call_ttl_override(make_cache: Factory, client: Any) -> None:
    cache = make_cache()
    await cache.set(req(), resp(), ttl_s=30)
    assert 0 < await client.pttl(cache.key_for(req())) <= 30_000
    with pytest.raises(ConfigError):
        await cache.set(req(), resp(), ttl_s=0)


async def test_json_serializer_and_mixed_readers(make_cache: Factory) -> None:
    ns = f"j{uuid.uuid4().hex[:8]}"
    as_json = make_cache(namespace=ns, config=CacheConfig(op_timeout_s=2.0, serializer="json"))
    as_msgpack = make_cache(namespace=ns)
    await as_json.set(req("a"), resp("from json"))
    await as_msgpack.set(req("b"), resp("from msgpack"))
    got_a, got_b = await as_msgpack.get(req("a")), await as_json.get(req("b"))
    assert got_a is not None and got_a.text == "from json"
    assert got_b is not None and got_b.text == "from msgpack"


async def test_namespaces_never_share_entries(make_cache: Factory) -> None:
    tenant_a, tenant_b = make_cache(namespace="tenant-a" + uuid.uuid4().hex[:6]), make_cache()
    await tenant_a.set(req(), resp("a's answer"))
    assert tenant_a.key_for(req()) != tenant_b.key_for(req())
    assert await tenant_b.get(req()) is None
    hit = await tenant_a.get(req())
    assert hit is not None and hit.text == "a's answer"


async def test_fingerprint_key_separates_caches(make_cache: Factory) -> None:
    other_key = CacheConfig(op_timeout_s=2.0, fingerprint_key=Secret("ab" * 32))
    plain, keyed = make_cache(), make_cache(config=other_key)
    await plain.set(req(), resp())
    assert plain.key_for(req()) != keyed.key_for(req())
    assert await keyed.get(req()) is None


async def test_clear_is_immediate_and_purge_removes_old_entries(
    make_cache: Factory, client: Any
) -> None:
    cache = make_cache()
    other_process = make_cache(
        config=CacheConfig(op_timeout_s=2.0, generation_ttl_s=0.0)
    )  # reloads the generations every call
    for i in range(30):  # spread over the cluster's slots
        await cache.set(req(f"q{i}"), resp(f"a{i}"))
    assert await other_process.get(req("q0")) is not None
    await cache.clear()
    assert await cache.get(req("q0")) is None
    assert await other_process.get(req("q1")) is None
    await cache.set(req("q0"), resp("new"))
    hit = await other_process.get(req("q0"))
    assert hit is not None and hit.text == "new"
    await cache.purge()  # what clear() started in the background, awaited
    remaining = await keys_of(client, cache)
    assert remaining == [cache.key_for(req("q0"))]
    assert cache.stats().purged >= 29


async def test_clear_one_provider(make_cache: Factory, client: Any) -> None:
    cache = make_cache()
    await cache.set(req("x", provider="ollama"), resp("o"))
    await cache.set(req("x", provider="openai"), resp("g", provider="openai"))
    await cache.set(req("y", provider=None), resp("answered by openai", provider="openai"))
    await cache.set(req("z", provider=None), resp("answered by ollama"))
    await cache.clear("openai")
    assert await cache.get(req("x", provider="openai")) is None
    assert await cache.get(req("y", provider=None)) is None  # unpinned, but openai answered
    assert await cache.get(req("x", provider="ollama")) is not None
    assert await cache.get(req("z", provider=None)) is not None
    await cache.purge()
    left = await keys_of(client, cache)
    assert cache.key_for(req("x", provider="openai")) not in left
    assert cache.key_for(req("x", provider="ollama")) in left


async def test_warm_pipelines_bulk_writes(make_cache: Factory, client: Any) -> None:
    cache = make_cache(config=CacheConfig(op_timeout_s=2.0, warm_batch=16))
    entries = [(req(f"w{i}"), resp(f"r{i}", latency_ms=100.0, cost_usd=0.001)) for i in range(50)]
    assert await cache.warm(entries) == 50
    assert cache.stats().sets == 50
    assert len(await keys_of(client, cache)) == 50
    for i in (0, 17, 49):
        hit = await cache.get(req(f"w{i}"))
        assert hit is not None and hit.text == f"r{i}"


async def test_stats_arithmetic(make_cache: Factory) -> None:
    cache = make_cache()
    await cache.set(req("a"), resp("A", latency_ms=500.0, cost_usd=0.002))
    await cache.set(req("b"), resp("B", latency_ms=250.0, cost_usd=0.001))
    for r in (req("a"), req("a"), req("b"), req("c")):
        await cache.get(r)
    st = cache.stats()
    assert isinstance(st, CacheStats)
    assert (st.hits, st.misses, st.sets, st.errors) == (3, 1, 2, 0)
    assert st.hit_rate == pytest.approx(0.75)
    assert st.latency_saved_ms == pytest.approx(1250.0)
    assert st.cost_saved_usd == pytest.approx(0.005)
    assert st.bytes_read > st.bytes_written > 0  # read a, a, b; wrote a, b
    d = st.as_dict()
    assert d["hits"] == 3 and d["hit_rate"] == pytest.approx(0.75)
    cache.reset_stats()
    assert cache.stats() == CacheStats()


async def test_get_or_call_stores_and_then_hits(make_cache: Factory) -> None:
    cache = make_cache()
    calls = 0

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        return resp("fresh")

    first = await cache.get_or_call(req(), call)
    second = await cache.get_or_call(req(), call)
    assert calls == 1
    assert first.cached is False and second.cached is True and second.text == "fresh"


async def test_single_flight_one_call_for_concurrent_requests(make_cache: Factory) -> None:
    cache = make_cache()
    gate = asyncio.Event()
    calls = 0

    async def slow_call() -> ChatResponse:
        nonlocal calls
        calls += 1
        await gate.wait()
        return resp("shared")

    tasks = [asyncio.create_task(cache.get_or_call(req(), slow_call)) for _ in range(20)]
    # all followers await the leader
    await until(lambda: cache.stats().coalesced == 19, interval_s=0.001)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert {r.text for r in results} == {"shared"}
    assert len({id(r) for r in results}) == 20  # each caller gets its own object


class _StaggeredGens:
    """A fakeredis client whose n-th concurrent HGETALL answers n ms late (many pool connections)."""

    def __init__(self) -> None:
        self.inner = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        self.hgetalls = 0

    async def hgetall(self, key: str) -> Any:
        self.hgetalls += 1
        await asyncio.sleep(0.001 * self.hgetalls)
        return await self.inner.hgetall(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_first_requests_share_one_generation_load_and_all_coalesce() -> None:
    """A cold cache must not let a late generation reload turn a follower into a second lookup.

    Regression: each of the concurrent first callers used to reload the generations
    itself; one whose reload came back after the leader had stored the answer read
    it as a hit instead of coalescing (CI saw coalesced == 23 of 24).
    """
    client = _StaggeredGens()
    cache = ResponseCache(client, namespace="stagger", config=CacheConfig(op_timeout_s=2.0))
    calls = 0

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        return resp("once")

    try:
        results = await asyncio.gather(*(cache.get_or_call(req(), call) for _ in range(25)))
    finally:
        await cache.aclose()
        await client.inner.aclose()
    st = cache.stats()
    assert calls == 1 and {r.text for r in results} == {"once"}
    assert client.hgetalls == 1
    assert (st.coalesced, st.misses, st.hits) == (24, 1, 0)


async def test_single_flight_error_reaches_every_waiter_and_is_not_cached(
    make_cache: Factory,
) -> None:
    cache = make_cache()
    gate = asyncio.Event()

    async def failing() -> ChatResponse:
        await gate.wait()
        raise RuntimeError("provider exploded")

    tasks = [asyncio.create_task(cache.get_or_call(req(), failing)) for _ in range(5)]
    await until(lambda: cache.stats().coalesced == 4, interval_s=0.001)
    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert await cache.get(req()) is None
    assert (await cache.get_or_call(req(), lambda: _ready(resp("ok")))).text == "ok"


def _ready(value: ChatResponse) -> Awaitable[ChatResponse]:
    fut: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


async def test_oversized_value_is_skipped_and_counted(make_cache: Factory, client: Any) -> None:
    cache = make_cache(config=CacheConfig(op_timeout_s=2.0, max_value_bytes=1024))
    assert await cache.set(req(), resp("x" * 2000)) is False
    assert await cache.set(req("small"), resp("fits")) is True
    st = cache.stats()
    assert (st.skipped_writes, st.value_errors, st.sets) == (1, 1, 1)
    assert await keys_of(client, cache) == [cache.key_for(req("small"))]


@pytest.mark.parametrize(
    "stored",
    [b"\xc1\xff garbage", b"plain text someone else wrote", b'["smc/999", 1, 2]', b"[1, 2"],
    ids=["corrupt-msgpack", "foreign-text", "future-envelope", "corrupt-json"],
)
async def test_corrupt_or_foreign_value_is_a_counted_miss_and_deleted(
    make_cache: Factory, client: Any, stored: bytes
) -> None:
    cache = make_cache()
    key = cache.key_for(req())
    await client.set(key, stored)
    assert await cache.get(req()) is None
    st = cache.stats()
    assert (st.misses, st.value_errors, st.errors, st.backend_errors) == (1, 1, 1, 0)
    assert await client.exists(key) == 0
    assert await cache.set(req(), resp()) is True and await cache.get(req()) is not None


async def test_value_of_another_redis_type_is_a_miss(make_cache: Factory, client: Any) -> None:
    cache = make_cache()
    await client.hset(cache.key_for(req()), "field", "value")
    assert await cache.get(req()) is None
    assert cache.stats().value_errors == 1
    assert cache.healthy
    assert await client.exists(cache.key_for(req())) == 0


@pytest.mark.parametrize("batch", [True, False], ids=["batched-gets", "one-get-each"])
async def test_concurrent_lookups_go_out_in_batches_and_each_key_gets_its_own_answer(
    make_cache: Factory, client: Any, monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    config = CacheConfig(op_timeout_s=2.0, generation_ttl_s=3600.0, batch_gets=batch)
    cache = make_cache(config=config)
    reqs = [req(f"batch {i}") for i in range(300)]  # keys spread over every cluster slot range
    assert await cache.warm((r, resp(f"answer {i}")) for i, r in enumerate(reqs) if i % 2 == 0)
    await client.hset(cache.key_for(reqs[1]), "field", "value")  # another type: a value error
    sent: list[int] = []
    get_many = cache._get_many

    async def counted(keys: list[str]) -> list[Any]:
        sent.append(len(keys))
        return await get_many(keys)

    monkeypatch.setattr(cache, "_get_many", counted)
    results = await asyncio.gather(*(cache.get(r) for r in reqs))  # one event-loop iteration
    for i, hit in enumerate(results):
        if i % 2 == 0:
            assert hit is not None and hit.cached and hit.text == f"answer {i}"
        else:
            assert hit is None
    st = cache.stats()
    assert (st.hits, st.misses, st.value_errors, st.backend_errors) == (150, 150, 1, 0)
    assert await client.exists(cache.key_for(reqs[1])) == 0  # the foreign value was removed
    # the first lookup goes alone (nothing else in flight), the 299 others in batches of
    # CacheConfig.get_batch_max (128); none without batching. On a cluster, one batch per
    # node (issue 23 item 7: a sick node's batch fails alone), each at most 128.
    if batch and hasattr(client, "nodes_manager"):
        assert sum(sent) == 299 and max(sent) <= 128 and len(sent) >= 3
    else:
        assert sent == ([128, 128, 43] if batch else [])


async def test_served_responses_are_not_stored_again(make_cache: Factory) -> None:
    cache = make_cache()
    await cache.set(req(), resp())
    hit = await cache.get(req())
    assert hit is not None
    assert await cache.set(req("other"), hit) is False


async def test_l1_serves_copies_and_is_bounded(make_cache: Factory) -> None:
    clock = [1000.0]
    config = CacheConfig(op_timeout_s=2.0, l1_max_entries=3, l1_ttl_s=10.0)
    cache = make_cache(config=config, clock=lambda: clock[0])
    reader = make_cache(config=config, clock=lambda: clock[0])
    await cache.set(req(), resp("h", metadata={"k": 1}))
    first = await reader.get(req())  # from Redis, now in reader's L1
    second = await reader.get(req())
    assert first is not None and second is not None
    assert reader.stats().l1_hits == 1 and reader.stats().hits == 2
    second.metadata["k"] = 2
    second.tool_calls.append(ToolCall("x"))
    third = await reader.get(req())
    assert third is not None and third.metadata["k"] == 1 and third.tool_calls == []
    for i in range(5):  # evicts the oldest: at most 3 entries
        await reader.set(req(f"e{i}"), resp(f"e{i}"))
    assert reader._l1 is not None and len(reader._l1) == 3
    clock[0] += 11.0  # past l1_ttl_s (and the generation TTL: they are reloaded)
    before = reader.stats().l1_hits
    assert await reader.get(req("e4")) is not None
    assert reader.stats().l1_hits == before  # expired in L1, served by Redis


async def test_l1_byte_bound(make_cache: Factory) -> None:
    cache = make_cache(config=CacheConfig(op_timeout_s=2.0, l1_max_entries=100, l1_max_bytes=400))
    for i in range(10):
        await cache.set(req(f"b{i}"), resp("y" * 100))
    assert cache._l1 is not None and 0 < len(cache._l1) < 10
    assert cache._l1.bytes <= 400


async def test_clear_drops_l1(make_cache: Factory) -> None:
    cache = make_cache(config=CacheConfig(op_timeout_s=2.0, l1_max_entries=10))
    await cache.set(req(), resp())
    assert await cache.get(req()) is not None
    await cache.clear()
    assert await cache.get(req()) is None


def test_insecure_hasher_is_refused_unless_allowed(client: Any) -> None:
    with pytest.raises(ConfigError, match="collision"):
        ResponseCache(client, config=CacheConfig(hasher="xxh3_128"))
    ResponseCache(client, config=CacheConfig(hasher="xxh3_128", allow_insecure_hasher=True))
    ResponseCache(client, config=CacheConfig(hasher="sha256"))


def test_bad_arguments(client: Any) -> None:
    with pytest.raises(ConfigError):
        ResponseCache(client, namespace="a:b")
    with pytest.raises(ConfigError):
        ResponseCache(client, config=CacheConfig(serializer="pickle"))  # type: ignore[arg-type]


async def test_decode_responses_client_is_refused() -> None:
    c = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    with pytest.raises(ConfigError, match="decode_responses"):
        ResponseCache(c)
    await c.aclose()


async def test_without_redis_l1_only_or_always_miss() -> None:
    l1_only = ResponseCache(None, config=CacheConfig(l1_max_entries=10))
    assert await l1_only.set(req(), resp()) is True
    assert await l1_only.get(req()) is not None
    await l1_only.clear()
    assert await l1_only.get(req()) is None
    nothing = ResponseCache(None)
    assert await nothing.set(req(), resp()) is False
    assert await nothing.get(req()) is None
    assert await nothing.warm([(req(), resp())]) == 0
    assert nothing.stats().misses == 1


class _Down:
    """A client whose every command fails as a dead server's would (counts the calls)."""

    def __init__(self) -> None:
        self.calls = 0

    async def get(self, key: str) -> bytes | None:
        self.calls += 1
        raise ConnectionError("redis is down")

    async def hgetall(self, key: str) -> dict[Any, Any]:
        self.calls += 1
        raise ConnectionError("redis is down")


async def test_the_injected_clock_drives_back_off_and_generation_reloads() -> None:
    now = [100.0]
    client = _Down()
    cache = ResponseCache(
        client,  # type: ignore[arg-type]
        config=CacheConfig(backoff_min_s=5.0, backoff_max_s=20.0, generation_ttl_s=1.0),
        clock=lambda: now[0],
    )
    assert await cache.get(req()) is None  # the generation load fails: back off 5 s
    failed, bypassed = client.calls, cache.stats().bypassed
    assert failed == 1 and bypassed == 1 and not cache.healthy  # the lookup itself skipped Redis
    for _ in range(3):  # the clock stands still: every lookup skips Redis
        assert await cache.get(req()) is None
    assert client.calls == failed and cache.stats().bypassed == bypassed + 3
    now[0] += 5.0  # the back-off is over on the cache's clock: it tries Redis again
    assert await cache.get(req()) is None
    assert client.calls > failed and cache.stats().backend_errors >= 2


def test_cache_config_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="warm_batch"):
        CacheConfig(warm_batch=0)
    with pytest.raises(ConfigError, match="get_batch_max"):
        CacheConfig(get_batch_max=0)
    with pytest.raises(ConfigError, match="serializer"):
        CacheConfig(serializer="pickle")  # type: ignore[arg-type]
    assert CacheConfig(serializer="json", warm_batch=1).serializer == "json"
