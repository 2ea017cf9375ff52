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
import dataclasses
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
        ops = {"get", "set", "unlink", "hgetall", "hincrby"}
        if name not in ops and name != "execute_command":
            return attr

        async def op(*args: Any, **kwargs: Any) -> Any:
            # (the cache sends some commands as execute_command("SET", ...): same count)
            kind = str(args[0]).lower() if name == "execute_command" and args else name
            if kind not in ops:
                return await attr(*args, **kwargs)
            self.ops.append(kind)
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
    return [k async for k in client.scan_iter(match="*:lease", count=1000)]


# Store operations of one cold get_or_call with leases: HGETALL (generations), GET,
# SET NX (lease), GET (look again), SET (the value), UNLINK (release).
@pytest.mark.parametrize("mode", ["propagate", "swallow", "convert"])
@pytest.mark.parametrize("block_at", range(1, 7))
async def test_a_caller_cancelled_at_any_store_operation_leaves_at_once_and_no_lease(
    block_at: int, mode: str
) -> None:
    server = fakeredis.FakeServer()
    client = Blocking(server, block_at, mode)
    # A claim left without its reply (block_at 3) is looked at again 2 x op_timeout_s after
    # the first compare-and-delete: 0.2 s here, so that second look runs inside aclose()'s
    # 2 s (with LEASE's 5 s, aclose waited its whole 2 s and cancelled it). fakeredis answers
    # in-process, and the deadline counts only time the loop was responsive.
    cache = ResponseCache(client, config=dataclasses.replace(LEASE, op_timeout_s=0.1))
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

        async def warm() -> bool:
            # Half of them stored before the pause. A loaded machine can time out the
            # warm-up's own writes (50 ms) and start the back-off: then warm up again.
            await until(lambda: cache._clock() >= cache._skip_until)
            await asyncio.gather(*(complete(r) for r in reqs[:20]))
            return all([await control.exists(cache.key_for(r)) for r in reqs[:20]])

        await until(warm, timeout_s=30)

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


# ------------------------------------- single-flight: the call outlives its first caller


async def _stored(cache: ResponseCache, r: ChatRequest) -> str | None:
    hit = await cache.get(r)
    return None if hit is None else hit.text


async def test_the_call_goes_on_when_its_first_caller_leaves_and_is_stored() -> None:
    server = fakeredis.FakeServer()
    cache = ResponseCache(fakeredis.FakeAsyncRedis(server=server), config=LEASE)
    started = 0
    gate = asyncio.Event()

    async def call() -> ChatResponse:
        nonlocal started
        started += 1
        await gate.wait()
        return resp("from the provider")

    first = asyncio.ensure_future(cache.get_or_call(req(), call))
    await until(lambda: started == 1)
    followers = [asyncio.ensure_future(cache.get_or_call(req(), call)) for _ in range(9)]
    await until(lambda: cache.stats().coalesced == 9)
    first.cancel()  # the caller that started the call gives up
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(first, 30)  # at once, before the call ends
    assert first.cancelled() and started == 1
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*followers), 30)
    assert [r.text for r in results] == ["from the provider"] * 9
    assert started == 1  # not restarted
    assert await _stored(cache, req()) == "from the provider"
    await cache.aclose()
    assert await _lease_keys(fakeredis.FakeAsyncRedis(server=server)) == []


async def test_the_call_is_cancelled_when_nobody_awaits_it_any_more() -> None:
    server = fakeredis.FakeServer()
    cache = ResponseCache(fakeredis.FakeAsyncRedis(server=server), config=LEASE)
    started, cancelled = 0, asyncio.Event()

    async def call() -> ChatResponse:
        nonlocal started
        started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    callers = [asyncio.ensure_future(cache.get_or_call(req(), call)) for _ in range(5)]
    await until(lambda: started == 1 and cache.stats().coalesced == 4)
    for i, c in enumerate(callers):
        c.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(c, 30)
        assert cancelled.is_set() == (i == 4)  # only once the last one left
        if i < 4:
            await asyncio.sleep(0.01)  # the call is still running for the others
            assert not cancelled.is_set()
    await asyncio.wait_for(cancelled.wait(), 30)
    await asyncio.wait_for(cache.aclose(), 30)
    assert await _lease_keys(fakeredis.FakeAsyncRedis(server=server)) == []
    assert await _stored(cache, req()) is None  # nothing stored
    # a new caller starts afresh (the cancelled call is not followed)
    got = await asyncio.wait_for(cache.get_or_call(req(), lambda: _ready(resp("again"))), 30)
    assert got.text == "again" and started == 1


async def test_an_error_reaches_every_waiter_after_the_first_caller_left() -> None:
    cache = ResponseCache(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()), config=LEASE)
    gate = asyncio.Event()

    async def call() -> ChatResponse:
        await gate.wait()
        raise RuntimeError("provider down")

    first = asyncio.ensure_future(cache.get_or_call(req(), call))
    await until(lambda: cache.stats().misses == 1)
    others = [asyncio.ensure_future(cache.get_or_call(req(), call)) for _ in range(3)]
    await until(lambda: cache.stats().coalesced == 3)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(first, 30)
    gate.set()
    got = await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), 30)
    assert [type(e) for e in got] == [RuntimeError] * 3
    assert await _stored(cache, req()) is None
    await cache.aclose()
    assert await _lease_keys(cache._redis) == []


async def _storm(cache: ResponseCache, client: Any, seed: int) -> None:
    """2,000 callers over 200 requests, every call held by the provider until the test
    lets it answer; callers are cancelled in a random order interleaved with the
    answers (for some requests every caller, for some the first, for some a few).

    Every caller that was not cancelled is answered; every caller whose cancellation
    was requested before its answer gets ``CancelledError``; each request is called
    once (never restarted); a call completes and is stored whenever one of its
    callers still awaited it when it answered, and is cancelled otherwise (only once
    nobody awaits it); no lease is left."""
    rng = random.Random(seed)
    keys, n = 200, 2000
    reqs = [req(f"storm {seed} {i}") for i in range(keys)]
    gates = [asyncio.Event() for _ in range(keys)]
    started: list[int] = []
    completed: list[int] = []
    stopped: list[int] = []

    def call_for(k: int) -> Callable[[], Any]:
        async def call() -> ChatResponse:
            started.append(k)
            try:
                await gates[k].wait()
            except asyncio.CancelledError:
                stopped.append(k)
                raise
            completed.append(k)
            return resp(f"answer {k}")

        return call

    tasks = [
        asyncio.ensure_future(cache.get_or_call(reqs[i % keys], call_for(i % keys)))
        for i in range(n)
    ]
    await until(lambda: len(started) == keys and cache.stats().coalesced == n - keys)
    plan = [rng.choice(["all", "first", "some", "none"]) for _ in range(keys)]
    to_cancel = [
        i
        for i in range(n)
        if plan[i % keys] == "all"
        or (plan[i % keys] == "first" and i < keys)
        or (plan[i % keys] == "some" and rng.random() < 0.5)
    ]
    events = [("cancel", i) for i in to_cancel] + [("answer", k) for k in range(keys)]
    rng.shuffle(events)
    requested: set[int] = set()
    for kind, x in events:
        if kind == "cancel":
            if tasks[x].cancel():
                requested.add(x)
        else:
            gates[x].set()
        for _ in range(rng.randrange(3)):
            await asyncio.sleep(0)
    got = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
    answered: set[int] = set()
    for i, g in enumerate(got):
        if i in requested:
            assert isinstance(g, asyncio.CancelledError), (i, g)  # its own cancellation
        else:
            assert isinstance(g, ChatResponse) and g.text == f"answer {i % keys}", (i, g)
            answered.add(i % keys)
    assert sorted(started) == list(range(keys))  # one call per request, none restarted
    # a call ends once: answered, or cancelled (only when none of its callers is left:
    # a call that answered just as its last caller left counts as completed)
    assert len(completed) + len(stopped) == keys
    assert set(completed) | set(stopped) == set(range(keys))
    assert answered <= set(completed)
    assert {plan[k] for k in stopped} <= {"all"}
    await asyncio.wait_for(cache.aclose(), 30)
    assert await _lease_keys(client) == []
    stored = {k for k in range(keys) if await client.exists(cache.key_for(reqs[k]))}
    assert answered <= stored <= set(completed)  # stored whenever it was still awaited


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_a_storm_of_callers_cancelled_at_random_calls_each_request_once() -> None:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    await _storm(ResponseCache(client, config=LEASE), client, seed=19)


@pytest.mark.redis
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_a_storm_of_callers_cancelled_at_random_against_a_real_redis(
    redis_server_isolated: RedisServer,
) -> None:
    cache, client = _cache(redis_server_isolated, op_timeout_s=5.0)
    try:
        await _storm(cache, client, seed=23)
    finally:
        await client.aclose()
