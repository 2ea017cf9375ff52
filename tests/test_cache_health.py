"""Health is tracked where the failure is (issue 23 item 7): one sick cluster node or a full
Redis never turns off the rest of the cache. Real processes: a private local Redis Cluster
with one master killed, and a redis-server at ``maxmemory`` with ``noeviction``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from fixtures.redis import LocalRedisCluster, RedisServer
from samplemind_core import CacheConfig, ChatRequest, ChatResponse
from samplemind_core.cache import ResponseCache


def req(text: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], provider="ollama", model="m")


def resp(text: str) -> ChatResponse:
    return ChatResponse(text=text, provider="ollama", model="m")


async def _ready(response: ChatResponse) -> ChatResponse:
    return response


async def _lease_keys(client: Any) -> list[bytes]:
    return [k async for k in client.scan_iter(match="*:lease", count=1000)]


@pytest.fixture
def private_cluster() -> Any:
    cluster = LocalRedisCluster().start()
    try:
        for node in cluster.nodes:  # serve the healthy masters' slots while one is down
            c = node.sync_client()
            try:
                c.config_set("cluster-require-full-coverage", "no")
            finally:
                c.close()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.cluster
@pytest.mark.slow
async def test_one_master_down_keeps_the_healthy_masters_hits(
    private_cluster: LocalRedisCluster,
) -> None:
    # redis-py's retry count (10), spaced 20 ms at most, and topology refreshes 10 ms apart
    # instead of its 1 s: against the killed node, the default back-off and refresh interval
    # kept the first wave's operations retrying until the cache's 2 s deadline (in 4 of 6
    # runs and in the lead's full run); they are redis-py's defaults, not what this test checks
    client = private_cluster.client(
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.02), retries=10),
        topology_refresh_min_interval=0.01,
    )
    cache = ResponseCache(
        client,
        # a generous per-operation deadline: on a loaded machine a healthy node can miss the
        # default 50 ms, and that node's back-off (right in itself) is not what this test is about
        config=CacheConfig(namespace=f"h{uuid.uuid4().hex[:6]}", lease_s=10.0, op_timeout_s=2.0),
    )
    reqs = [req(f"node {i}") for i in range(90)]
    try:
        assert await cache.warm((r, resp(f"answer {i}")) for i, r in enumerate(reqs)) == 90
        dead = private_cluster.nodes[1]
        dead_name = f"127.0.0.1:{dead.port}"

        def node_of(r: ChatRequest) -> str:
            key = cache.key_for(r)
            return str(client.nodes_manager.get_node_from_slot(client.keyslot(key)).name)

        on_dead = {i for i, r in enumerate(reqs) if node_of(r) == dead_name}
        assert 0 < len(on_dead) < 90
        dead.kill()
        for _ in range(3):  # the first wave meets the dead node; the next ones skip it
            cache.reset_stats()
            wave = await asyncio.wait_for(asyncio.gather(*(cache.get(r) for r in reqs)), 60)
            hits = {i for i, hit in enumerate(wave) if hit is not None}
            assert hits == set(range(90)) - on_dead  # every healthy master's entry = truth
            assert all(wave[i].text == f"answer {i}" for i in hits)  # type: ignore[union-attr]
        assert not cache.healthy  # one node is sick, and says so

        calls: list[int] = []

        def call_for(i: int) -> Callable[[], Any]:
            calls.append(i)
            return lambda: _ready(resp(f"paid {i}"))

        got = await asyncio.wait_for(
            asyncio.gather(*(cache.get_or_call(r, call_for(i)) for i, r in enumerate(reqs))), 60
        )
        for i, g in enumerate(got):
            assert g.text == (f"paid {i}" if i in on_dead else f"answer {i}")
        await cache.aclose()
        healthy_nodes = [
            n for n in private_cluster.nodes if n is not dead
        ]  # no lease left anywhere that still answers
        for node in healthy_nodes:
            async with node.client() as c:
                assert await _lease_keys(c) == []
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_a_full_redis_refuses_writes_but_every_stored_entry_still_hits(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(
        extra_args=("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    )
    client = server.client()
    # a generous per-operation deadline (as above): 400 writes of 20 KB at once can keep a
    # healthy server past the default 50 ms, and a timeout is not the refusal under test
    cache = ResponseCache(client, config=CacheConfig(lease_s=10.0, op_timeout_s=2.0))
    reqs = [req(f"full {i}") for i in range(400)]
    big = "x" * 20_000  # 400 x 20 KB does not fit in 3 MB

    def complete(i: int) -> Any:
        return cache.get_or_call(reqs[i], lambda: _ready(resp(f"{i} {big}")))

    try:
        first = await asyncio.wait_for(asyncio.gather(*(complete(i) for i in range(400))), 60)
        assert [g.text for g in first] == [f"{i} {big}" for i in range(400)]
        st = cache.stats()
        assert st.refused_writes > 0 and st.backend_errors == 0 and cache.healthy
        stored = {i for i, r in enumerate(reqs) if await client.exists(cache.key_for(r))}
        assert 0 < len(stored) < 400
        cache.reset_stats()
        wave = await asyncio.wait_for(asyncio.gather(*(cache.get(r) for r in reqs)), 60)
        assert {i for i, hit in enumerate(wave) if hit is not None} == stored
        assert cache.stats().bypassed == 0
        await cache.aclose()
        assert await _lease_keys(client) == []
    finally:
        await client.aclose()
