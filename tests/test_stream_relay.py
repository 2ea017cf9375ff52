"""Stream single-flight across processes: the relay through a real redis-server.

Two :class:`AIManager` objects on one real Redis behave like two processes (each
has its own in-process registry of streams); the last test runs four real
processes against the emulator. Provider streams are scripted as in
``tests/test_stream_layer.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from fixtures.stream_worker import worker_args
from samplemind_core import (
    CacheConfig,
    ResponseCache,
    StreamInterrupted,
)
from samplemind_core.cache._relay import RELAY_LEASE_SUFFIX
from samplemind_core.manager import AIManager
from tests._helpers import until

from .test_stream_layer import Scripts, read, req, settings

pytestmark = [pytest.mark.redis]


@pytest.fixture
async def pair(redis_server: Any) -> AsyncIterator[tuple[AIManager, AIManager, Scripts]]:
    """Two managers ("processes") on one real Redis, one namespace of their own.

    ``op_timeout_s`` 2 s: these tests check each way out, not the store's deadline; at the
    default (50 ms) a loaded xdist worker's loop alone can time out a cancelled leader's
    compare-and-delete, which then goes on in the background (tests/test_cache_leases.py
    covers that path) and the lease is still there when the test looks (seen once in 2 runs
    of the file under ``-n 2``)."""
    namespace = "relay-" + uuid.uuid4().hex[:8]
    clients = [Redis.from_url(redis_server.url) for _ in range(2)]
    scripts = Scripts()
    config = CacheConfig(namespace=namespace, lease_s=5.0, op_timeout_s=2.0)
    managers = [
        AIManager(settings(), cache=ResponseCache(client, config=config)) for client in clients
    ]
    for ai in managers:
        scripts.install(ai)
    try:
        yield managers[0], managers[1], scripts
    finally:
        for ai in managers:
            await ai.aclose()
        for client in clients:
            await client.aclose()


async def test_a_follower_process_reads_the_leaders_chunks_as_they_arrive(
    pair: tuple[AIManager, AIManager, Scripts],
) -> None:
    a, b, scripts = pair
    scripts.default["ollama"] = ["one ", 0.05, "two ", 0.05, "three"]
    lead = asyncio.create_task(read(a, req()))
    await asyncio.wait_for(
        scripts.first_open.wait(), 30
    )  # the leader holds the lease (it claims before it opens)
    async with b.stream(req()) as stream:
        got = []
        async for chunk in stream:
            got.append((chunk.text, lead.done()))
        resp = stream.response
    leader_chunks, leader_resp = await lead
    assert [t for t, _ in got] == leader_chunks == ["one ", "two ", "three"]
    assert not got[0][1]  # the follower had its first chunk before the leader finished
    assert scripts.opened["ollama"] == 1 and stream.role == "relay"
    assert resp.text == leader_resp.text and resp.cached and resp.metadata["coalesced"]
    assert resp.cost_usd == 0.0 and resp.usage == leader_resp.usage


async def test_a_cancelled_leaseholder_releases_at_once_and_a_follower_takes_over(
    pair: tuple[AIManager, AIManager, Scripts],
) -> None:
    a, b, scripts = pair
    scripts.scripts["ollama"] = [[5.0, "never"], ["fresh"]]  # silent leader, then a good one
    lead = asyncio.create_task(read(a, req()))
    await asyncio.wait_for(
        scripts.first_open.wait(), 30
    )  # the leader holds the lease (it claims before it opens)
    assert a.cache is not None
    key = a.cache.key_for(req()) + RELAY_LEASE_SUFFIX
    assert await a.cache._redis.exists(key)
    follow = asyncio.create_task(read(b, req()))
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    lead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lead
    chunks, resp = await asyncio.wait_for(follow, 30)
    took = time.perf_counter() - t0
    assert chunks == ["fresh"] and resp.provider == "ollama" and not resp.cached
    assert scripts.opened["ollama"] == 2
    assert took < 4.0  # far below the 5 s lease and the 30 s idle timeout: not a timing target
    assert not await a.cache._redis.exists(key)


async def test_a_cancelled_leaseholder_leaves_no_lease_behind(
    pair: tuple[AIManager, AIManager, Scripts],
) -> None:
    a, _, scripts = pair
    scripts.default["ollama"] = ["a", 5.0, "b"]
    assert a.cache is not None
    key = a.cache.key_for(req()) + RELAY_LEASE_SUFFIX
    lead = asyncio.create_task(read(a, req()))
    await asyncio.wait_for(
        scripts.first_open.wait(), 30
    )  # the leader holds the lease (it claims before it opens)
    assert await a.cache._redis.exists(key)
    lead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lead
    assert not await a.cache._redis.exists(key)  # released before the cancelled call returned


async def test_a_leader_failing_after_text_interrupts_the_followers_elsewhere(
    pair: tuple[AIManager, AIManager, Scripts],
) -> None:
    from samplemind_core import ProviderServerError

    a, b, scripts = pair
    cut = ProviderServerError("ollama: overloaded", provider="ollama", status=529)
    scripts.scripts["ollama"] = [["Half ", 0.05, "an", 0.05, cut]]
    lead = asyncio.create_task(read(a, req()))
    await asyncio.wait_for(
        scripts.first_open.wait(), 30
    )  # the leader holds the lease (it claims before it opens)
    with pytest.raises(StreamInterrupted) as info:
        await asyncio.wait_for(read(b, req()), 30)
    assert info.value.partial_text == "Half an" and info.value.provider == "ollama"
    with pytest.raises(StreamInterrupted):
        await lead
    assert scripts.opened["ollama"] == 1
    assert a.cache is not None and await a.cache.get(req()) is None


async def test_a_silent_relay_never_holds_a_follower_past_its_idle_deadline(
    pair: tuple[AIManager, AIManager, Scripts],
) -> None:
    a, b, scripts = pair
    scripts.scripts["ollama"] = [["first", 10.0, "late"], ["own"]]
    lead = asyncio.create_task(read(a, req()))
    await asyncio.wait_for(
        scripts.first_open.wait(), 30
    )  # the leader holds the lease (it claims before it opens)
    with pytest.raises(StreamInterrupted, match="idle_timeout_s"):
        await asyncio.wait_for(read(b, req(), idle_timeout_s=0.2), 30)
    lead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lead


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.parametrize("relay", [True, False], ids=["relay", "no-relay"])
def test_four_processes_share_one_upstream(
    relay: bool, redis_server: Any, emulator_factory: Any, stream_worker_pool: Any
) -> None:
    # Four processes kept for the session's cross-process cases (decision 0981); each run
    # builds its own manager on a fresh namespace, as four fresh processes would.
    emulator = emulator_factory(latency_scale=0.002)
    start_at = time.time() + 2.5
    namespace = "procs-" + uuid.uuid4().hex[:8]
    args = worker_args(
        redis_server.url, emulator.url, n=50, namespace=namespace, start_at=start_at, relay=relay
    )
    outs = stream_worker_pool.run(args, timeout_s=120)
    assert len({o["pid"] for o in outs}) == 4  # four processes answered, not one
    calls = emulator.stats()["calls"].get("openai", 0) - 4  # each process's warm-up stream
    assert all(o["identical"] for o in outs)
    if relay:
        assert calls == 1
        assert all(o["chunks"] == outs[0]["chunks"] for o in outs)
        roles: dict[str, int] = {}
        for o in outs:
            for role, n in o["roles"].items():
                roles[role] = roles.get(role, 0) + n
        # One leader; every other caller shared it, in its process, through the relay, or (a
        # process that started after the end, on a loaded machine) from the stored entry.
        assert roles.get("leader") == 1 and sum(roles.values()) == 200
        assert set(roles) <= {"leader", "follower", "relay", "cache"}
    else:
        assert 1 <= calls <= 4


async def test_relay_keys_are_not_counted_as_entries(
    pair: tuple[AIManager, AIManager, Scripts],
) -> None:
    a, _, scripts = pair
    scripts.default["ollama"] = ["a", "b"]
    await read(a, req())
    assert a.cache is not None
    assert await a.cache._redis.exists(a.cache.key_for(req()) + ":chunks")
    info = await a.cache.info()
    assert info["entries"] == 1 and info["stale_entries"] == 0


async def test_redis_killed_mid_stream_neither_leader_nor_follower_hangs(
    redis_server_isolated: Any,
) -> None:
    server = redis_server_isolated
    namespace = "kill-" + uuid.uuid4().hex[:8]
    clients = [Redis.from_url(server.url) for _ in range(2)]
    scripts = Scripts()
    scripts.default["ollama"] = ["one ", 0.1, "two ", 0.1, "three"]
    a, b = (
        AIManager(
            settings(idle_timeout_s=1.0),
            cache=ResponseCache(client, config=CacheConfig(namespace=namespace, lease_s=5.0)),
        )
        for client in clients
    )
    for ai in (a, b):
        scripts.install(ai)
    try:
        lead = asyncio.create_task(read(a, req()))
        await asyncio.wait_for(
            scripts.first_open.wait(), 30
        )  # the leader holds the lease (it claims before it opens)
        follow = asyncio.create_task(read(b, req()))
        await asyncio.sleep(0.03)
        server.kill()
        chunks, resp = await asyncio.wait_for(lead, 30)  # the leader's callers never see Redis
        assert chunks == ["one ", "two ", "three"] and not resp.cached
        try:
            got, _ = await asyncio.wait_for(follow, 30)
        except StreamInterrupted as exc:  # the relay died after text had been delivered
            assert exc.partial_text.startswith("one")
        else:
            assert got == chunks  # or it had read everything, or read the provider itself
        server.restart()
        again, _ = await asyncio.wait_for(read(a, req()), 30)  # Redis back: served as before
        assert again == chunks
    finally:
        for ai in (a, b):
            await ai.aclose()
        for client in clients:
            await client.aclose()


async def test_a_follower_polls_when_the_blocking_reads_are_all_taken(
    pair: tuple[AIManager, AIManager, Scripts],
) -> None:
    a, b, scripts = pair
    scripts.default["ollama"] = ["one ", 0.05, "two ", 0.05, "three"]
    assert b.cache is not None
    b.cache._relay_blocking = 10**6  # as if every connection allowed for blocking reads held one
    lead = asyncio.create_task(read(a, req()))
    await asyncio.wait_for(
        scripts.first_open.wait(), 30
    )  # the leader holds the lease (it claims before it opens)
    chunks, resp = await asyncio.wait_for(read(b, req()), 30)
    assert chunks == (await lead)[0] and scripts.opened["ollama"] == 1
    assert resp.metadata["stream"]["role"] == "relay"


@pytest.mark.parametrize("batch", [True, False], ids=["batched", "one-by-one"])
async def test_concurrent_misses_send_their_commands_in_few_pipelines(
    redis_server: Any, batch: bool
) -> None:
    """Decision 0400: 100 concurrent stream misses (lookup, relay lease, its UNLINK, the
    re-check, the relay's entries, the stored value, the release) share pipelines instead
    of sending several commands each; every guarantee holds either way."""
    client = Redis.from_url(redis_server.url)
    namespace = "batch-" + uuid.uuid4().hex[:8]
    # op_timeout_s: this test counts pipelines, not timeouts; at the default (50 ms) a loaded
    # machine's event loop alone can time a batch of 100 out (sets 65, backend_errors 70 seen
    # at load 6), which other tests cover (tests/test_cache_health.py)
    config = CacheConfig(namespace=namespace, lease_s=5.0, batch_gets=batch, op_timeout_s=5.0)
    sent = {"single": 0, "pipelines": 0}
    execute_command, pipeline = client.execute_command, client.pipeline

    async def single(*args: Any, **kwargs: Any) -> Any:
        sent["single"] += 1
        return await execute_command(*args, **kwargs)

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        sent["pipelines"] += 1
        return pipeline(*args, **kwargs)

    client.execute_command = single  # type: ignore[method-assign]
    client.pipeline = counted_pipeline  # type: ignore[method-assign]
    scripts = Scripts()
    scripts.default["ollama"] = ["a ", "b ", "c"]
    ai = AIManager(settings(), cache=ResponseCache(client, config=config))
    scripts.install(ai)
    n = 100
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(read(ai, req(f"kick {i}")) for i in range(n))), 30
        )
        assert all(chunks == ["a ", "b ", "c"] for chunks, _ in results)
        assert scripts.opened["ollama"] == n
        stats = ai.cache.stats()  # type: ignore[union-attr]
        assert (stats.leases, stats.misses, stats.sets, stats.backend_errors) == (n, n, n, 0)
        # (a producer gives its lease back after its readers saw the end)
        await asyncio.wait_for(until(lambda: not ai._stream_tasks), 30)
        # (scanned with its own client: the counted one's commands are the layer's alone)
        control = Redis.from_url(redis_server.url)
        try:
            pattern = f"*{namespace}*{RELAY_LEASE_SUFFIX}"
            assert [k async for k in control.scan_iter(match=pattern, count=1000)] == []
        finally:
            await control.aclose()
        # stored with their boundaries: a second read of each is a replay
        again = await asyncio.wait_for(read(ai, req("kick 7")), 30)
        assert again[0] == ["a ", "b ", "c"] and again[1].cached
        round_trips = sent["single"] + sent["pipelines"]
        if batch:
            # fewer than one-by-one ever sends (>= 5 per stream, below: 541 for 100 streams,
            # 341 single + 200 pipelines). Quiet: 33-37 round trips for 100 streams. (The 108
            # and 245 seen in full runs counted this test's own SCAN of the session server,
            # which holds every earlier test's keys: it now has its own client.)
            assert round_trips < 4 * n, sent
            assert stats.pool_waits == 0
        else:
            # lookup, claim (SET NX + EXISTS x 2, decision 0541), relay entries, SET, release:
            # each stream's on its own
            assert round_trips >= 5 * n, sent
    finally:
        await ai.aclose()
        await client.aclose()


async def _calls(control: Any, command: str) -> int:
    stats = await control.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_the_relay_refreshes_its_expiries_once_per_quarter_lease_not_each_chunk(
    pair: tuple[AIManager, AIManager, Scripts], redis_server: Any
) -> None:
    """Decisions 0402, 0540, 0720: PEXPIRE of the relay stream with the first batch and then
    at most every lease_s / 4 (the terminal batch only when one is due: the stream then
    outlives its end by at least 3/4 lease_s); the lease's only every lease_s / 4, by
    compare; the follower still reads it all."""
    a, b, scripts = pair
    steps: list[Any] = []
    for i in range(30):
        steps += [f"w{i} ", 0.003]  # one relay batch per chunk, or nearly
    scripts.default["ollama"] = steps
    control = Redis.from_url(redis_server.url)
    try:
        await control.config_resetstat()
        lead = asyncio.create_task(read(a, req()))
        await asyncio.wait_for(
            scripts.first_open.wait(), 30
        )  # the leader holds the lease (it claims before it opens)
        follow = await asyncio.wait_for(read(b, req()), 30)
        chunks, _ = await asyncio.wait_for(lead, 30)
        assert follow[0] == chunks and len(chunks) == 30 and scripts.opened["ollama"] == 1
        xadds, pexpires = await _calls(control, "xadd"), await _calls(control, "pexpire")
        assert xadds == 31  # 30 chunks and the end
        # lease_s = 5 s: the stream lasts well under 1.25 s, so the relay stream's expiry is
        # set with its first batch only, and the lease's never (set by the claim's SET NX PX,
        # given back after the end: decision 0540)
        assert pexpires == 1, (xadds, pexpires)
        # the two claims (one script each on one server: decision 0721) and the release; a
        # compare-and-pexpire would be a fourth (and its PEXPIRE, counted inside, a second)
        assert await _calls(control, "evalsha") == 3
        # ... and the stream, ended, is still there for late readers: 3/4 lease_s at least
        namespace = a.cache.namespace if a.cache is not None else ""
        streams = [k async for k in control.scan_iter(match=f"*{namespace}*:chunks", count=1000)]
        assert len(streams) == 1, streams
        ttl_ms = await control.pttl(streams[0])
        assert 2_500 < ttl_ms <= 5_000, ttl_ms  # (3,750 less the time since the end)
    finally:
        await control.aclose()
