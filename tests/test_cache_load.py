"""ResponseCache under bursts and faults: connection slots, deadlines, cancellation (issue 10).

Deterministic tests run on fakeredis (or a small fake client) with a small pool and
injected latency (operations that block on an event); real-server tests burst
``AIManager`` with default settings against a real ``redis-server`` and the emulator.
Every assertion is on counts, never on elapsed time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import fakeredis
import pytest
import redis.exceptions

from fixtures.redis import RedisServer
from fixtures.servers import EmulatorServer
from samplemind_core import AIManager, CacheConfig, ChatRequest, ChatResponse, Settings
from samplemind_core.cache import ResponseCache
from tests._helpers import until


def req(text: str = "Which mood fits this pad?") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], provider="ollama", model="m")


def resp(text: str = "calm") -> ChatResponse:
    return ChatResponse(text=text, provider="ollama", model="m")


class Gate:
    """A client whose GET blocks until ``release`` is set (injected latency, no clock)."""

    def __init__(self, *, convert_cancel: bool = False, max_connections: int = 50) -> None:
        self.inner = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        self.release = asyncio.Event()
        self.entered = 0
        self.convert_cancel = convert_cancel
        self.connection_pool = type("Pool", (), {"max_connections": max_connections})()

    async def _enter(self) -> None:
        self.entered += 1  # one store operation: a GET, or a batch of them
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            if self.convert_cancel:  # as a client that disconnects and reports an error
                raise redis.exceptions.ConnectionError("connection closed") from None
            raise

    async def get(self, key: str) -> Any:
        await self._enter()
        return await self.inner.get(key)

    def pipeline(self, transaction: bool = True) -> Any:
        gate, inner = self, self.inner.pipeline(transaction=transaction)

        class Pipe:
            def get(self, key: str) -> None:
                inner.get(key)

            async def execute(self, raise_on_error: bool = True) -> Any:
                await gate._enter()
                return await inner.execute(raise_on_error=raise_on_error)

        return Pipe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


BATCH = pytest.mark.parametrize("batch", [True, False], ids=["batched-gets", "one-get-each"])
"""Run a test with lookups batched (the default) and with one GET per lookup."""


# ------------------------------------------------------------ deterministic


async def test_burst_on_a_small_pool_waits_for_a_connection_instead_of_failing() -> None:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=3)
    cache = ResponseCache(client, config=CacheConfig(op_timeout_s=5.0))  # default slots: 50
    reqs = [req(f"q{i}") for i in range(50)]
    assert await cache.warm((r, resp(f"a{i}")) for i, r in enumerate(reqs)) == 50
    results = await asyncio.gather(*(cache.get(reqs[i % 50]) for i in range(1000)))
    assert all(r is not None and r.text == f"a{i % 50}" for i, r in enumerate(results))
    st = cache.stats()
    assert (st.hits, st.misses, st.errors, st.pool_timeouts) == (1000, 0, 0, 0)
    assert st.pool_waits > 0  # the pool of 3 made them queue
    assert cache.healthy


@BATCH
async def test_no_slot_in_time_is_a_counted_miss_never_an_error(batch: bool) -> None:
    client = Gate(max_connections=2)
    config = CacheConfig(op_timeout_s=60.0, pool_timeout_s=0.05, batch_gets=batch)
    cache = ResponseCache(client, config=config)
    holders = []
    for i in range(2):  # one after the other: each its own operation holding a slot
        holders.append(asyncio.ensure_future(cache.get(req(f"h{i}"))))
        await until(lambda n=i + 1: client.entered == n)
    assert await cache.get(req("third")) is None  # waited for a slot, none came
    assert await cache.set(req("third"), resp()) is False  # a skipped write, not an error
    st = cache.stats()
    assert (st.pool_waits, st.pool_timeouts, st.misses) == (2, 2, 1)
    assert (st.errors, st.backend_errors, st.bypassed) == (0, 0, 0)
    assert cache.healthy
    client.release.set()
    assert await asyncio.gather(*holders) == [None, None]
    assert await cache.set(req("after"), resp()) is True  # the slots came back


@BATCH
async def test_a_client_pool_error_is_pool_exhaustion_not_a_redis_failure(batch: bool) -> None:
    class Exhausted(Gate):
        async def _enter(self) -> None:
            raise redis.exceptions.MaxConnectionsError("Too many connections")

    cache = ResponseCache(Exhausted(), config=CacheConfig(op_timeout_s=5.0, batch_gets=batch))
    assert await cache.get(req()) is None
    st = cache.stats()
    assert (st.pool_timeouts, st.errors, st.backend_errors, st.misses) == (1, 0, 0, 1)
    assert cache.healthy


@BATCH
@pytest.mark.parametrize("convert_cancel", [False, True], ids=["plain", "client-converts"])
async def test_an_internal_timeout_never_leaks_cancellation(
    convert_cancel: bool, batch: bool
) -> None:
    client = Gate(convert_cancel=convert_cancel)
    config = CacheConfig(op_timeout_s=0.02, backoff_min_s=0.001, batch_gets=batch)
    cache = ResponseCache(client, config=config)

    async def caller() -> tuple[ChatResponse | None, int]:
        got = await cache.get(req())
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # a pending cancellation would surface here
        return got, task.cancelling()

    assert await asyncio.ensure_future(caller()) == (None, 0)
    st = cache.stats()
    assert (st.backend_errors, st.misses) == (1, 1)


@BATCH
async def test_the_callers_own_cancellation_propagates(batch: bool) -> None:
    client = Gate()
    cache = ResponseCache(client, config=CacheConfig(op_timeout_s=60.0, batch_gets=batch))
    task = asyncio.ensure_future(cache.get(req()))
    await until(lambda: client.entered == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    # the slot comes back (a batch whose every caller left is stopped one iteration later)
    await until(lambda: cache._slots.free == cache._slots.size)
    assert cache.stats().backend_errors == 0 and cache.healthy


@pytest.mark.parametrize("order", ["deadline-first", "caller-first"])
async def test_a_deadline_racing_the_callers_cancellation_still_cancels_the_caller(
    order: str,
) -> None:
    client = Gate()
    cache = ResponseCache(client, config=CacheConfig(op_timeout_s=60.0))
    task = asyncio.ensure_future(cache.get(req()))
    await until(lambda: client.entered == 1)
    timeouts = cache._timeouts
    inf = float("inf")
    if order == "deadline-first":  # both in the same loop iteration
        timeouts._cancel([task], inf, inf)
        task.cancel()
    else:
        task.cancel()
        timeouts._cancel([task], inf, inf)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_cancelled_leader_leaves_its_call_to_its_followers() -> None:
    cache = ResponseCache(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()))
    started: list[int] = []
    gate = asyncio.Event()

    async def call() -> ChatResponse:
        started.append(1)
        await gate.wait()
        return resp("from the provider")

    leader = asyncio.ensure_future(cache.get_or_call(req(), call))
    await until(lambda: len(started) == 1)
    followers = [asyncio.ensure_future(cache.get_or_call(req(), call)) for _ in range(9)]
    await until(lambda: cache.stats().coalesced == 9)
    leader.cancel()  # the leader's own caller gives up: its call goes on for the others
    with pytest.raises(asyncio.CancelledError):
        await leader
    gate.set()
    results = await asyncio.gather(*followers)
    assert {r.text for r in results} == {"from the provider"}
    assert len(started) == 1  # not restarted


@BATCH
async def test_waiters_skip_redis_once_it_failed_while_they_waited(batch: bool) -> None:
    client = Gate(convert_cancel=True, max_connections=1)
    config = CacheConfig(op_timeout_s=0.02, backoff_min_s=30.0, batch_gets=batch)
    cache = ResponseCache(client, config=config)
    first = asyncio.ensure_future(cache.get(req("w0")))
    await until(lambda: client.entered == 1)  # it holds the only slot until its deadline
    results = await asyncio.gather(first, *(cache.get(req(f"w{i}")) for i in range(1, 20)))
    assert results == [None] * 20
    st = cache.stats()
    assert st.backend_errors == 1  # one timeout, then the others were not sent
    assert st.bypassed == 19 and st.misses == 20 and client.entered == 1


async def _ready(cache: ResponseCache, *reqs: ChatRequest) -> None:
    """Store a response for each of ``reqs`` (the generations are then loaded: lookups
    started together go out in one event-loop iteration)."""
    for r in reqs:
        assert await cache.set(r, resp(r.messages[0]["content"]))


async def test_lookups_started_together_go_out_as_one_batch_behind_the_first() -> None:
    client = Gate()
    client.release.set()
    config = CacheConfig(op_timeout_s=60.0, generation_ttl_s=3600.0)
    cache = ResponseCache(client, config=config)
    reqs = [req(f"b{i}") for i in range(40)]
    await _ready(cache, *reqs[:20])
    results = await asyncio.gather(*(cache.get(r) for r in reqs))
    assert [r.text if r else None for r in results] == [f"b{i}" for i in range(20)] + [None] * 20
    assert client.entered == 2  # the first alone (nothing else was in flight), then 39 as one
    unbatched = ResponseCache(client, config=replace(config, batch_gets=False))
    await asyncio.gather(*(unbatched.get(r) for r in reqs))
    assert client.entered == 2 + 40  # one GET each
    for r in reqs[:3]:  # one after the other: each alone, sent at once
        assert await cache.get(r) is not None
    assert client.entered == 42 + 3


async def test_one_callers_cancellation_does_not_cancel_the_others_lookups() -> None:
    client = Gate()
    cache = ResponseCache(client, config=CacheConfig(op_timeout_s=60.0, generation_ttl_s=3600.0))
    reqs = [req(f"c{i}") for i in range(3)]
    await _ready(cache, *reqs)
    tasks = [asyncio.ensure_future(cache.get(r)) for r in reqs]
    await until(lambda: client.entered == 2)  # the first alone, then c1 + c2 as one batch
    tasks[1].cancel()
    await asyncio.sleep(0)  # let the cancellation land before the reply
    client.release.set()
    first, third = await tasks[0], await tasks[2]
    assert first is not None and first.text == "c0" and third is not None and third.text == "c2"
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    st = cache.stats()
    assert (st.hits, st.backend_errors) == (2, 0)
    assert cache._slots.free == cache._slots.size


@pytest.mark.parametrize("fault", ["timeout", "connection-error"])
async def test_a_failed_batch_is_a_counted_miss_for_each_key_and_one_back_off_step(
    fault: str,
) -> None:
    class Broken(Gate):
        async def _enter(self) -> None:
            await super()._enter()  # held until released (never, for "timeout")
            raise redis.exceptions.ConnectionError("connection reset by peer")

    client = Broken()
    config = CacheConfig(op_timeout_s=0.02, generation_ttl_s=3600.0, backoff_min_s=0.001)
    cache = ResponseCache(client, config=config)
    reqs = [req(f"f{i}") for i in range(5)]
    await _ready(cache, *reqs)

    async def caller(r: ChatRequest) -> tuple[ChatResponse | None, int]:
        got = await cache.get(r)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # a pending cancellation would surface here
        return got, task.cancelling()

    callers = [asyncio.ensure_future(caller(r)) for r in reqs]
    await until(lambda: client.entered == 2)  # the first alone, the four others as one batch
    if fault == "connection-error":
        client.release.set()
    assert await asyncio.gather(*callers) == [(None, 0)] * 5
    st = cache.stats()
    assert (st.misses, st.backend_errors, st.errors, st.hits) == (5, 5, 5, 0)
    # two failed operations, two back-off steps (not one per key of the batch)
    assert cache._backoff == 2 * config.backoff_min_s
    assert not cache.healthy
    assert cache._slots.free == cache._slots.size


# ------------------------------------------------------------ real servers


@pytest.mark.redis
async def test_a_batch_on_connections_from_before_a_restart_is_served(
    redis_server_isolated: RedisServer,
) -> None:
    server = redis_server_isolated
    client = server.client()
    config = CacheConfig(op_timeout_s=2.0, generation_ttl_s=3600.0, get_batch_max=2)
    cache = ResponseCache(client, config=config)
    reqs = [req(f"r{i}") for i in range(20)]
    try:
        await asyncio.gather(*(cache.get(r) for r in reqs))  # 10 batches: 10 pooled connections
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.restart)  # every pooled connection is now dead
        async with server.client() as fresh:  # the restarted server is empty: refill it
            assert await ResponseCache(fresh, config=config).warm(
                (r, resp(r.messages[0]["content"])) for r in reqs
            ) == len(reqs)
        hits = await asyncio.gather(*(cache.get(r) for r in reqs))
        assert all(h is not None for h in hits)
        st = cache.stats()
        assert (st.backend_errors, st.hits) == (0, 20)  # each stale batch was tried again once
    finally:
        await client.aclose()


def _manager(server: RedisServer, emulator: EmulatorServer, **cache: Any) -> AIManager:
    settings = emulator.settings(Settings(redis_url=server.url))
    config = replace(settings.cache, namespace=f"load{uuid.uuid4().hex[:8]}", **cache)
    return AIManager(replace(settings, cache=config))


def _calls(emulator: EmulatorServer) -> int:
    return sum(emulator.stats()["calls"].values())


async def _wave(ai: AIManager, reqs: list[ChatRequest], n: int) -> list[Any]:
    return await asyncio.gather(
        *(ai.complete(reqs[i % len(reqs)]) for i in range(n)), return_exceptions=True
    )


@pytest.mark.redis
@pytest.mark.live
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_a_2000_burst_with_default_settings_hits_every_warm_wave(
    redis_server_isolated: RedisServer, emulator_server: EmulatorServer
) -> None:
    reqs = [ChatRequest(messages=[{"role": "user", "content": f"burst {i}"}]) for i in range(200)]
    async with _manager(redis_server_isolated, emulator_server) as ai:
        assert ai.cache is not None
        before = _calls(emulator_server)
        cold = await _wave(ai, reqs, 2000)
        assert not [r for r in cold if isinstance(r, BaseException)]
        assert _calls(emulator_server) - before == 200
        for _ in range(2):
            ai.cache.reset_stats()
            before = _calls(emulator_server)
            warm = await _wave(ai, reqs, 2000)
            assert not [r for r in warm if isinstance(r, BaseException)]
            assert all(r.cached for r in warm)
            st = ai.cache.stats()
            # every call served from the cache; a key's lookup may run twice when its first
            # lookup finished before later callers arrived (both are hits)
            assert st.misses == 0 and st.hits + st.coalesced == 2000 and st.hits >= 200
            assert (st.errors, st.pool_timeouts, st.bypassed) == (0, 0, 0)
            assert _calls(emulator_server) == before
        assert ai.cache.healthy


@pytest.mark.redis
@pytest.mark.live
@pytest.mark.parametrize("fault", ["kill-restart", "client-pause"])
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_a_fault_in_the_middle_of_a_burst_reaches_no_caller(
    fault: str, redis_server_isolated: RedisServer, emulator_server: EmulatorServer
) -> None:
    server = redis_server_isolated
    reqs = [ChatRequest(messages=[{"role": "user", "content": f"{fault} {i}"}]) for i in range(200)]
    control = server.client()
    async with _manager(server, emulator_server) as ai:
        cache = ai.cache
        assert cache is not None
        assert not [r for r in await _wave(ai, reqs, 2000) if isinstance(r, BaseException)]

        async def fault_mid_burst() -> None:
            await asyncio.sleep(0)  # the burst has started
            if fault == "kill-restart":
                server.kill()
                await asyncio.sleep(0.05)
                server.restart()
            else:
                await control.execute_command("CLIENT", "PAUSE", "300", "ALL")

        outcome = await asyncio.gather(_wave(ai, reqs, 2000), fault_mid_burst())
        burst = outcome[0]
        assert not [r for r in burst if isinstance(r, BaseException)]  # CancelledError included
        assert len(burst) == 2000 and all(isinstance(r, ChatResponse) for r in burst)

        # hits resume: a wave repopulates what the restart lost, the next one hits it all
        for _ in range(20):
            cache.reset_stats()
            wave = await _wave(ai, reqs, 2000)
            assert not [r for r in wave if isinstance(r, BaseException)]
            if cache.stats().misses == 0:
                break
        st = cache.stats()
        assert st.misses == 0 and st.hits >= 200 and cache.healthy
    await control.aclose()


def test_slot_settings_are_validated_and_the_manager_sizes_the_pool_to_them() -> None:
    from samplemind_core import ConfigError

    with pytest.raises(ConfigError, match="max_connections"):
        CacheConfig(max_connections=0)
    with pytest.raises(ConfigError, match="pool_timeout_s"):
        CacheConfig(pool_timeout_s=0)
    ai = AIManager(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert ai.cache is not None and ai.cache._slots.size == CacheConfig().max_connections
    assert ai._redis.connection_pool.max_connections == CacheConfig().max_connections
    small = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), max_connections=3)
    assert ResponseCache(small)._slots.size == 3  # never more than the client's pool


# ------------------------------------------------- cross-process single-flight


def _shared_caches(n: int, **config: Any) -> list[ResponseCache]:
    """``n`` caches on one fakeredis server, as ``n`` processes sharing one Redis."""
    server = fakeredis.FakeServer()
    config.setdefault("op_timeout_s", 5.0)
    return [
        ResponseCache(
            fakeredis.FakeAsyncRedis(server=server),
            namespace="lease",
            config=CacheConfig(**config),
        )
        for _ in range(n)
    ]


async def test_a_cold_key_is_paid_once_across_processes() -> None:
    caches = _shared_caches(4, lease_s=30.0)
    calls: list[int] = []
    gate = asyncio.Event()

    def call_for(i: int) -> Callable[[], Any]:
        async def call() -> ChatResponse:
            calls.append(i)
            await gate.wait()
            return resp(f"paid by {i}")

        return call

    tasks = [
        asyncio.ensure_future(c.get_or_call(req(), call_for(i)))
        for i, c in enumerate(caches)
        for _ in range(5)
    ]
    await until(lambda: len(calls) == 1 and sum(c.stats().leases for c in caches) == 1)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert len(calls) == 1 and {r.text for r in results} == {f"paid by {calls[0]}"}
    stats = [c.stats() for c in caches]
    assert sum(s.lease_waits for s in stats) == 3  # one leader per other process
    assert sum(s.coalesced for s in stats) == 16  # in-process single-flight as before
    assert sum(s.misses for s in stats) == 1 and sum(s.hits for s in stats) == 3
    assert await caches[0]._redis.exists(caches[0].key_for(req()) + ":lease") == 0  # released


async def test_a_dead_leaseholder_holds_nobody_up_beyond_the_lease() -> None:
    (cache,) = _shared_caches(1, lease_s=0.2)
    # a process that took the lease and died: nobody deletes it, it expires
    await cache._redis.set(cache.key_for(req()) + ":lease", b"1", px=200)
    calls = 0

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        return resp("paid after the lease")

    got = await cache.get_or_call(req(), call)
    assert got.text == "paid after the lease" and calls == 1
    st = cache.stats()
    assert (st.lease_waits, st.misses, st.hits, st.errors) == (0, 1, 0, 0)
    assert (await cache.get(req())) is not None


async def test_a_leader_whose_call_fails_releases_the_lease() -> None:
    first, second = _shared_caches(2, lease_s=30.0)

    async def fails() -> ChatResponse:
        raise RuntimeError("provider down")

    async def works() -> ChatResponse:
        return resp("second try")

    with pytest.raises(RuntimeError):
        await first.get_or_call(req(), fails)
    got = await second.get_or_call(req(), works)  # takes the released lease at once
    assert got.text == "second try" and second.stats().leases == 1


async def test_leases_off_each_process_pays() -> None:
    caches = _shared_caches(3, lease_s=None)
    calls = 0
    gate = asyncio.Event()

    async def call() -> ChatResponse:
        nonlocal calls
        calls += 1
        await gate.wait()
        return resp()

    tasks = [asyncio.ensure_future(c.get_or_call(req(), call)) for c in caches]
    await until(lambda: calls == 3)
    gate.set()
    await asyncio.gather(*tasks)
    assert sum(c.stats().leases for c in caches) == 0


@pytest.mark.redis
async def test_complete_callers_get_the_call_whose_first_caller_left(
    redis_server_isolated: RedisServer, emulator_server: EmulatorServer
) -> None:
    """Through AIManager, a real redis-server and the emulator: the caller whose call
    reaches the provider leaves mid-call; the others get its answer, one provider call."""
    async with _manager(redis_server_isolated, emulator_server) as ai:
        assert ai.cache is not None
        gate = asyncio.Event()
        entered = asyncio.Event()
        real = ai._call_chain

        async def held(*args: Any) -> ChatResponse:
            response = await real(*args)  # the provider answered (and is paid) ...
            entered.set()
            await gate.wait()  # ... and the call ends once the test lets it
            return response

        ai._call_chain = held  # type: ignore[method-assign]
        r = req(f"handover {uuid.uuid4().hex[:6]}")
        before = _calls(emulator_server)
        first = asyncio.ensure_future(ai.complete(r))
        await asyncio.wait_for(entered.wait(), 30)
        others = [asyncio.ensure_future(ai.complete(r)) for _ in range(5)]
        await until(lambda: ai.cache is not None and ai.cache.stats().coalesced == 5)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(first, 30)
        gate.set()
        got = await asyncio.wait_for(asyncio.gather(*others), 30)
        assert len({g.text for g in got}) == 1 and all(g.metadata.get("coalesced") for g in got)
        assert _calls(emulator_server) - before == 1
        hit = await ai.complete(r)  # stored
        assert hit.cached and hit.text == got[0].text and _calls(emulator_server) - before == 1
