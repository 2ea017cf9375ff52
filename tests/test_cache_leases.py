"""Leases and cancellation (issue 23 item 1): a lease never outlives its holder, and a
caller's own cancellation always reaches it, whatever the Redis client does with it.

Deterministic cases run on fakeredis behind a proxy that blocks one chosen store
operation (the k-th) until the caller is cancelled there, and then lets the cancellation
through, swallows it (returns the reply, as redis-py can) or turns it into a connection
error. Real-server cases burst ``ResponseCache.get_or_call`` against a ``redis-server``
with ``CLIENT PAUSE`` and random cancellations; every assertion is on counts.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis.exceptions

from fixtures.redis import RedisServer
from samplemind_core import CacheConfig, ChatRequest, ChatResponse
from samplemind_core.cache import ResponseCache
from tests._helpers import until

LEASE = CacheConfig(lease_s=30.0, op_timeout_s=5.0, generation_ttl_s=3600.0)


def req(text: str = "Which mood fits this pad?") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], provider="ollama", model="m")


def resp(text: str = "calm") -> ChatResponse:
    return ChatResponse(text=text, provider="ollama", model="m")


class Blocking:
    """fakeredis whose ``block_at``-th store operation waits until it is cancelled.

    ``mode``: ``"propagate"`` lets the cancellation through; ``"swallow"`` sends the
    command anyway and returns its reply (a client that hides a cancellation);
    ``"convert"`` raises ``ConnectionError`` instead.
    """

    def __init__(self, server: fakeredis.FakeServer, block_at: int, mode: str) -> None:
        self.inner = fakeredis.FakeAsyncRedis(server=server)
        self.block_at = block_at
        self.mode = mode
        self.ops: list[str] = []
        self.blocked = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in {"get", "set", "unlink", "hgetall", "hincrby"}:
            return attr

        async def op(*args: Any, **kwargs: Any) -> Any:
            self.ops.append(name)
            if len(self.ops) == self.block_at:
                self.blocked.set()
                try:
                    await asyncio.Event().wait()  # until cancelled
                except asyncio.CancelledError:
                    if self.mode == "swallow":
                        return await attr(*args, **kwargs)
                    if self.mode == "convert":
                        raise redis.exceptions.ConnectionError("connection closed") from None
                    raise
            return await attr(*args, **kwargs)

        return op


async def _lease_keys(client: Any) -> list[bytes]:
    return [k async for k in client.scan_iter(match="*:lease")]


# Store operations of one cold get_or_call with leases: HGETALL (generations), GET,
# SET NX (lease), GET (look again), SET (the value), UNLINK (release).
@pytest.mark.parametrize("mode", ["propagate", "swallow", "convert"])
@pytest.mark.parametrize("block_at", range(1, 7))
async def test_a_caller_cancelled_at_any_store_operation_leaves_at_once_and_no_lease(
    block_at: int, mode: str
) -> None:
    server = fakeredis.FakeServer()
    client = Blocking(server, block_at, mode)
    cache = ResponseCache(client, config=LEASE)
    calls = 0

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        return resp()

    task = asyncio.ensure_future(cache.get_or_call(req(), call))
    await asyncio.wait_for(client.blocked.wait(), 30)
    assert task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)  # a cancelled caller never gets a response
    await asyncio.wait_for(cache.aclose(), 30)  # background releases finish
    assert await _lease_keys(fakeredis.FakeAsyncRedis(server=server)) == []
    assert calls == (1 if block_at >= 5 else 0)


@pytest.mark.parametrize("mode", ["propagate", "swallow", "convert"])
async def test_a_caller_cancelled_during_a_plain_get_is_not_kept(mode: str) -> None:
    client = Blocking(fakeredis.FakeServer(), 2, mode)  # HGETALL, then the GET blocks
    cache = ResponseCache(client, config=LEASE)
    task = asyncio.ensure_future(cache.get(req()))
    await asyncio.wait_for(client.blocked.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert cache.stats().backend_errors == 0  # the caller left: not a failure of Redis


async def test_a_leader_cancelled_in_its_call_releases_the_lease_and_another_process_pays() -> None:
    server = fakeredis.FakeServer()
    first, second = (
        ResponseCache(fakeredis.FakeAsyncRedis(server=server), namespace="l", config=LEASE)
        for _ in range(2)
    )
    entered = asyncio.Event()

    async def hangs() -> ChatResponse:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    leader = asyncio.ensure_future(first.get_or_call(req(), hangs))
    await asyncio.wait_for(entered.wait(), 30)
    follower = asyncio.ensure_future(second.get_or_call(req(), lambda: _ready(resp("second"))))
    await until(lambda: second.stats().misses == 1)  # it missed and follows the lease
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    got = await asyncio.wait_for(follower, 30)  # took the released lease over, not lease_s later
    assert got.text == "second" and second.stats().leases == 1
    await first.aclose()
    assert await _lease_keys(fakeredis.FakeAsyncRedis(server=server)) == []


async def test_a_follower_waits_no_longer_than_the_lease_that_nobody_releases() -> None:
    server = fakeredis.FakeServer()
    cache = ResponseCache(
        fakeredis.FakeAsyncRedis(server=server),
        config=CacheConfig(lease_s=0.3, op_timeout_s=5.0),
    )
    # a holder in a process that died: its lease expires by itself
    await cache._redis.set(cache.key_for(req()) + ":lease", b"1", px=300)
    got = await asyncio.wait_for(cache.get_or_call(req(), lambda: _ready(resp("paid"))), 30)
    assert got.text == "paid" and cache.stats().leases == 1  # it took the expired lease
    assert await _lease_keys(cache._redis) == []


async def _ready(response: ChatResponse) -> ChatResponse:
    return response


# ------------------------------------------------------------------ real servers


def _cache(server: RedisServer, **config: Any) -> tuple[ResponseCache, Any]:
    client = server.client()
    settings = {"lease_s": 10.0, "namespace": f"lease{uuid.uuid4().hex[:6]}", **config}
    return ResponseCache(client, config=CacheConfig(**settings)), client


async def _cancel_at_random(make: Callable[[], Any], limits: list[float]) -> tuple[int, int, int]:
    """Run ``make()`` per limit; cancel each still running at its limit.

    Returns (responses, cancelled, responses returned after a cancellation was requested).
    """

    async def one(limit: float) -> tuple[bool, bool, bool]:
        task = asyncio.ensure_future(make())
        done, _ = await asyncio.wait({task}, timeout=limit)
        requested = False
        if not done:
            requested = task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return False, True, False
        return True, False, requested

    outcome = await asyncio.gather(*(one(limit) for limit in limits))
    return (
        sum(o[0] for o in outcome),
        sum(o[1] for o in outcome),
        sum(o[2] for o in outcome),
    )


@pytest.mark.redis
async def test_random_cancellations_leave_no_lease_and_are_all_honoured(
    redis_server_isolated: RedisServer,
) -> None:
    cache, client = _cache(redis_server_isolated)
    rng = random.Random(23)
    reqs = [req(f"storm {i}") for i in range(50)]
    paid = 0

    def make(i: int) -> Callable[[], Any]:
        async def call() -> ChatResponse:
            nonlocal paid
            paid += 1
            await asyncio.sleep(rng.uniform(0.0, 0.05))  # the provider's latency
            return resp(f"answer {i % 50}")

        return lambda: cache.get_or_call(reqs[i % 50], call)

    makers = [make(i) for i in range(500)]
    it = iter(makers)
    try:
        limits = [rng.uniform(0.001, 1.5) for _ in makers]
        answered, cancelled, late = await _cancel_at_random(lambda: next(it)(), limits)
        assert answered + cancelled == 500 and late == 0
        await cache.aclose()
        assert await _lease_keys(client) == []
        # leases were taken (and all given back); Redis timeouts of a loaded machine are
        # allowed (counted misses)
        assert cache.stats().leases >= 1 and paid >= 1
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_client_pause_mid_burst_leaves_no_lease_and_the_next_wave_hits(
    redis_server_isolated: RedisServer,
) -> None:
    cache, client = _cache(redis_server_isolated, op_timeout_s=0.05)
    control = redis_server_isolated.client()
    reqs = [req(f"pause {i}") for i in range(40)]

    async def call_for(r: ChatRequest) -> ChatResponse:
        return resp(r.messages[0]["content"])

    def complete(r: ChatRequest) -> Any:
        return cache.get_or_call(r, lambda: call_for(r))

    try:
        await asyncio.gather(*(complete(r) for r in reqs[:20]))  # half of them stored

        async def pause() -> None:
            await asyncio.sleep(0)  # the burst has started
            await control.execute_command("CLIENT", "PAUSE", "500", "ALL")

        burst, _ = await asyncio.gather(
            asyncio.gather(*(complete(reqs[i % 40]) for i in range(400))), pause()
        )
        assert [r.text for r in burst] == [reqs[i % 40].messages[0]["content"] for i in range(400)]
        await control.ping()  # answered once the pause is over
        if cache._releases:  # releases the pause held back
            await asyncio.wait(list(cache._releases), timeout=30)
        assert await _lease_keys(control) == []
        stored = {r.messages[0]["content"] for r in reqs if await control.exists(cache.key_for(r))}
        assert len(stored) >= 20
        await until(lambda: cache._clock() >= cache._skip_until)  # the back-off is over
        cache.reset_stats()
        wave = await asyncio.gather(*(complete(reqs[i % 40]) for i in range(400)))
        hits = {r.text for r in wave if r.cached}
        assert stored <= hits  # every stored entry is served from the cache
        assert await _lease_keys(control) == []
    finally:
        await client.aclose()
        await control.aclose()


@pytest.mark.parametrize("ttl", [0, -1.0, float("nan"), float("inf"), "10"])
async def test_a_bad_ttl_is_refused_before_the_provider_is_paid(ttl: Any) -> None:
    from samplemind_core import ConfigError

    cache = ResponseCache(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), config=LEASE)
    calls = 0

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        return resp()

    with pytest.raises(ConfigError, match="ttl_s"):
        await cache.get_or_call(req(), call, ttl_s=ttl)
    with pytest.raises(ConfigError, match="ttl_s"):
        await cache.set(req(), resp(), ttl_s=ttl)
    assert calls == 0 and await _lease_keys(cache._redis) == []
