"""hiredis, redis-py's C reply parser and command packer, is a core dependency (decision 0722).

redis-py uses it by itself once it is installed (``redis.utils.HIREDIS_AVAILABLE``); nothing in
the layer names it. These tests pin that the clients the layer builds and the clients its
tests use parse with it, on one server and on a cluster; the cache, stream and relay tests run
the same code on fakeredis (which keeps its own connection class) with hiredis installed.
Without hiredis (an install that skipped the dependency) they skip, or fail under ``CI``.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from typing import Any

import pytest

from fixtures.redis import LocalRedisCluster, RedisServer
from samplemind_core import CacheConfig, ChatResponse, ResponseCache, Settings
from samplemind_core.manager import _make_redis

from .test_stream_layer import req


def _need_hiredis() -> None:
    if importlib.util.find_spec("hiredis") is None:
        msg = "hiredis is not installed, but it is a core dependency: pip install -e ."
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set)", pytrace=False)
        pytest.skip(msg)


def _parses_with_hiredis(connection: Any) -> bool:
    from redis.asyncio.connection import _AsyncHiredisParser

    return isinstance(connection._parser, _AsyncHiredisParser) and (
        connection._command_packer is not None  # hiredis's packer (None: redis-py's Python one)
    )


async def _round_trip(client: Any) -> None:
    """A store and a lookup, and a relay stream's XADD/XRANGE, through ResponseCache."""
    cache = ResponseCache(client, config=CacheConfig(namespace="hi" + uuid.uuid4().hex[:6]))
    try:
        request = req("parsed by hiredis")
        await cache.set(request, ChatResponse(text="stored", provider="ollama", model="m"))
        hit = await cache.get(request)
        assert hit is not None and hit.text == "stored"
        stream = cache.key_for(request) + ":chunks"
        await client.xadd(stream, {b"t": "é ".encode()})
        rows = await client.xrange(stream)
        assert [fields for _, fields in rows] == [{b"t": "é ".encode()}]
        await client.delete(stream)
    finally:
        await cache.aclose()


@pytest.mark.redis
async def test_the_layers_client_parses_with_hiredis(redis_server: RedisServer) -> None:
    _need_hiredis()
    client = _make_redis(Settings(redis_url=redis_server.url))
    try:
        connection = await client.connection_pool.get_connection()
        try:
            assert _parses_with_hiredis(connection)
        finally:
            await client.connection_pool.release(connection)
        await _round_trip(client)
    finally:
        await client.aclose()


@pytest.mark.cluster
async def test_the_cluster_client_parses_with_hiredis(redis_cluster: LocalRedisCluster) -> None:
    _need_hiredis()
    client = redis_cluster.client()
    try:
        await _round_trip(client)  # (connects every node)
        nodes = client.get_nodes()
        assert nodes
        for node in nodes:
            connection = node.acquire_connection()
            try:
                assert _parses_with_hiredis(connection)
            finally:
                node.release(connection)
    finally:
        await client.aclose()
