"""``samplemind-cache stats`` shows what a clear invalidated: generations and entries per provider.

Through the console script's ``main([...])`` in-process: against fakeredis (the CLI's client
factory returns a client of one shared fake server), then once against a real redis-server and
once against a local Redis Cluster (the values of unpinned entries are read with pipelined GETs
routed by slot). An entry counts for the provider that answered it, also when the request
pinned none (its stored value says which), so ``clear --provider openai`` visibly empties
OpenAI's count and bumps its generation, and a clear made elsewhere without a purge shows as
stale entries.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from fixtures.redis import ExternalRedis, LocalRedisCluster, RedisServer
from samplemind_core import _cli
from samplemind_core._cli import main

PROVIDERS = ("ollama", "gemini", "anthropic", "openai")


def entry(i: int, answered_by: str, pinned: str | None = None) -> str:
    request: dict[str, Any] = {"messages": [{"role": "user", "content": f"key of loop {i}?"}]}
    if pinned:
        request["provider"] = pinned
    return json.dumps(
        {
            "request": request,
            "response": {"text": f"A minor {i}", "provider": answered_by, "model": "m"},
        }
    )


def warm_file(tmp: Path) -> Path:
    """10 unpinned entries answered by openai, 6 by anthropic, 4 pinned to ollama."""
    lines = [entry(i, "openai") for i in range(10)]
    lines += [entry(100 + i, "anthropic") for i in range(6)]
    lines += [entry(200 + i, "ollama", pinned="ollama") for i in range(4)]
    f = tmp / "warm.jsonl"
    f.write_text("\n".join(lines) + "\n")
    return f


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def stats(*conn: str) -> dict[str, Any]:
    code, out, err = run("stats", *conn)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def counts(doc: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    """``{provider: (generation, entries, stale_entries)}``."""
    return {
        p: (v["generation"], v["entries"], v["stale_entries"]) for p, v in doc["providers"].items()
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> fakeredis.FakeServer:
    """The CLI's Redis clients all talk to this one fake server."""
    server = fakeredis.FakeServer()
    monkeypatch.setattr(
        _cli, "_client", lambda url, cluster: fakeredis.FakeAsyncRedis(server=server)
    )
    return server


def test_stats_counts_entries_per_answering_provider(tmp_path: Path, fake: Any) -> None:
    conn = ("--redis-url", "redis://fake", "--namespace", "ns")
    code, out, err = run("warm", str(warm_file(tmp_path)), *conn)
    assert code == 0, err
    assert "warmed 20 of 20 entries" in out
    doc = stats(*conn)
    assert (doc["entries"], doc["stale_entries"], doc["unreadable_entries"]) == (20, 0, 0)
    assert doc["generations"] == {} and doc["namespace_generation"] == 0
    assert counts(doc) == {
        "ollama": (0, 4, 0),
        "gemini": (0, 0, 0),
        "anthropic": (0, 6, 0),
        "openai": (0, 10, 0),
    }


def test_clear_provider_shows_in_stats_unpinned_entries_included(tmp_path: Path, fake: Any) -> None:
    conn = ("--redis-url", "redis://fake", "--namespace", "ns")
    assert run("warm", str(warm_file(tmp_path)), *conn)[0] == 0
    code, out, err = run("clear", "--provider", "openai", *conn)
    assert code == 0, err
    # the 10 openai entries were unpinned: told by their value, invalidated and purged
    assert "generation 'openai' 0 -> 1; 10 entries invalidated, 0 still stale" in out
    assert "10 current entries left" in out
    doc = stats(*conn)
    assert doc["generations"] == {"openai": 1}
    assert (doc["entries"], doc["stale_entries"]) == (10, 0)
    assert counts(doc)["openai"] == (1, 0, 0)
    assert counts(doc)["anthropic"] == (0, 6, 0) and counts(doc)["ollama"] == (0, 4, 0)
    client = fakeredis.FakeRedis(server=fake)
    assert sum(1 for _ in client.scan_iter("*:ns:*")) == 10 + 1  # 10 entries + the gen hash


def test_a_clear_made_elsewhere_shows_as_stale_until_purged(tmp_path: Path, fake: Any) -> None:
    """Another process's clear (the O(1) generation bump, its purge not run yet): the entries
    it invalidated are stale in stats, per provider, and ``clear`` of the same purges them."""
    conn = ("--redis-url", "redis://fake", "--namespace", "ns")
    assert run("warm", str(warm_file(tmp_path)), *conn)[0] == 0
    client = fakeredis.FakeRedis(server=fake)
    gen_key = "sm:ns:gen"  # the default key prefix; created by the first clear
    client.hincrby(gen_key, "anthropic", 1)
    doc = stats(*conn)
    assert (doc["entries"], doc["stale_entries"]) == (14, 6)
    assert counts(doc)["anthropic"] == (1, 0, 6)
    assert counts(doc)["openai"] == (0, 10, 0)
    client.hincrby(gen_key, "*", 1)  # everything, as `clear` without --provider would
    doc = stats(*conn)
    assert (doc["entries"], doc["stale_entries"], doc["namespace_generation"]) == (0, 20, 1)
    assert counts(doc)["openai"] == (0, 0, 10) and counts(doc)["ollama"] == (0, 0, 4)
    code, out, err = run("clear", *conn)  # the purge of this clear removes all of them
    assert code == 0, err
    assert "0 still stale after the purge; 0 current entries left" in out
    assert stats(*conn)["stale_entries"] == 0


def test_a_foreign_value_is_unreadable_not_an_entry(tmp_path: Path, fake: Any) -> None:
    conn = ("--redis-url", "redis://fake", "--namespace", "ns")
    assert run("warm", str(warm_file(tmp_path)), *conn)[0] == 0
    client = fakeredis.FakeRedis(server=fake)
    key = next(k for k in client.scan_iter("*:ns:*:_:*"))
    client.set(key, b"not an envelope")
    doc = stats(*conn)
    assert (doc["entries"], doc["unreadable_entries"]) == (19, 1)


def test_stats_help_says_what_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["stats", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "stale (invalidated by a clear, not purged yet)" in text
    assert "per provider" in text and "pinned none" in text


@pytest.mark.redis
def test_clear_provider_then_stats_on_a_real_redis(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis
) -> None:
    conn = ("--redis-url", redis_server.url, "--namespace", f"st{uuid.uuid4().hex[:10]}")
    assert run("warm", str(warm_file(tmp_path)), *conn)[0] == 0
    assert counts(stats(*conn))["openai"] == (0, 10, 0)
    code, out, err = run("clear", "--provider", "openai", *conn)
    assert code == 0, err
    assert "10 entries invalidated, 0 still stale" in out
    doc = stats(*conn)
    assert counts(doc)["openai"] == (1, 0, 0) and counts(doc)["anthropic"] == (0, 6, 0)
    assert (doc["entries"], doc["stale_entries"]) == (10, 0)
    r = redis_server.sync_client()
    try:
        (gen_key,) = list(r.scan_iter(f"*:{conn[-1]}:gen"))
        r.hincrby(gen_key, "anthropic", 1)  # another process's clear, its purge not run yet
    finally:
        r.close()
    doc = stats(*conn)
    assert counts(doc)["anthropic"] == (1, 0, 6) and doc["stale_entries"] == 6


@pytest.mark.cluster
def test_clear_provider_then_stats_on_a_cluster(
    tmp_path: Path, redis_cluster: LocalRedisCluster
) -> None:
    conn = (
        "--redis-url", redis_cluster.urls[0], "--cluster",
        "--namespace", f"st{uuid.uuid4().hex[:10]}",
    )  # fmt: skip
    assert run("warm", str(warm_file(tmp_path)), *conn)[0] == 0
    assert counts(stats(*conn))["openai"] == (0, 10, 0)
    code, out, err = run("clear", "--provider", "openai", *conn)
    assert code == 0, err
    assert "10 entries invalidated, 0 still stale" in out
    doc = stats(*conn)
    assert counts(doc)["openai"] == (1, 0, 0) and doc["entries"] == 10


async def test_cancelled_stats_and_purge_give_back_every_slot() -> None:
    """``info()`` and ``purge()`` cancelled at random points (mid-scan, mid-pipeline): the
    caller gets CancelledError and every connection slot is free again."""
    import asyncio
    import random

    from samplemind_core import ChatRequest, ChatResponse
    from samplemind_core.cache import ResponseCache
    from tests._helpers import until

    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    try:
        cache = ResponseCache(client)
        pairs = [
            (
                ChatRequest(messages=[{"role": "user", "content": f"tempo of loop {i}?"}]),
                ChatResponse(text=f"{90 + i} BPM", provider=PROVIDERS[i % 4], model="m"),
            )
            for i in range(1200)
        ]
        assert await cache.warm(pairs) == 1200
        await client.hincrby(cache._keys.gen_key, "openai", 1)  # so purge reads values too
        rng = random.Random(7)
        cancelled = 0
        for i in range(16):
            op = cache.info() if i % 2 == 0 else cache.purge()
            task = asyncio.ensure_future(op)
            for _ in range(rng.randrange(1, 10)):
                await asyncio.sleep(0)
            if task.done():  # finished before the cancellation came
                await task
                continue
            task.cancel()
            with pytest.raises(asyncio.CancelledError):  # never swallowed (redis-py can)
                await asyncio.wait_for(task, 30)
            cancelled += 1
            await until(lambda: cache._slots.free == cache._slots.size)
        assert cancelled >= 8
        info = await asyncio.wait_for(cache.info(), 30)
        assert info["entries"] == 900  # the 300 openai entries are stale or purged
        assert info["providers"]["openai"]["entries"] == 0
        assert info["providers"]["openai"]["stale_entries"] == info["stale_entries"] <= 300
        assert await asyncio.wait_for(cache.purge(), 30) == info["stale_entries"]
        assert (await cache.info())["providers"]["openai"] == {
            "generation": 1,
            "entries": 0,
            "stale_entries": 0,
        }
        assert cache._slots.free == cache._slots.size
    finally:
        await client.aclose()
