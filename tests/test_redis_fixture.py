"""The local Redis Cluster fixture: joined the way ``redis-cli --cluster create`` joins it."""

from __future__ import annotations

import itertools
from typing import Any, cast

import pytest

from fixtures.redis import LocalRedisCluster, _slot_ranges


def test_slot_ranges_split_like_redis_cli() -> None:
    # redis-cli --cluster create with 3 masters: 0-5460, 5461-10922, 10923-16383
    assert _slot_ranges(3) == [(0, 5460), (5461, 10922), (10923, 16383)]
    assert _slot_ranges(1) == [(0, 16383)]
    for masters in range(1, 8):
        ranges = _slot_ranges(masters)
        assert ranges[0][0] == 0 and ranges[-1][1] == 16383
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))


@pytest.mark.cluster
def test_the_session_cluster_is_ready_and_every_node_knows_every_slot(
    redis_cluster: LocalRedisCluster,
) -> None:
    expected = sorted(
        (first, last, node.port)
        for node, (first, last) in zip(redis_cluster.nodes, _slot_ranges(3), strict=True)
    )
    for node in redis_cluster.nodes:
        c = node.sync_client()
        try:
            info = c.cluster("INFO")
            slots = cast(Any, c).execute_command("CLUSTER SLOTS")
        finally:
            c.close()
        assert info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 3
        seen = sorted((int(first), int(last), int(owner[1])) for first, last, owner in slots)
        assert seen == expected


@pytest.mark.cluster
async def test_later_clients_take_the_first_clients_command_table_and_route_scripts(
    redis_cluster: LocalRedisCluster,
) -> None:
    first = redis_cluster.client()
    await first.ping()
    later = redis_cluster.client()
    texts = redis_cluster.client(decode_responses=True)
    try:
        # keys in each master's slot range: EVAL finds its key through the command table
        for key in ("fixture:a", "fixture:b", "fixture:c", "fixture:d"):
            await later.set(key, b"v-" + key.encode())
            got = await later.eval("return redis.call('GET', KEYS[1])", 1, key)
            assert got == b"v-" + key.encode()
            assert await texts.eval("return redis.call('GET', KEYS[1])", 1, key) == "v-" + key
        owners = {later.keyslot(k) // 5461 for k in ("fixture:a", "fixture:b", "fixture:c")}
        assert len(owners) >= 2  # the keys are spread over more than one master
        shared = cast(Any, later.commands_parser)
        assert shared.commands is cast(Any, first.commands_parser).commands  # not fetched again
        assert len(shared.commands) > 100 and shared._encoder is not None
        # decode_responses clients parse COMMAND differently: they keep a table of their own
        assert cast(Any, texts.commands_parser).commands is not shared.commands
    finally:
        await later.delete("fixture:a", "fixture:b", "fixture:c", "fixture:d")
        for c in (first, later, texts):
            await c.aclose()
