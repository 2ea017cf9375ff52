"""A stream's cache miss with the relay on: the claim, the lease's refresh, every way out.

Decisions 0540 (the relay lease is extended by compare-and-pexpire of the claim's token,
never by an old holder; a leader that finds its lease gone stops relaying) and 0541 (the
claim and the re-check go in one round trip before the upstream opens; the old relay
stream is unlinked only when there is one). On fakeredis (no Lua here: the GET-then-
PEXPIRE fallback), a real redis-server and a real Redis Cluster; two managers on one
Redis stand for two processes (the four-process test is in ``test_stream_relay.py``).
Waits have liveness bounds only.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from fixtures.redis import LocalRedisCluster, RedisServer
from samplemind_core import CacheConfig, ChatResponse, StreamInterrupted
from samplemind_core.cache import ResponseCache
from samplemind_core.cache._relay import RELAY_LEASE_SUFFIX, RELAY_STREAM_SUFFIX
from samplemind_core.cache._store import _CLAIM_SCRIPT, _LOOKUP_CLAIM_SCRIPT
from samplemind_core.manager import AIManager
from tests._helpers import until

from .test_lease_tokens import two_caches, until_no_leases
from .test_stream_layer import Scripts, read, req, settings

__all__ = ["two_caches"]  # (the fixture, imported for pytest)


# ------------------------------------------------ compare-and-pexpire (decision 0540)


async def test_only_the_holder_extends_a_relay_lease(
    two_caches: tuple[ResponseCache, ResponseCache, Any],
) -> None:
    a, b, raw = two_caches
    key = a.key_for(req()) + "|cap"
    lease = key + RELAY_LEASE_SUFFIX
    claim_a, _ = await a._relay_claim(key)
    assert isinstance(claim_a, bytes)
    await raw.delete(lease)  # A's lease expired while A was still streaming
    claim_b, _ = await b._relay_claim(key)
    assert isinstance(claim_b, bytes)
    await raw.pexpire(lease, 2_000)  # (so that an extension to lease_s would show)
    assert await a._io_cap(lease, claim_a, 60_000) is False  # the old holder: refused
    assert 0 < await raw.pttl(lease) <= 2_000
    assert await raw.get(lease) == claim_b
    assert await b._io_cap(lease, claim_b, 60_000) is True  # the holder: extended
    assert await raw.pttl(lease) > 2_000
    await b._relay_release(key, claim_b)
    assert await a._io_cap(lease, claim_a, 60_000) is False  # a gone key stays gone
    assert not await raw.exists(lease)


@pytest.mark.redis
async def test_a_server_that_forgot_the_script_still_extends(redis_server: RedisServer) -> None:
    raw = Redis.from_url(redis_server.url)
    cache = ResponseCache(
        Redis.from_url(redis_server.url),
        config=CacheConfig(lease_s=10.0, namespace="cap" + uuid.uuid4().hex[:6]),
    )
    try:
        key = cache.key_for(req("flushed"))
        claim, _ = await cache._relay_claim(key)
        assert isinstance(claim, bytes)
        await raw.script_flush()  # (a restart does the same)
        await raw.pexpire(key + RELAY_LEASE_SUFFIX, 1_000)
        assert await cache._io_cap(key + RELAY_LEASE_SUFFIX, claim, 30_000) is True
        assert await raw.pttl(key + RELAY_LEASE_SUFFIX) > 1_000
        assert cache._scripting  # the atomic path is kept
        # the writer's refresh (EVALSHA queued with its batch) after another SCRIPT FLUSH
        await raw.script_flush()
        await raw.pexpire(key + RELAY_LEASE_SUFFIX, 1_000)
        writer = cache._relay_writer(key, claim)
        writer._lease_due = 0.0  # due
        writer.put({b"t": b"one"})
        await asyncio.wait_for(until(lambda: writer._refreshing is None), 30)
        assert not writer.lost and await raw.pttl(key + RELAY_LEASE_SUFFIX) > 1_000
        await writer.close(cache._relay_end_fields(None, "abandoned"))
        await cache._relay_release(key, claim)
    finally:
        await cache.aclose()
        await cache._redis.aclose()
        await raw.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("chunks", [1, 3])
async def test_entries_put_before_their_batch_is_sent_go_in_it(
    redis_server: RedisServer, chunks: int
) -> None:
    """Decision 0720: a batch's commands are built when its pipeline is, so the chunks put
    in one loop iteration and a terminal entry put before the batch went out (a reader
    that left after its first chunk) take one round trip, with one PEXPIRE of the stream."""
    raw = Redis.from_url(redis_server.url)
    client = Redis.from_url(redis_server.url)
    counted = Counted(client)
    cache = ResponseCache(
        client, config=CacheConfig(lease_s=10.0, namespace="batch" + uuid.uuid4().hex[:6])
    )
    try:
        key = cache.key_for(req(f"one batch {chunks}"))
        claim, _ = await cache._relay_claim(key)
        assert isinstance(claim, bytes)
        writer = cache._relay_writer(key, claim)
        await raw.config_resetstat()
        start = counted.trips
        for i in range(chunks):
            writer.put({b"p": b"ollama/m", b"t": b"first "} if i == 0 else {b"t": b"%d " % i})
        await writer.close(cache._relay_end_fields(None, "abandoned"))
        assert counted.trips == start + 1 and not writer.failed
        stats = await raw.info("commandstats")
        assert stats["cmdstat_xadd"]["calls"] == chunks + 1
        assert stats["cmdstat_pexpire"]["calls"] == 1
        rows = await raw.xrange(key + RELAY_STREAM_SUFFIX)
        assert [fields for _, fields in rows][-1] == {b"end": b"err", b"e": b"abandoned"}
        assert [fields.get(b"t") for _, fields in rows[:-1]] == [b"first "] + [
            b"%d " % i for i in range(1, chunks)
        ]
        assert 9_000 < await raw.pttl(key + RELAY_STREAM_SUFFIX) <= 10_000
        await cache._relay_release(key, claim)
    finally:
        await cache.aclose()
        await client.aclose()
        await raw.aclose()


async def test_a_leader_whose_lease_was_taken_over_stops_relaying(
    two_caches: tuple[ResponseCache, ResponseCache, Any],
) -> None:
    a, _, raw = two_caches
    key = a.key_for(req()) + "|lost"
    lease, stream = key + RELAY_LEASE_SUFFIX, key + RELAY_STREAM_SUFFIX
    claim, _ = await a._relay_claim(key)
    assert isinstance(claim, bytes)
    writer = a._relay_writer(key, claim)
    writer.put({b"t": b"one"})
    await asyncio.wait_for(until(lambda: writer._sending is None), 30)
    assert await raw.xlen(stream) == 1 and not writer.lost
    await raw.set(lease, b"successor", px=2_000)  # expired, and taken over elsewhere
    writer._lease_due = 0.0  # its refresh is due (a quarter of lease_s has passed)
    writer.put({b"t": b"two"})
    await asyncio.wait_for(until(lambda: writer.lost), 30)
    assert 0 < await raw.pttl(lease) <= 2_000  # the successor's lease was not extended
    xlen = await raw.xlen(stream)
    writer.put({b"t": b"three"})  # dropped: the successor's followers read this key
    await writer.close(a._relay_end_fields(None, "abandoned"))
    assert await raw.xlen(stream) == xlen
    await a._relay_release(key, claim)
    assert await raw.get(lease) == b"successor"


# ------------------------------------------------------ the claim (decision 0541)


@pytest.fixture(params=["redis", "cluster"])
async def pair(request: Any) -> AsyncIterator[tuple[AIManager, AIManager, Scripts, Any]]:
    """Two managers ("processes") on one real store, and a raw client of it."""
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        live: RedisServer = request.getfixturevalue("redis_server")
        clients: list[Any] = [Redis.from_url(live.url) for _ in range(3)]
    else:
        request.applymarker(pytest.mark.cluster)
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        clients = [cluster.client() for _ in range(3)]
    namespace = "miss-" + uuid.uuid4().hex[:8]
    scripts = Scripts()
    managers = [
        AIManager(
            settings(idle_timeout_s=5.0),
            cache=ResponseCache(c, config=CacheConfig(namespace=namespace, lease_s=5.0)),
        )
        for c in clients[:2]
    ]
    for ai in managers:
        scripts.install(ai)
    try:
        yield managers[0], managers[1], scripts, clients[2]
    finally:
        for ai in managers:
            await ai.aclose()
        for c in clients:
            await c.aclose()


class Counted:
    """Counts round trips of a real client (single commands and pipelines)."""

    def __init__(self, client: Any) -> None:
        self.trips = 0
        execute_command, pipeline = client.execute_command, client.pipeline

        async def single(*args: Any, **kwargs: Any) -> Any:
            self.trips += 1
            return await execute_command(*args, **kwargs)

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            self.trips += 1
            return pipeline(*args, **kwargs)

        client.execute_command = single
        client.pipeline = counted_pipeline


@pytest.mark.redis
async def test_a_miss_opens_its_upstream_after_one_round_trip(
    redis_server: RedisServer,
) -> None:
    """The lookup and the claim in one script on one server (GET, then SET NX and UNLINK of
    an old relay stream; decisions 0721, 0880): nothing else before the upstream opens,
    also when the generations' copy has expired (their reload rides in the script: 0920)."""
    client = Redis.from_url(redis_server.url)
    counted = Counted(client)
    scripts = Scripts()
    scripts.default["ollama"] = ["a ", "b"]
    ai = AIManager(
        settings(),
        cache=ResponseCache(
            client, config=CacheConfig(namespace="rt" + uuid.uuid4().hex[:6], lease_s=5.0)
        ),
    )
    scripts.install(ai)
    await asyncio.wait_for(read(ai, req("warm-up")), 30)  # (the generations' first read)
    await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)  # (and its release)
    adapter = ai.provider("ollama")
    opened = adapter.open_stream
    before_open: list[int] = []

    async def open_stream(*args: Any, **kwargs: Any) -> Any:
        before_open.append(counted.trips)
        return await opened(*args, **kwargs)

    adapter.open_stream = open_stream  # type: ignore[method-assign]
    try:
        await client.script_load(_LOOKUP_CLAIM_SCRIPT)  # (the warm-up sent the other one)
        start = counted.trips
        chunks, resp = await asyncio.wait_for(read(ai, req("one trip")), 30)
        assert chunks == ["a ", "b"] and not resp.cached
        assert before_open == [start + 1]  # the lookup-and-claim EVALSHA
        assert ai.cache is not None
        ai.cache._gens_expiry = 0.0  # (generation_ttl_s of quiet)
        start = counted.trips
        chunks, resp = await asyncio.wait_for(read(ai, req("one trip, expired")), 30)
        assert chunks == ["a ", "b"] and not resp.cached
        assert before_open[1:] == [start + 1]  # the generations read in the same EVALSHA
        assert ai.cache._gens_expiry > ai.cache._clock()
    finally:
        await ai.aclose()
        await client.aclose()


@pytest.mark.redis
async def test_the_claim_is_one_script_on_one_server_and_survives_a_script_flush(
    redis_server: RedisServer,
) -> None:
    """Decision 0721: on one server the claim is one EVALSHA (the lease's SET NX PX, the old
    relay stream's UNLINK when the lease was taken, EXISTS of the entry); after a SCRIPT
    FLUSH (a restart) the same by EVAL; a second claimant gets False and no UNLINK."""
    raw = Redis.from_url(redis_server.url)
    clients = [Redis.from_url(redis_server.url) for _ in range(2)]
    namespace = "claim" + uuid.uuid4().hex[:6]
    a, b = (
        ResponseCache(c, config=CacheConfig(lease_s=10.0, namespace=namespace)) for c in clients
    )
    sent: list[str] = []
    execute_command = clients[0].execute_command

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return await execute_command(*args, **kwargs)

    clients[0].execute_command = recorded  # type: ignore[method-assign]
    rechecks: list[str] = []

    async def recheck() -> str:
        rechecks.append("looked")
        return "stored"

    try:
        await raw.script_load(_CLAIM_SCRIPT)  # (whichever test ran first on this server)
        key = a.key_for(req("claimed"))
        lease, stream = key + RELAY_LEASE_SUFFIX, key + RELAY_STREAM_SUFFIX
        for flushed in (False, True):
            if flushed:
                await raw.script_flush()
            await raw.xadd(stream, {b"t": b"stale "})
            sent.clear()
            claim, found = await a._relay_claim(key, recheck, key)
            assert isinstance(claim, bytes) and found is None and not rechecks
            assert sent == (["EVALSHA", "EVAL"] if flushed else ["EVALSHA"])
            assert not await raw.exists(stream)  # the old stream went with the claim
            assert await raw.get(lease) == claim and 9_000 < await raw.pttl(lease) <= 10_000
            await raw.xadd(stream, {b"t": b"ours "})  # (the holder's first entry)
            other, found = await b._relay_claim(key, recheck, key)
            assert other is False and found is None and not rechecks
            assert await raw.xlen(stream) == 1  # not unlinked by the one that did not take it
            await a._relay_release(key, claim)
            assert not await raw.exists(lease)
        await raw.set(key, b"an entry stored meanwhile")
        claim, found = await a._relay_claim(key, recheck, key)
        assert isinstance(claim, bytes) and found == "stored" and rechecks == ["looked"]
        await a._relay_release(key, claim)
    finally:
        for cache in (a, b):
            await cache.aclose()
        for c in (*clients, raw):
            await c.aclose()


async def test_an_old_relay_stream_is_removed_before_the_upstream_opens(
    pair: tuple[AIManager, AIManager, Scripts, Any],
) -> None:
    """A previous leader's entries (its chunk and its failure) are never read as ours."""
    a, b, scripts, raw = pair
    assert a.cache is not None
    stream = a.cache.key_for(req()) + RELAY_STREAM_SUFFIX
    await raw.xadd(stream, {b"t": b"stale "})
    await raw.xadd(stream, {b"end": b"err", b"e": b"an old failure"})
    await raw.pexpire(stream, 5_000)
    scripts.default["ollama"] = ["fresh ", 0.05, "chunks"]
    lead = asyncio.create_task(read(a, req()))
    await asyncio.wait_for(scripts.first_open.wait(), 30)
    follow = await asyncio.wait_for(read(b, req()), 30)
    chunks, _ = await asyncio.wait_for(lead, 30)
    assert follow[0] == chunks == ["fresh ", "chunks"]
    assert scripts.opened["ollama"] == 1


async def test_an_answer_stored_after_the_lookup_is_replayed_not_paid_again(
    pair: tuple[AIManager, AIManager, Scripts, Any],
) -> None:
    """Another process stored the answer between our lookup and our claim and gave its
    lease back: the claim's re-check finds it; no upstream call, our lease given back."""
    await _stored_meanwhile(*pair, held_elsewhere=False)


@pytest.mark.redis
async def test_a_follower_replays_an_answer_stored_while_its_leader_still_holds_the_lease(
    redis_server: RedisServer,
) -> None:
    """The claim fails (the holder has not given its lease back yet) but its re-check sees
    the stored answer: replayed at once, without following the relay. (On a cluster the
    follower's claim does not re-check: its relay read ends with the holder's end.)"""
    clients = [Redis.from_url(redis_server.url) for _ in range(3)]
    namespace = "held-" + uuid.uuid4().hex[:8]
    scripts = Scripts()
    a, b = (
        AIManager(
            settings(), cache=ResponseCache(c, config=CacheConfig(namespace=namespace, lease_s=5.0))
        )
        for c in clients[:2]
    )
    for ai in (a, b):
        scripts.install(ai)
    try:
        await _stored_meanwhile(a, b, scripts, clients[2], held_elsewhere=True)
    finally:
        for ai in (a, b):
            await ai.aclose()
        for c in clients:
            await c.aclose()


async def _stored_meanwhile(
    a: AIManager, b: AIManager, scripts: Scripts, raw: Any, *, held_elsewhere: bool
) -> None:
    assert a.cache is not None and b.cache is not None
    r = req("stored meanwhile")
    stored = ChatResponse(text="stored by b", provider="ollama", model="m")
    lookup = a.cache._lookup
    lease = a.cache.key_for(r) + RELAY_LEASE_SUFFIX
    calls = 0

    async def late_miss(key: str, start: float, **kw: Any) -> Any:
        # The stream's own lookup misses; b stores the answer before our claim.
        nonlocal calls
        calls += 1
        found = await lookup(key, start, **kw)
        if calls > 1:  # the claim's re-check
            return found
        assert found is None
        assert await b.cache._set_with_extra(r, stored, [0, 6])  # type: ignore[union-attr]
        if held_elsewhere:
            await raw.set(lease, b"b's token", px=5_000)
        return None

    async def apart(
        entry: str, key: str, start: float, extra: list[Any], gens: bool = False
    ) -> Any:
        # The lookup and the claim apart, as on a cluster, without scripting and in the
        # script's fallbacks (on one server they are otherwise one script with no window
        # between them: tests/test_stream_lookup_claim.py, decision 0880). ``gens``: the
        # generations' copy had expired (the hash is empty here: the key stays as it is).
        if gens:
            await a.cache._fresh_gens()  # type: ignore[union-attr]
        return await a.cache._lookup(entry, start, extra=extra), None  # type: ignore[union-attr]

    a.cache._lookup_or_claim = apart  # type: ignore[method-assign]
    a.cache._lookup = late_miss  # type: ignore[method-assign]
    chunks, resp = await asyncio.wait_for(read(a, r), 30)
    assert "".join(chunks) == "stored by b" and resp.cached
    assert scripts.opened["ollama"] == 0
    await asyncio.wait_for(until(lambda: not a._stream_tasks), 30)
    assert await raw.get(lease) == (b"b's token" if held_elsewhere else None)


# ------------------------------------------------------------------ every way out


async def _cancelled_at_random(call: Any, after_s: float) -> str:
    """Run ``call``, cancel it after ``after_s`` if still running; how it ended."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=after_s)
    if not done:
        task.cancel()
    try:
        chunks, _ = await task
    except asyncio.CancelledError:
        return "cancelled"
    except StreamInterrupted as exc:
        assert exc.partial_text.startswith("w0 ")
        return "interrupted"
    assert "".join(chunks) == "".join(f"w{i} " for i in range(20))
    return "complete"


@pytest.mark.slow
async def test_leaders_and_followers_cancelled_at_random_leave_no_lease(
    pair: tuple[AIManager, AIManager, Scripts, Any],
) -> None:
    """Each round: 40 identical readers in each of two processes, every one cancelled at a
    random moment (before the claim, while following, mid-stream). Afterwards no stream
    lease is left, every relay stream expires by itself (within ``lease_s``), and a reader
    in the other process streams at once (nobody waits out a lease)."""
    a, b, scripts, raw = pair
    assert a.cache is not None and b.cache is not None
    namespace = a.cache.namespace
    rng = random.Random(540)
    steps: list[Any] = []
    for i in range(20):
        steps += [f"w{i} ", 0.01]
    scripts.default["ollama"] = steps
    for round_ in range(6):
        r = req(f"cancelled round {round_}")
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(_cancelled_at_random(read(ai, r), rng.uniform(0.0, 0.25)) for ai in (a, b) * 40)
            ),
            60,
        )
        assert outcomes.count("cancelled") >= 40  # (most; a reader may finish first)
        # the others read it all, or (their leader in the other process was left by all
        # its readers after text had gone out) were interrupted with a prefix of it
        assert set(outcomes) <= {"cancelled", "complete", "interrupted"}
        for ai in (a, b):
            await asyncio.wait_for(until(lambda ai=ai: not ai._stream_tasks), 30)
            await asyncio.wait_for(until(lambda ai=ai: not ai.cache._releases), 30)  # type: ignore[union-attr]
        await until_no_leases(raw, namespace)
        streams = [
            k async for k in raw.scan_iter(match=f"*{namespace}*{RELAY_STREAM_SUFFIX}", count=1000)
        ]
        for stream in streams:
            assert 0 < await raw.pttl(stream) <= 5_000  # expires by itself
    opened = scripts.opened["ollama"]
    scripts.default["ollama"] = ["fresh"]
    chunks, resp = await asyncio.wait_for(read(b, req("a new one")), 5)
    assert chunks == ["fresh"] and not resp.cached and scripts.opened["ollama"] == opened + 1


@pytest.mark.redis
async def test_redis_paused_mid_stream_neither_leader_nor_follower_hangs(
    redis_server_isolated: RedisServer,
) -> None:
    """``CLIENT PAUSE`` (all commands, 400 ms, longer than ``op_timeout_s``) while a leader
    streams and a follower in another process reads its relay: the leader's reader gets
    the whole stream; the follower gets it too, or a prefix then ``StreamInterrupted``,
    or (nothing relayed yet) reads the provider itself; no lease is left."""
    server = redis_server_isolated
    namespace = "pause-" + uuid.uuid4().hex[:8]
    clients = [Redis.from_url(server.url) for _ in range(3)]
    control = clients[2]
    scripts = Scripts()
    steps: list[Any] = []
    for i in range(12):
        steps += [f"p{i} ", 0.05]
    scripts.default["ollama"] = steps
    a, b = (
        AIManager(
            settings(idle_timeout_s=2.0),
            cache=ResponseCache(c, config=CacheConfig(namespace=namespace, lease_s=5.0)),
        )
        for c in clients[:2]
    )
    for ai in (a, b):
        scripts.install(ai)
    try:
        lead = asyncio.create_task(read(a, req()))
        await asyncio.wait_for(scripts.first_open.wait(), 30)
        follow = asyncio.create_task(read(b, req()))
        await asyncio.sleep(0.15)
        await control.execute_command("CLIENT", "PAUSE", "400", "ALL")
        chunks, _ = await asyncio.wait_for(lead, 30)
        assert chunks == [f"p{i} " for i in range(12)]
        try:
            got, _ = await asyncio.wait_for(follow, 30)
        except StreamInterrupted as exc:
            assert "".join(chunks).startswith(exc.partial_text) and exc.partial_text
        else:
            assert got == chunks
        for ai in (a, b):
            await asyncio.wait_for(until(lambda ai=ai: not ai._stream_tasks), 30)
            await asyncio.wait_for(until(lambda ai=ai: not ai.cache._releases), 30)  # type: ignore[union-attr]
        await until_no_leases(control, namespace)
    finally:
        for ai in (a, b):
            await ai.aclose()
        for c in clients:
            await c.aclose()


# ---------------------------------------------- the first chunk before the relay's write


@pytest.mark.redis
async def test_the_reader_has_its_first_chunk_before_the_relay_writes_it(
    redis_server: RedisServer,
) -> None:
    """The leader hands each chunk to its readers first; the relay's ``XADD`` of it is
    queued for the end of that event-loop iteration (decision 0541, item 1): no Redis
    work stands between the provider's first chunk and the caller's."""
    client = Redis.from_url(redis_server.url)
    xadds: list[int] = []
    pipeline = client.pipeline

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        async def wrapped(*a: Any, **kw: Any) -> Any:
            xadds.extend(1 for command, _ in pipe.command_stack if command[0] == "XADD")
            return await execute(*a, **kw)

        pipe.execute = wrapped
        return pipe

    client.pipeline = counted_pipeline  # type: ignore[method-assign]
    scripts = Scripts()
    scripts.default["ollama"] = ["first ", 0.05, "second"]
    ai = AIManager(
        settings(),
        cache=ResponseCache(
            client, config=CacheConfig(namespace="fc" + uuid.uuid4().hex[:6], lease_s=5.0)
        ),
    )
    scripts.install(ai)
    try:
        seen: list[int] = []
        async with ai.stream(req("first chunk first")) as stream:
            async for _ in stream:
                seen.append(len(xadds))
        assert stream.response.text == "first second" and seen[0] == 0
        assert len(xadds) == 3  # both chunks and the end were relayed after all
    finally:
        await ai.aclose()
        await client.aclose()
