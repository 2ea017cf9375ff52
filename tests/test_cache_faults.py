"""ResponseCache against a real redis-server that fails: dead, killed, restarted, slow, odd values."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from fixtures.ports import free_port
from fixtures.redis import ExternalRedis, RedisServer
from samplemind_core import CacheBackendError, CacheConfig, ChatRequest, ChatResponse
from samplemind_core.cache import ResponseCache
from tests._helpers import until

pytestmark = pytest.mark.redis

UNAVAILABLE = "redis cache unavailable"
RECOVERED = "redis cache recovered"


def req(text: str = "Which mood fits this pad?") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], provider="ollama", model="m")


def resp(text: str = "calm", **kw: Any) -> ChatResponse:
    return ChatResponse(text=text, provider="ollama", model="m", **kw)


def make(client: Any, backoff_s: float = 0.01, **config: Any) -> ResponseCache:
    config.setdefault("op_timeout_s", 1.0)
    return ResponseCache(
        client,
        namespace=f"f{uuid.uuid4().hex[:10]}",
        config=CacheConfig(**config, backoff_min_s=backoff_s, backoff_max_s=max(0.2, backoff_s)),
    )


def log_count(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records if r.name == "samplemind_core.cache")


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_unreachable_at_start_answers_misses_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="samplemind_core.cache")
    # nothing listens there; redis-py's 10 retries of a refused connect, spaced 20 ms at most
    # (its default back-off, up to 1 s each, only lengthens every probe the cache makes)
    client = redis.asyncio.Redis(
        host="127.0.0.1",
        port=free_port(),
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.02), retries=10),
    )
    cache = make(client)
    calls = 0

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        return resp(f"answer {calls}")

    try:
        for i in range(20):
            assert await cache.get(req()) is None
            assert await cache.set(req(), resp()) is False
            got = await cache.get_or_call(req(f"q{i}"), call)
            assert got.text == f"answer {i + 1}" and got.cached is False
        with pytest.raises(CacheBackendError):  # clear() must not pretend it worked
            await cache.clear()
    finally:
        await client.aclose()
    st = cache.stats()
    assert calls == 20
    assert st.backend_errors >= 1 and st.hits == 0 and st.misses == 40
    assert st.errors == st.backend_errors
    assert not cache.healthy
    assert log_count(caplog, UNAVAILABLE) == 1


async def test_killed_mid_run_then_restarted(
    redis_server_isolated: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="samplemind_core.cache")
    server = redis_server_isolated
    client = server.client()
    cache = make(client)
    calls = 0

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        return resp("live")

    try:
        await cache.set(req("warm"), resp("cached"))
        hit = await cache.get(req("warm"))
        assert hit is not None and hit.cached

        server.kill()
        for i in range(30):  # every request is answered, none raises
            got = await cache.get_or_call(req(f"during outage {i}"), call)
            assert got.text == "live" and got.cached is False
            assert await cache.get(req("warm")) is None
        assert calls == 30
        assert cache.stats().backend_errors >= 1
        assert not cache.healthy
        assert log_count(caplog, UNAVAILABLE) == 1
        assert log_count(caplog, RECOVERED) == 0

        server.restart()  # same port, empty (no persistence)

        async def writes_and_hits_resume() -> bool:
            return await cache.set(req("after"), resp("again")) and (
                await cache.get(req("after")) is not None
            )

        await until(writes_and_hits_resume, interval_s=0.02)
        assert cache.healthy
        got = await cache.get_or_call(req("after"), call)
        assert got.cached is True and calls == 30
        assert log_count(caplog, UNAVAILABLE) == 1  # once per state change, not per request
        assert log_count(caplog, RECOVERED) == 1
    finally:
        await client.aclose()


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_slow_redis_hits_the_per_operation_timeout(
    redis_server_isolated: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="samplemind_core.cache")
    server = redis_server_isolated
    client, control = server.client(), server.client()
    # 0.3 s, not the 50 ms default: the warm-up set/get below must not time out under xdist load;
    # the pause (1.5 s) is still five times longer
    cache = make(client, op_timeout_s=0.3, backoff_s=1.0)
    try:
        await cache.set(req(), resp())
        assert await cache.get(req()) is not None
        # Every command now waits 1.5 s (CLIENT UNPAUSE would wait too: the pause just ends).
        await control.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        assert await cache.get(req()) is None  # cut at op_timeout_s, not after the pause
        assert await cache.set(req("x"), resp()) is False  # in the back-off: not even sent
        st = cache.stats()
        assert st.backend_errors == 1 and st.bypassed == 1
        assert not cache.healthy

        async def hits_again() -> bool:  # the timed-out connection does not wedge the client
            return await cache.get(req()) is not None

        await until(hits_again, interval_s=0.02)
        assert cache.healthy
        assert log_count(caplog, UNAVAILABLE) == 1 and log_count(caplog, RECOVERED) == 1
    finally:
        await client.aclose()
        await control.aclose()


async def test_oversized_stored_value_is_a_counted_miss(
    redis_server: RedisServer | ExternalRedis,
) -> None:
    client = redis_server.client()
    try:
        writer = make(client, max_value_bytes=1 << 20)
        reader = ResponseCache(
            client,
            namespace=writer.namespace,
            config=CacheConfig(max_value_bytes=4096, op_timeout_s=1.0),
        )
        assert await writer.set(req(), resp("z" * 10_000)) is True
        assert await reader.get(req()) is None
        assert reader.stats().value_errors == 1
        assert await client.exists(writer.key_for(req())) == 0
    finally:
        await client.aclose()


async def test_ttl_expiry(redis_server: RedisServer | ExternalRedis) -> None:
    client = redis_server.client()
    cache = make(client)
    try:
        await cache.set(req(), resp(), ttl_s=0.3)
        assert 0 < await client.pttl(cache.key_for(req())) <= 300

        async def expired() -> bool:
            return await cache.get(req()) is None

        await until(expired, interval_s=0.02)
        assert cache.stats().errors == 0
    finally:
        await client.aclose()


async def test_clear_is_o1_and_the_background_purge_removes_old_entries(
    redis_server: RedisServer | ExternalRedis,
) -> None:
    client = redis_server.client()
    cache = make(client)
    other = make(client)
    try:
        await cache.warm([(req(f"p{i}"), resp()) for i in range(200)])
        await other.set(req(), resp())
        await cache.clear()  # one HINCRBY; the purge runs in the background
        assert await cache.get(req("p0")) is None

        async def purged() -> bool:
            keys = [k async for k in client.scan_iter(match=f"sm:{cache.namespace}:*", count=1000)]
            return keys == [f"sm:{cache.namespace}:gen".encode()]

        await until(purged, interval_s=0.02)
        assert cache.stats().purged == 200
        assert await other.get(req()) is not None  # another namespace is untouched
    finally:
        await cache.aclose()
        await client.aclose()


async def test_cross_namespace_isolation_on_a_real_server(
    redis_server: RedisServer | ExternalRedis,
) -> None:
    client = redis_server.client()
    a, b = make(client), make(client)
    try:
        await a.set(req(), resp("tenant a"))
        assert await b.get(req()) is None
        await b.clear()
        hit = await a.get(req())
        assert hit is not None and hit.text == "tenant a"
    finally:
        await a.aclose()
        await b.aclose()
        await client.aclose()


async def test_corrupt_and_foreign_values_on_a_real_server(
    redis_server: RedisServer | ExternalRedis,
) -> None:
    client = redis_server.client()
    cache = make(client)
    try:
        await client.set(cache.key_for(req("a")), b"\x93\x01\x02")  # msgpack, not our envelope
        await client.rpush(cache.key_for(req("b")), b"x")  # another type under our key
        assert await cache.get(req("a")) is None and await cache.get(req("b")) is None
        st = cache.stats()
        assert (st.value_errors, st.backend_errors, st.misses) == (2, 0, 2)
        assert cache.healthy
        assert await cache.set(req("b"), resp()) is True and await cache.get(req("b"))
    finally:
        await client.aclose()


async def test_single_flight_against_a_real_server(
    redis_server: RedisServer | ExternalRedis,
) -> None:
    client = redis_server.client()
    cache = make(client)
    calls = 0

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)  # let the followers arrive
        return resp("once")

    try:
        results = await asyncio.gather(*(cache.get_or_call(req(), call) for _ in range(25)))
        assert calls == 1 and {r.text for r in results} == {"once"}
        assert cache.stats().coalesced == 24
    finally:
        await client.aclose()


async def test_password_protected_server(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(password="s3cret-pw")
    assert server.url.startswith("redis://:s3cret-pw@127.0.0.1:")
    good = redis.asyncio.Redis.from_url(server.url)
    wrong = redis.asyncio.Redis.from_url(server.url.replace("s3cret-pw", "nope"))
    try:
        cache = make(good)
        await cache.set(req(), resp())
        hit = await cache.get(req())
        assert hit is not None and hit.cached
        refused = make(wrong)
        assert await refused.get(req()) is None  # auth failure: a counted miss, never raised
        assert refused.stats().backend_errors == 1
    finally:
        await good.aclose()
        await wrong.aclose()


async def test_unix_socket_server(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(unix_socket=True)
    assert server.url.startswith("unix://")
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        cache = make(client)
        await cache.set(req(), resp("over a socket"))
        hit = await cache.get(req())
        assert hit is not None and hit.text == "over a socket"
    finally:
        await client.aclose()


async def test_tls_server(redis_server_factory: Callable[..., RedisServer]) -> None:
    """``rediss://`` runs the same code path; a server we cannot trust is a counted miss."""
    server = redis_server_factory(tls=True, password="tls-pw")
    assert server.url.startswith("rediss://:tls-pw@127.0.0.1:") and "ssl_ca_certs=" in server.url
    trusted = redis.asyncio.Redis.from_url(server.url)
    untrusted = redis.asyncio.Redis.from_url(server.url.split("?")[0])  # system CAs only
    plain = redis.asyncio.Redis.from_url(server.url.split("?")[0].replace("rediss", "redis", 1))
    try:
        cache = make(trusted)
        assert await cache.set(req(), resp("over TLS")) is True
        hit = await cache.get(req())
        assert hit is not None and hit.text == "over TLS" and hit.cached
        for client in (untrusted, plain):
            refused = make(client)
            assert await refused.get(req()) is None  # a failed handshake: a miss, never raised
            assert refused.stats().backend_errors == 1 and not refused.healthy
    finally:
        for client in (trusted, untrusted, plain):
            await client.aclose()
