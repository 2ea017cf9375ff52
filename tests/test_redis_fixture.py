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
