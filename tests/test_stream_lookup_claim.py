"""A stream's lookup and relay claim in one script on one server (decision 0880).

On a real redis-server: what the script answers (a hit takes no lease; a miss takes it and
removes an old relay stream; a second claimant is told another process leads), after a
``SCRIPT FLUSH`` the same by ``EVAL``, a value of another type under the entry falls back
to the plain lookup, and a caller cancelled at every await of the new path (or a manager
closed under it) leaves no stream lease. fakeredis (no Lua) keeps the plain lookup.
Waits have liveness bounds only.
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
from samplemind_core import CacheConfig, ChatResponse
from samplemind_core._streaming import UpstreamFeed
from samplemind_core.cache import ResponseCache
from samplemind_core.cache._relay import RELAY_LEASE_SUFFIX, RELAY_STREAM_SUFFIX
from samplemind_core.cache._store import _LOOKUP_CLAIM_SCRIPT
from samplemind_core.manager import AIManager
from tests._helpers import until

from .test_lease_tokens import until_no_leases
from .test_stream_layer import Scripts, read, req, settings


def _cache(client: Any, namespace: str) -> ResponseCache:
    return ResponseCache(client, config=CacheConfig(namespace=namespace, lease_s=10.0))


@asynccontextmanager
async def _world(
    server: RedisServer, prefix: str, texts: list[Any] | None
) -> AsyncIterator[tuple[Redis, AIManager, ResponseCache, Scripts, str]]:
    """A manager whose cache is on ``server`` under a fresh namespace (``prefix`` + 6 hex
    digits), its providers scripted to stream ``texts`` (None: not scripted), and a second
    client for looking at the server; all closed on the way out."""
    raw = Redis.from_url(server.url)
    client = Redis.from_url(server.url)
    namespace = prefix + uuid.uuid4().hex[:6]
    scripts = Scripts()
    ai = AIManager(settings(), cache=_cache(client, namespace))
    if texts is not None:
        scripts.default["ollama"] = texts
        scripts.install(ai)
    cache = ai.cache
    assert cache is not None
    try:
        yield raw, ai, cache, scripts, namespace
    finally:
        await ai.aclose()
        await client.aclose()
        await raw.aclose()


@pytest.mark.redis
async def test_the_script_answers_a_hit_a_claim_or_another_leader(
    redis_server: RedisServer,
) -> None:
    raw = Redis.from_url(redis_server.url)
    clients = [Redis.from_url(redis_server.url) for _ in range(2)]
    namespace = "lc" + uuid.uuid4().hex[:6]
    a, b = (_cache(c, namespace) for c in clients)
    try:
        await a._fresh_gens()
        await b._fresh_gens()
        entry = a.key_for(req("claimed"))
        key = entry  # (the feed's key when on_interrupt="raise")
        await raw.xadd(key + RELAY_STREAM_SUFFIX, {"t": "old"})  # a finished stream's leftover
        await raw.script_load(_LOOKUP_CLAIM_SCRIPT)  # (a flushed server: EVAL, tested below)
        await raw.config_resetstat()
        misses = a.stats().misses
        hit, claim = await a._lookup_or_claim(entry, key, time.perf_counter(), [])
        assert hit is None and isinstance(claim, bytes)
        stats = await raw.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == 1 and "cmdstat_eval" not in stats
        # (the server counts the script's own calls too: one GET, one SET, one UNLINK)
        assert [stats[f"cmdstat_{c}"]["calls"] for c in ("get", "set", "unlink")] == [1, 1, 1]
        assert await raw.get(key + RELAY_LEASE_SUFFIX) == claim
        assert not await raw.exists(key + RELAY_STREAM_SUFFIX)  # removed with the claim
        assert a.stats().misses == misses + 1 and a.stats().leases == 1
        # another process: a miss, and another process leads (no UNLINK of its stream)
        await raw.xadd(key + RELAY_STREAM_SUFFIX, {"t": "live"})
        hit, other = await b._lookup_or_claim(entry, key, time.perf_counter(), [])
        assert hit is None and other is False
        assert await raw.exists(key + RELAY_STREAM_SUFFIX)
        await a._relay_release(key, claim)
        assert not await raw.exists(key + RELAY_LEASE_SUFFIX)
    finally:
        for c in clients:
            await c.aclose()
        await raw.aclose()


@pytest.mark.redis
async def test_a_stored_answer_is_a_hit_and_takes_no_lease_also_after_a_script_flush(
    redis_server: RedisServer,
) -> None:
    async with _world(redis_server, "lh", ["a ", "b"]) as world:
        raw, ai, cache, scripts, namespace = world
        chunks, first = await asyncio.wait_for(read(ai, req("stored")), 30)
        assert chunks == ["a ", "b"] and not first.cached
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        await raw.script_flush()  # a restart forgets the script: EVAL then
        hits = cache.stats().hits
        chunks, again = await asyncio.wait_for(read(ai, req("stored")), 30)
        assert chunks == ["a ", "b"] and again.cached and again.text == first.text
        assert cache.stats().hits == hits + 1 and cache.stats().leases == 1  # (the first)
        assert scripts.opened["ollama"] == 1
        await until_no_leases(raw, namespace)
        # the next miss after the flush: claimed by EVAL, streamed, lease given back
        chunks, fresh = await asyncio.wait_for(read(ai, req("after the flush")), 30)
        assert chunks == ["a ", "b"] and not fresh.cached and cache.stats().leases == 2
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        await until_no_leases(raw, namespace)


@pytest.mark.redis
async def test_a_value_of_another_type_under_the_entry_falls_back_to_the_plain_lookup(
    redis_server: RedisServer,
) -> None:
    async with _world(redis_server, "lt", ["x"]) as world:
        raw, ai, cache, _scripts, namespace = world
        await cache._fresh_gens()
        entry = cache.key_for(req("wrong type"))
        await raw.rpush(entry, "not ours")
        chunks, resp = await asyncio.wait_for(read(ai, req("wrong type")), 30)
        assert chunks == ["x"] and not resp.cached
        assert cache.stats().value_errors >= 1  # counted by the plain lookup, as before
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        assert await raw.type(entry) == b"string"  # discarded, then stored
        await until_no_leases(raw, namespace)  # claimed by the producer, given back


@pytest.mark.redis
async def test_a_caller_cancelled_at_each_await_of_the_start_leaves_no_lease(
    redis_server: RedisServer,
) -> None:
    """The caller cancelled after 0, 1, 2, ... loop passes (while the script is out, once
    its reply is in, before the producer task ever ran, while it opens the upstream):
    no stream lease is left, and a fresh stream of the same request then streams. The
    same with the generations' copy expired (their reload in the script, decision 0920)
    and with the generations moved meanwhile (the script answers "moved", the caller looks
    up again under the new key: every await of that path too)."""
    async with _world(redis_server, "lx", ["p ", 0.01, "q"]) as world:
        raw, ai, cache, scripts, namespace = world
        await asyncio.wait_for(read(ai, req("warm-up")), 30)  # (generations read)
        outcomes: set[str] = set()
        moved = 0
        rekey, rekeyed = ai._rekey, []

        def counted_rekey(*args: Any) -> tuple[str, str]:
            rekeyed.append(args)
            return rekey(*args)

        ai._rekey = counted_rekey  # type: ignore[method-assign,assignment]
        for run in range(120):
            passes, mode = run % 40, ("fresh", "expired", "moved")[run // 40]
            if mode != "fresh":
                cache._gens_expiry = 0.0  # (generation_ttl_s of quiet)
            if mode == "moved":  # another process cleared: the script sees it
                await raw.hincrby(cache._keys.gen_key, "*", 1)
                moved += 1
            reader = asyncio.ensure_future(read(ai, req(f"cancelled {passes}")))
            for _ in range(passes):
                await asyncio.sleep(0)
            reader.cancel()
            try:
                await asyncio.wait_for(reader, 30)
                outcomes.add("complete")
            except asyncio.CancelledError:
                outcomes.add("cancelled")
            await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
            await asyncio.wait_for(until(lambda: not cache._releases), 30)
            await until_no_leases(raw, namespace)
            if mode == "moved":  # taken from the script's reply, or nobody looked yet
                assert cache._keys.gens.get("*") == moved or cache._gens_expiry == 0.0
        assert "cancelled" in outcomes
        assert len(rekeyed) >= 10  # (the "moved" path ran: not every caller left before it)
        opened = scripts.opened["ollama"]
        chunks, resp = await asyncio.wait_for(read(ai, req("cancelled 0")), 30)
        assert chunks == ["p ", "q"] and not resp.cached
        assert scripts.opened["ollama"] == opened + 1


@pytest.mark.redis
async def test_a_producer_cancelled_before_it_ever_ran_gives_the_claim_back(
    redis_server: RedisServer,
) -> None:
    async with _world(redis_server, "lp", None) as world:
        raw, ai, cache, _scripts, namespace = world
        await cache._fresh_gens()
        entry = cache.key_for(req("never ran"))
        hit, claim = await cache._lookup_or_claim(entry, entry, time.perf_counter(), [])
        assert hit is None and isinstance(claim, bytes)
        feed = UpstreamFeed(entry)
        feed.attach()
        config = ai.settings.stream
        ai._start_producer(
            feed, req("never ran"), "chat", "speed", config, entry, looked_up=True, claim=claim
        )
        assert feed.task is not None
        feed.task.cancel()  # before its first step: _produce's finally never runs
        await asyncio.gather(feed.task, return_exceptions=True)
        await asyncio.wait_for(until(lambda: not cache._releases), 30)
        await until_no_leases(raw, namespace)


@pytest.mark.redis
async def test_a_manager_closed_while_the_script_is_out_leaves_no_lease(
    redis_server: RedisServer,
) -> None:
    raw = Redis.from_url(redis_server.url)
    client = Redis.from_url(redis_server.url)
    namespace = "lq" + uuid.uuid4().hex[:6]
    scripts = Scripts()
    scripts.default["ollama"] = ["x"]
    ai = AIManager(settings(), cache=_cache(client, namespace))
    scripts.install(ai)
    cache = ai.cache
    assert cache is not None
    await asyncio.wait_for(read(ai, req("warm-up")), 30)
    sent = asyncio.Event()
    queued = cache._io_queued_soon

    def noted(*args: Any, **kwargs: Any) -> Any:
        sent.set()
        return queued(*args, **kwargs)

    cache._io_queued_soon = noted  # type: ignore[method-assign]
    reader = asyncio.ensure_future(read(ai, req("closed under it")))
    await asyncio.wait_for(sent.wait(), 30)
    ai._closed = True  # (what aclose() sets first) while the script is out
    with pytest.raises(Exception, match="closed"):
        await asyncio.wait_for(reader, 30)
    ai._closed = False
    try:
        await asyncio.wait_for(until(lambda: not cache._releases), 30)
        await until_no_leases(raw, namespace)
        assert scripts.opened["ollama"] == 1  # (the warm-up only)
    finally:
        await ai.aclose()
        await client.aclose()
        await raw.aclose()


async def test_without_scripting_the_plain_lookup_and_claim_stay() -> None:
    """fakeredis has no Lua: the plain lookup (a GET), the producer's three-command claim."""
    client = fakeredis.FakeAsyncRedis()
    scripts = Scripts()
    scripts.default["ollama"] = ["f"]
    ai = AIManager(settings(), cache=_cache(client, "lf"))
    scripts.install(ai)
    cache = ai.cache
    assert cache is not None
    try:
        for text in ("one", "two", "one"):
            chunks, _ = await asyncio.wait_for(read(ai, req(text)), 30)
            assert chunks == ["f"]
        assert cache._scripting is False
        assert scripts.opened["ollama"] == 2 and cache.stats().leases == 2
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        assert not [k async for k in client.scan_iter(match=f"*{RELAY_LEASE_SUFFIX}", count=1000)]
    finally:
        await ai.aclose()
        await client.aclose()


@pytest.mark.redis
async def test_an_answer_stored_while_another_process_holds_the_lease_is_a_hit(
    redis_server: RedisServer,
) -> None:
    """The look and the claim have no moment between them: a stored answer is replayed
    (no upstream, no relay followed), the other holder's lease left as it was."""
    raw = Redis.from_url(redis_server.url)
    clients = [Redis.from_url(redis_server.url) for _ in range(2)]
    namespace = "ls" + uuid.uuid4().hex[:6]
    scripts = Scripts()
    a, b = (AIManager(settings(), cache=_cache(c, namespace)) for c in clients)
    scripts.install(a)
    assert a.cache is not None and b.cache is not None
    try:
        r = req("stored elsewhere")
        await b.cache._fresh_gens()
        stored = ChatResponse(text="stored by b", provider="ollama", model="m")
        assert await b.cache._set_with_extra(r, stored, [0, 6])
        lease = b.cache.key_for(r) + RELAY_LEASE_SUFFIX
        await raw.set(lease, b"b's token", px=5_000)
        chunks, resp = await asyncio.wait_for(read(a, r), 30)
        assert "".join(chunks) == "stored by b" and resp.cached
        assert scripts.opened["ollama"] == 0 and a.cache.stats().leases == 0
        assert await raw.get(lease) == b"b's token"
    finally:
        for ai in (a, b):
            await ai.aclose()
        for c in (*clients, raw):
            await c.aclose()


@pytest.mark.redis
async def test_an_l1_hit_sends_no_script_and_takes_no_lease(redis_server: RedisServer) -> None:
    raw = Redis.from_url(redis_server.url)
    client = Redis.from_url(redis_server.url)
    namespace = "l1" + uuid.uuid4().hex[:6]
    scripts = Scripts()
    scripts.default["ollama"] = ["a ", "b"]
    config = CacheConfig(namespace=namespace, lease_s=10.0, l1_max_entries=100)
    ai = AIManager(settings(), cache=ResponseCache(client, config=config))
    scripts.install(ai)
    cache = ai.cache
    assert cache is not None
    try:
        await asyncio.wait_for(read(ai, req("in l1")), 30)
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        await cache._lookup(cache.key_for(req("in l1")), time.perf_counter())  # (into the L1)
        await raw.config_resetstat()
        l1_hits, leases = cache.stats().l1_hits, cache.stats().leases
        chunks, resp = await asyncio.wait_for(read(ai, req("in l1")), 30)
        assert chunks == ["a ", "b"] and resp.cached
        assert cache.stats().l1_hits == l1_hits + 1 and cache.stats().leases == leases
        stats = await raw.info("commandstats")
        assert "cmdstat_evalsha" not in stats and "cmdstat_get" not in stats
        assert scripts.opened["ollama"] == 1
    finally:
        await ai.aclose()
        await client.aclose()
        await raw.aclose()
