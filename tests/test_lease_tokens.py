"""Leases carry a token per claim and are given back by compare-and-delete (decision 0440).

Two holes closed: a caller cancelled while its ``SET NX`` is out left the lease (set by
Redis, its reply lost) to every follower until ``lease_s``; and a blind ``UNLINK`` let
an old holder, or a caller whose claim had failed, delete another holder's lease. Both
the ``complete()`` lease (``{key}:lease``) and the stream relay's (``{key}:slease``),
on fakeredis (no Lua here: the GET-then-UNLINK fallback), a real redis-server and a
real Redis Cluster. Every assertion is on counts and keys; waits have liveness bounds.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

from fixtures.redis import LocalRedisCluster, RedisServer
from samplemind_core import CacheConfig, ChatRequest, ChatResponse
from samplemind_core.cache import ResponseCache
from samplemind_core.cache._relay import RELAY_LEASE_SUFFIX
from samplemind_core.manager import AIManager
from tests._helpers import until

from .test_stream_layer import Scripts, read, settings

LEASE_SUFFIX = ":lease"


def req(text: str = "Which key is this loop in?") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], provider="ollama", model="m")


def resp(text: str = "A minor") -> ChatResponse:
    return ChatResponse(text=text, provider="ollama", model="m")


def _config(**kw: Any) -> CacheConfig:
    settings_ = {"lease_s": 10.0, "op_timeout_s": 5.0, "namespace": "tok" + uuid.uuid4().hex[:6]}
    return CacheConfig(**{**settings_, **kw})


async def _leases_left(client: Any, namespace: str) -> list[bytes]:
    keys: list[bytes] = []
    for pattern in (f"*{namespace}*:lease", f"*{namespace}*:slease"):
        keys += [k async for k in client.scan_iter(match=pattern, count=1000)]
    return keys


# ------------------------------------------------- an old holder never deletes a new one


@pytest.fixture(params=["fakeredis", "redis", "cluster"])
async def two_caches(request: Any) -> AsyncIterator[tuple[ResponseCache, ResponseCache, Any]]:
    """Two caches ("processes") on one store, and a raw client of it."""
    kind = request.param
    if kind == "fakeredis":
        server = fakeredis.FakeServer()
        clients: list[Any] = [fakeredis.FakeAsyncRedis(server=server) for _ in range(3)]
    elif kind == "redis":
        request.applymarker(pytest.mark.redis)
        live: RedisServer = request.getfixturevalue("redis_server")
        clients = [Redis.from_url(live.url) for _ in range(3)]
    else:
        request.applymarker(pytest.mark.cluster)
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        clients = [cluster.client() for _ in range(3)]
    config = _config()
    a, b = (ResponseCache(c, config=config) for c in clients[:2])
    try:
        yield a, b, clients[2]
    finally:
        await a.aclose()
        await b.aclose()
        for c in clients:
            await c.aclose()


async def test_an_expired_and_retaken_lease_is_not_deleted_by_its_old_holder(
    two_caches: tuple[ResponseCache, ResponseCache, Any],
) -> None:
    a, b, raw = two_caches
    key = a.key_for(req())
    lease = key + LEASE_SUFFIX
    assert await a._take_lease(key) is True
    assert await b._take_lease(key) is False  # held
    await raw.delete(lease)  # A's lease expired (its call outlived lease_s)
    assert await b._take_lease(key) is True  # B holds it now
    held_by_b = await raw.get(lease)
    await a._release_lease(key)  # the old holder leaves
    assert await raw.get(lease) == held_by_b  # B's lease is still there
    assert await a._take_lease(key) is False  # and still honoured
    await b._release_lease(key)
    assert not await raw.exists(lease)  # its holder does remove it


async def test_an_old_relay_leader_never_deletes_its_successors_stream_lease(
    two_caches: tuple[ResponseCache, ResponseCache, Any],
) -> None:
    a, b, raw = two_caches
    key = a.key_for(req()) + "|s"
    lease = key + RELAY_LEASE_SUFFIX
    claim_a, _ = await a._relay_claim(key)
    assert isinstance(claim_a, bytes)
    assert (await b._relay_claim(key))[0] is False
    await raw.delete(lease)  # expired
    claim_b, _ = await b._relay_claim(key)
    assert isinstance(claim_b, bytes) and claim_b != claim_a
    await a._relay_release(key, claim_a)
    assert await raw.get(lease) == claim_b
    await b._relay_release(key, claim_b)
    assert not await raw.exists(lease)


# ------------------------------------------ a SET NX whose reply was lost to a cancellation


class LostReply:
    """A real client whose lease ``SET NX`` reaches Redis but whose reply never comes back
    (the caller is cancelled while it is out): ``blocked`` is set once it was sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.blocked = asyncio.Event()
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "pipeline":  # (a relay claim: SET NX with EXISTS, one pipeline)
            return lambda *a, **kw: _after_nx(attr(*a, **kw), self._lose)
        if name not in {"set", "execute_command"}:
            return attr

        async def op(*args: Any, **kwargs: Any) -> Any:
            is_nx = kwargs.get("nx") or (name == "execute_command" and "NX" in args)
            reply = await attr(*args, **kwargs)
            if is_nx:
                await self._lose()
            return reply

        return op

    async def _lose(self) -> None:
        if self.armed:
            self.armed = False
            self.blocked.set()
            await asyncio.Event().wait()  # the reply is lost: until cancelled


def _after_nx(pipe: Any, then: Callable[[], Awaitable[None]]) -> Any:
    """``pipe`` whose ``execute`` awaits ``then()`` after Redis ran it, when it held a ``SET NX``."""
    execute = pipe.execute

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        has_nx = any("NX" in command for command, _ in pipe.command_stack)
        reply = await execute(*args, **kwargs)
        if has_nx:
            await then()
        return reply

    pipe.execute = wrapped
    return pipe


@pytest.mark.redis
@pytest.mark.parametrize("held_elsewhere", [False, True])
async def test_a_caller_cancelled_while_its_lease_set_is_out(
    redis_server: RedisServer, held_elsewhere: bool
) -> None:
    """Free: Redis set our lease; it is removed at once in the background, and a
    follower in another process pays without waiting ``lease_s``. Held elsewhere: our
    SET failed; the other holder's lease is left alone."""
    config = _config(op_timeout_s=0.2)  # (a lost claim's second look comes 2 x 0.2 s later)
    raw = Redis.from_url(redis_server.url)
    proxy = LostReply(Redis.from_url(redis_server.url))
    a = ResponseCache(proxy, config=config)
    b = ResponseCache(Redis.from_url(redis_server.url), config=config)
    lease = a.key_for(req()) + LEASE_SUFFIX
    try:
        if held_elsewhere:
            await raw.set(lease, b"someone else", px=10_000)
        caller = asyncio.ensure_future(a.get_or_call(req(), lambda: _ready(resp("a"))))
        await asyncio.wait_for(proxy.blocked.wait(), 30)
        assert await raw.exists(lease)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, 30)
        await asyncio.wait_for(a.aclose(), 30)  # background releases done
        if held_elsewhere:
            assert await raw.get(lease) == b"someone else"
            return
        assert not await raw.exists(lease)
        # a follower elsewhere takes the lease at once (no lease_s wait): it pays itself
        got = await asyncio.wait_for(b.get_or_call(req(), lambda: _ready(resp("b"))), 5)
        assert got.text == "b" and b.stats().leases == 1 and b.stats().lease_waits == 0
    finally:
        await b.aclose()
        for c in (raw, proxy.inner, b._redis):
            await c.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("held_elsewhere", [False, True])
async def test_a_relay_claim_cancelled_while_its_set_is_out(
    redis_server: RedisServer, held_elsewhere: bool
) -> None:
    raw = Redis.from_url(redis_server.url)
    proxy = LostReply(Redis.from_url(redis_server.url))
    a = ResponseCache(proxy, config=_config(op_timeout_s=0.2))
    key = a.key_for(req()) + "|s"
    lease = key + RELAY_LEASE_SUFFIX
    try:
        if held_elsewhere:
            await raw.set(lease, b"someone else", px=10_000)
        claim = asyncio.ensure_future(a._relay_claim(key))
        await asyncio.wait_for(proxy.blocked.wait(), 30)
        claim.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(claim, 30)
        await asyncio.wait_for(a.aclose(), 30)
        expected = b"someone else" if held_elsewhere else None
        assert await raw.get(lease) == expected
    finally:
        for c in (raw, proxy.inner):
            await c.aclose()


async def _ready(response: ChatResponse) -> ChatResponse:
    return response


class SlowReplies:
    """A real client whose lease ``SET NX`` replies come back 0.05-0.25 s after Redis
    executed the command (a loaded host or network): a caller cancelled in that window
    loses the reply of a ``SET`` that did take the lease."""

    def __init__(self, inner: Any, rng: random.Random) -> None:
        self.inner = inner
        self.rng = rng

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "pipeline":  # (a relay claim: SET NX with EXISTS, one pipeline)
            return lambda *a, **kw: _after_nx(attr(*a, **kw), self._late)
        if name not in {"set", "execute_command"}:
            return attr

        async def op(*args: Any, **kwargs: Any) -> Any:
            reply = await attr(*args, **kwargs)
            if kwargs.get("nx") or (name == "execute_command" and "NX" in args):
                await self._late()
            return reply

        return op

    async def _late(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.05, 0.25))


# ----------------------------------------- hundreds of identical callers cancelled at random


async def _cancel_all_at_random(
    make: Callable[[], Awaitable[Any]], n: int, rng: random.Random, most_s: float
) -> int:
    """``n`` concurrent ``make()``, each cancelled at a random time up to ``most_s``
    (if still running); the number that were cancelled."""

    async def one(limit: float) -> bool:
        task = asyncio.ensure_future(make())
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    outcome = await asyncio.gather(*(one(rng.uniform(0.0, most_s)) for _ in range(n)))
    return sum(outcome)


@pytest.mark.redis
@pytest.mark.slow
async def test_hundreds_of_cancelled_callers_leave_no_lease_and_another_process_is_served(
    redis_server_isolated: RedisServer,
) -> None:
    """300 identical ``get_or_call`` in one process, all cancelled at random (the provider
    is slower than any limit; replies come late, ``CLIENT PAUSE WRITE`` holds the
    lease's ``SET`` in the middle); then no lease key is left and a follower in another
    process pays at once instead of waiting out ``lease_s``."""
    server = redis_server_isolated
    # lease_s 60: a leaked lease outlives any stall between the bursts and the final scan
    config = _config(op_timeout_s=0.3, lease_s=60.0)
    clients = [server.client() for _ in range(3)]
    control = clients[2]
    rng = random.Random(440)
    a = ResponseCache(SlowReplies(clients[0], rng), config=config)
    b = ResponseCache(clients[1], config=config)

    async def slow() -> ChatResponse:
        await asyncio.sleep(30)
        return resp("never")

    rounds = [req(f"round {round_}") for round_ in range(8)]
    try:
        for round_, r in enumerate(rounds):

            async def pause(round_: int = round_) -> None:
                await asyncio.sleep(0)
                if round_ % 2:  # every other round: the lease's SET held up as well
                    await control.execute_command("CLIENT", "PAUSE", "200", "WRITE")

            cancelled, _ = await asyncio.gather(
                _cancel_all_at_random(lambda r=r: a.get_or_call(r, slow), 300, rng, 0.15),
                pause(),
            )
            assert cancelled == 300
            # (the next round starts while this one's background releases, and a lost claim's
            # second look 2 x op_timeout_s later, are still out: they are waited for below,
            # with every round's checks, instead of one round at a time)
        await control.ping()
        await asyncio.wait_for(until(lambda: not a._releases), 30)
        await until_no_leases(control, config.namespace)
        for r in rounds:
            got = await asyncio.wait_for(b.get_or_call(r, lambda: _ready(resp("b"))), 5)
            assert got.text == "b"
        assert b.stats().lease_waits == 0 and b.stats().leases == 8
    finally:
        await a.aclose()
        await b.aclose()
        for c in clients:
            await c.aclose()


async def until_no_leases(client: Any, namespace: str) -> None:
    """Poll until no lease key of ``namespace`` is left (a liveness bound, not a target)."""

    async def none_left() -> bool:
        return not await _leases_left(client, namespace)

    await until(none_left, timeout_s=5.0, interval_s=0.01)


@pytest.mark.redis
@pytest.mark.slow
async def test_hundreds_of_cancelled_streams_leave_no_stream_lease(
    redis_server_isolated: RedisServer,
) -> None:
    """200 identical ``AIManager.stream()`` readers cancelled at random, the relay's
    ``SET NX`` held by ``CLIENT PAUSE WRITE`` for part of the burst: no stream lease is
    left, and a reader in another process streams at once."""
    server = redis_server_isolated
    namespace = "tokst" + uuid.uuid4().hex[:6]
    clients = [server.client() for _ in range(3)]
    control = clients[2]
    scripts = Scripts()
    rng = random.Random(441)
    managers = [
        AIManager(
            settings(),
            cache=ResponseCache(
                c, config=CacheConfig(namespace=namespace, lease_s=60.0, op_timeout_s=0.5)
            ),
        )
        for c in (SlowReplies(clients[0], rng), clients[1])
    ]
    for ai in managers:
        scripts.install(ai)
    a, b = managers
    scripts.default["ollama"] = [30.0, "never"]
    try:
        for round_ in range(8):
            r = req(f"stream round {round_}")

            async def pause(round_: int = round_) -> None:
                await asyncio.sleep(0)
                if round_ % 2:  # every other round: the lease's SET held up as well
                    await control.execute_command("CLIENT", "PAUSE", "150", "WRITE")

            cancelled, _ = await asyncio.gather(
                _cancel_all_at_random(lambda r=r: read(a, r), 200, rng, 0.15), pause()
            )
            assert cancelled == 200
            # (the next round starts while this one's releases are out: waited for below)
        await control.ping()
        assert a.cache is not None
        await asyncio.wait_for(until(lambda: not a.cache._releases), 30)  # type: ignore[union-attr]
        await asyncio.wait_for(until(lambda: not a._stream_tasks), 30)
        await until_no_leases(control, namespace)
        scripts.default["ollama"] = ["fresh"]
        chunks, got = await asyncio.wait_for(read(b, req("stream round 0")), 5)
        assert chunks == ["fresh"] and not got.cached
    finally:
        for ai in managers:
            await ai.aclose()
        for c in clients:
            await c.aclose()


# ------------------------------------------------- the script: NOSCRIPT, batches, a cluster


@pytest.mark.redis
async def test_a_server_that_forgot_the_script_still_releases(redis_server: RedisServer) -> None:
    raw = Redis.from_url(redis_server.url)
    cache = ResponseCache(Redis.from_url(redis_server.url), config=_config())
    try:
        for flush in (True, False, True):
            if flush:
                await raw.script_flush()  # (a restart does the same)
            key = cache.key_for(req(f"flush {flush}"))
            assert await cache._take_lease(key) is True
            await cache._release_lease(key)
            assert not await raw.exists(key + LEASE_SUFFIX)
        assert await raw.script_exists(_cad_sha()) == [True]  # loaded by the EVAL fallback
        assert cache._scripting  # a real server keeps the atomic path
    finally:
        await cache.aclose()
        await raw.aclose()
        await cache._redis.aclose()


def _cad_sha() -> str:
    from samplemind_core.cache._store import _CAD_SHA

    return _CAD_SHA


async def test_many_concurrent_releases_in_one_batch(
    two_caches: tuple[ResponseCache, ResponseCache, Any],
) -> None:
    """100 leases taken by A, 50 of them expired and retaken by B; A releases all 100 at
    once (one pipeline per node): exactly A's 50 are gone, B's 50 stay."""
    a, b, raw = two_caches
    keys = [a.key_for(req(f"batch {i}")) for i in range(100)]
    assert all(await asyncio.gather(*(a._take_lease(k) for k in keys)))
    for k in keys[:50]:
        await raw.delete(k + LEASE_SUFFIX)
    assert all(await asyncio.gather(*(b._take_lease(k) for k in keys[:50])))
    await asyncio.gather(*(a._release_lease(k) for k in keys))
    left = [bool(await raw.exists(k + LEASE_SUFFIX)) for k in keys]
    assert left == [True] * 50 + [False] * 50
    await asyncio.gather(*(b._release_lease(k) for k in keys[:50]))
    assert not any([await raw.exists(k + LEASE_SUFFIX) for k in keys])
