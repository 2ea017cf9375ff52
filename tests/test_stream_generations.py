"""A new stream's lookup carries the generations' reload (decision 0920).

When the in-process copy of the generations is older than ``generation_ttl_s``, a stream
start on one redis-server does not wait for an ``HGETALL`` before its lookup: the
lookup-and-claim script reads the generation hash itself, and when the key was built under
generations that are not the store's it does nothing else and the caller looks up again
under the new key. What ``clear()`` promises stays: seen at once in this process, within
``generation_ttl_s`` in every other one (here: at the first stream start after the copy
expired, never a stored answer of an old generation). Two managers on one server stand for
two processes. Waits have liveness bounds only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

from fixtures.redis import RedisServer
from samplemind_core import CacheConfig, ChatRequest
from samplemind_core._cache.keys import GensMoved
from samplemind_core.cache import ResponseCache
from samplemind_core.cache._relay import RELAY_LEASE_SUFFIX
from samplemind_core.manager import AIManager
from tests._helpers import until

from .test_lease_tokens import until_no_leases
from .test_stream_layer import Scripts, read, req, settings


@asynccontextmanager
async def _two(
    server: RedisServer, texts: list[Any], **config: Any
) -> AsyncIterator[tuple[Redis, AIManager, AIManager, Scripts, str]]:
    """Two managers ("processes") on ``server`` under one fresh namespace, their providers
    scripted to stream ``texts``, and a raw client; all closed on the way out."""
    raw = Redis.from_url(server.url)
    clients = [Redis.from_url(server.url) for _ in range(2)]
    namespace = "gr" + uuid.uuid4().hex[:6]
    scripts = Scripts()
    scripts.default["ollama"] = texts
    managers = [
        AIManager(
            settings(),
            cache=ResponseCache(c, config=CacheConfig(namespace=namespace, lease_s=10.0, **config)),
        )
        for c in clients
    ]
    for ai in managers:
        scripts.install(ai)
    try:
        yield raw, managers[0], managers[1], scripts, namespace
    finally:
        for ai in managers:
            await ai.aclose()
        for c in (*clients, raw):
            await c.aclose()


def _hgetalls(cache: ResponseCache) -> list[str]:
    """Counts the cache's own ``HGETALL`` round trips (the blocking reload)."""
    calls: list[str] = []
    hgetall = cache._io_hgetall

    async def counted(key: str) -> dict[Any, Any]:
        calls.append(key)
        return await hgetall(key)

    cache._io_hgetall = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.redis
async def test_an_expired_copy_is_reloaded_in_the_lookup_script(
    redis_server: RedisServer,
) -> None:
    async with _two(redis_server, ["a ", "b"]) as (raw, ai, _b, scripts, namespace):
        cache = ai.cache
        assert cache is not None
        await raw.hset(cache._keys.gen_key, mapping={"*": 3, "ollama": 2, "openai": 9})
        hgetalls = _hgetalls(cache)
        await asyncio.wait_for(read(ai, req("first")), 30)  # (loads the script)
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        assert cache._keys.gens == {"*": 3, "ollama": 2, "openai": 9}
        cache._gens_expiry = 0.0  # (generation_ttl_s of quiet)
        await raw.config_resetstat()
        chunks, resp = await asyncio.wait_for(read(ai, req("second")), 30)
        assert chunks == ["a ", "b"] and not resp.cached
        stats = await raw.info("commandstats")
        # one EVALSHA read the hash and the entry and took the lease (the server counts the
        # script's own calls too); no HGETALL of ours before it
        assert stats["cmdstat_evalsha"]["calls"] == 2  # (+ the lease given back)
        assert stats["cmdstat_hgetall"]["calls"] == 1
        assert hgetalls == [] and cache._gens_expiry > cache._clock()
        assert scripts.opened["ollama"] == 2 and cache.stats().leases == 2
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        await until_no_leases(raw, namespace)


@pytest.mark.redis
@pytest.mark.parametrize("pinned", [True, False])
async def test_a_clear_elsewhere_is_never_served_from_an_expired_copy(
    redis_server: RedisServer, pinned: bool
) -> None:
    """Process b clears (the provider, or everything); a's copy is older than
    ``generation_ttl_s``: a's next stream of a request it has stored is no hit. Pinned: the
    script sees the key's generation moved and a looks up again under the new key; not
    pinned: the entry is found, and the provider generation read in the same script tells
    it was cleared."""
    async with _two(redis_server, ["x ", "y"]) as (raw, a, b, scripts, namespace):
        assert a.cache is not None and b.cache is not None
        request = (
            req("cleared elsewhere")
            if pinned
            else ChatRequest(messages=[{"role": "user", "content": "cleared elsewhere"}])
        )
        _, first = await asyncio.wait_for(read(a, request), 30)
        await asyncio.wait_for(until(lambda: not a._stream_tasks), 30)
        _, again = await asyncio.wait_for(read(a, request), 30)
        assert again.cached  # (stored)
        await b.cache.clear(first.provider if not pinned else None)
        a.cache._gens_expiry = 0.0
        moved: list[object] = []
        rekey = a._rekey

        def counted_rekey(*args: Any) -> tuple[str, str]:
            moved.append(args)
            return rekey(*args)

        a._rekey = counted_rekey  # type: ignore[method-assign,assignment]
        chunks, resp = await asyncio.wait_for(read(a, request), 30)
        assert chunks == ["x ", "y"] and not resp.cached
        assert scripts.opened[first.provider] == 2
        assert len(moved) == (1 if pinned else 0)
        assert a.cache._keys.gens == b.cache._keys.gens
        await asyncio.wait_for(until(lambda: not a._stream_tasks), 30)
        await until_no_leases(raw, namespace)


@pytest.mark.redis
async def test_the_script_answers_moved_and_takes_nothing(redis_server: RedisServer) -> None:
    """Also by EVAL after a ``SCRIPT FLUSH``; the key's generations are read from the key."""
    async with _two(redis_server, ["z"]) as (raw, a, _b, _scripts, namespace):
        cache = a.cache
        assert cache is not None
        entry = cache.key_for(req("moved"))  # under generation 0 (the copy never loaded)
        await raw.set(entry, b"an entry of generation 0")
        await raw.hincrby(cache._keys.gen_key, "ollama", 1)
        await raw.script_flush()  # (a restart forgot it: EVAL, the same answer)
        hits = cache.stats().hits
        with pytest.raises(GensMoved):
            await cache._lookup_or_claim(entry, entry, time.perf_counter(), [], gens=True)
        assert not await raw.exists(entry + RELAY_LEASE_SUFFIX)  # no lease of the old key
        assert cache.stats().hits == hits and cache._keys.gens == {"ollama": 1}
        assert cache._gens_expiry > cache._clock() and cache.key_for(req("moved")) != entry
        await until_no_leases(raw, namespace)


@pytest.mark.redis
async def test_a_wrong_type_under_the_generation_hash_falls_back_and_streams(
    redis_server: RedisServer,
) -> None:
    async with _two(redis_server, ["w"]) as (raw, a, _b, scripts, namespace):
        cache = a.cache
        assert cache is not None
        await raw.set(cache._keys.gen_key, b"not a hash")
        chunks, resp = await asyncio.wait_for(read(a, req("wrong type")), 30)
        assert chunks == ["w"] and not resp.cached and scripts.opened["ollama"] == 1
        assert cache.stats().value_errors >= 1 and cache.healthy
        await asyncio.wait_for(until(lambda: not a._stream_tasks), 30)
        await until_no_leases(raw, namespace)


@pytest.mark.redis
async def test_a_generation_that_reads_otherwise_than_it_parses_does_not_loop(
    redis_server: RedisServer,
) -> None:
    """``"07"`` parses as 7 but is not the string ``"7"`` the script compares: the script
    says "moved" at every start (``generation_ttl_s=0``: every start carries the reload),
    the caller looks up once more without it, and streams."""
    async with _two(redis_server, ["s"], generation_ttl_s=0.0) as world:
        raw, a, _b, scripts, namespace = world
        assert a.cache is not None
        await raw.hset(a.cache._keys.gen_key, "*", b"07")
        for text in ("one", "two"):
            chunks, _ = await asyncio.wait_for(read(a, req(text)), 30)
            assert chunks == ["s"]
        assert a.cache._keys.gens == {"*": 7} and scripts.opened["ollama"] == 2
        await asyncio.wait_for(until(lambda: not a._stream_tasks), 30)
        await until_no_leases(raw, namespace)


@pytest.mark.redis
async def test_a_burst_under_moved_generations_shares_and_leaves_nothing(
    redis_server: RedisServer,
) -> None:
    """200 streams at once (100 requests, each twice) with the copy expired and the
    generations moved by another process: each request is read upstream once (the callers
    that joined a feed move with it to the new key), every caller gets every chunk."""
    async with _two(redis_server, ["m ", 0.01, "n"]) as (raw, a, b, scripts, namespace):
        assert a.cache is not None and b.cache is not None
        await asyncio.wait_for(read(a, req("warm-up")), 30)
        await b.cache.clear()
        a.cache._gens_expiry = 0.0
        got = await asyncio.wait_for(
            asyncio.gather(*(read(a, req(f"burst {i % 100}")) for i in range(200))), 60
        )
        assert all(chunks == ["m ", "n"] for chunks, _ in got)
        assert scripts.opened["ollama"] == 1 + 100
        assert a.cache._keys.gens == b.cache._keys.gens == {"*": 1}
        await asyncio.wait_for(until(lambda: not a._stream_tasks), 30)
        await until_no_leases(raw, namespace)


@pytest.mark.redis
async def test_a_clear_of_this_process_while_the_script_is_out_stays(
    redis_server: RedisServer,
) -> None:
    """Whichever the server runs first, the script's read of the hash or the clear's
    ``HINCRBY``, the clear is what this process knows afterwards."""
    async with _two(redis_server, ["c"]) as (raw, a, _b, _scripts, namespace):
        cache = a.cache
        assert cache is not None
        for round_ in range(1, 6):
            cache._gens_expiry = 0.0
            reader = asyncio.ensure_future(read(a, req(f"racing {round_}")))
            await asyncio.sleep(0)  # (the stream's script queued)
            await cache.clear()
            await asyncio.wait_for(reader, 30)
            assert cache._keys.gens == {"*": round_}
        await asyncio.wait_for(until(lambda: not a._stream_tasks), 30)
        await until_no_leases(raw, namespace)


async def test_a_reload_read_before_this_process_clear_is_not_taken_after_it() -> None:
    client = fakeredis.FakeAsyncRedis()
    cache = ResponseCache(client, config=CacheConfig(namespace="ge"))
    gate = asyncio.Event()
    hgetall = cache._io_hgetall

    async def slow(key: str) -> dict[Any, Any]:
        value = await hgetall(key)  # (read before the clear below)
        await gate.wait()
        return value

    cache._io_hgetall = slow  # type: ignore[method-assign]
    try:
        reload = asyncio.ensure_future(cache._fresh_gens())
        await asyncio.sleep(0.01)
        cache._io_hgetall = hgetall  # type: ignore[method-assign]
        await cache.clear()
        assert cache._keys.gens == {"*": 1}
        gate.set()
        await asyncio.wait_for(reload, 30)
        assert cache._keys.gens == {"*": 1}  # not undone by the older read
        await cache.purge()
    finally:
        await cache.aclose()
        await client.aclose()


@pytest.mark.redis
async def test_a_manager_closed_while_the_checking_script_is_out_leaves_nothing(
    redis_server: RedisServer,
) -> None:
    """Closed while the script that carries the reload is out (once with the generations
    moved: closed while the second lookup is out): no lease, no task, no batch left."""
    async with _two(redis_server, ["x"]) as (raw, ai, b, scripts, namespace):
        cache = ai.cache
        assert cache is not None and b.cache is not None
        await asyncio.wait_for(read(ai, req("warm-up")), 30)
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        queued = cache._io_queued_soon
        for moved in (False, True):
            if moved:
                await b.cache.clear()
            cache._gens_expiry = 0.0
            # (the lookup's script; moved: the second lookup's)
            reached = _noting(cache, queued, 2 if moved else 1)
            reader = asyncio.ensure_future(read(ai, req(f"closed under it {moved}")))
            await asyncio.wait_for(reached.wait(), 30)
            ai._closed = True  # (what aclose() sets first) while the script is out
            with pytest.raises(Exception, match="closed"):
                await asyncio.wait_for(reader, 30)
            ai._closed = False
            cache._io_queued_soon = queued  # type: ignore[method-assign]
            await asyncio.wait_for(until(lambda: not cache._releases), 30)
            await until_no_leases(raw, namespace)
            assert not ai._stream_tasks and not cache._batches
        assert scripts.opened["ollama"] == 1  # (the warm-up only)
        assert cache._keys.gens == {"*": 1}


def _noting(cache: ResponseCache, queued: Any, wanted: int) -> asyncio.Event:
    """An event set when ``cache`` has queued ``wanted`` operations from now on."""
    reached = asyncio.Event()
    sent: list[int] = []

    def noted(*args: Any, **kwargs: Any) -> Any:
        sent.append(1)
        if len(sent) >= wanted:
            reached.set()
        return queued(*args, **kwargs)

    cache._io_queued_soon = noted  # type: ignore[method-assign]
    return reached
