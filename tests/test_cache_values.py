"""What Redis holds is read like input (issue 23 item 3): a value is not trusted for where it
lies. Run on fakeredis, a real redis-server and a real cluster (the fixtures of test_cache).
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
import orjson
import pytest

from samplemind_core import ChatResponse
from samplemind_core._cache import envelope
from samplemind_core.cache import ENVELOPE_VERSION, ResponseCache
from tests.test_cache import Factory, client, make_cache, req, resp

__all__ = ["client", "make_cache"]  # the fixtures, imported to be used here


def _fp(cache: ResponseCache, key: str) -> str:
    return key[key.rfind(":") + 1 :]


async def test_a_valid_envelope_of_another_request_is_a_counted_miss_and_removed(
    make_cache: Factory, client: Any
) -> None:
    cache = make_cache()
    a, b = req("question A"), req("question B")
    assert await cache.set(b, resp("answer B"))
    await client.set(cache.key_for(a), await client.get(cache.key_for(b)))  # B's value under A
    assert await cache.get(a) is None  # never B's answer
    st = cache.stats()
    assert (st.foreign, st.value_errors, st.misses, st.hits, st.backend_errors) == (1, 1, 1, 0, 0)
    assert await client.exists(cache.key_for(a)) == 0  # discarded
    hit = await cache.get(b)
    assert hit is not None and hit.text == "answer B"  # the real owner is untouched

    await client.set(cache.key_for(a), await client.get(cache.key_for(b)))
    got = await cache.get_or_call(a, lambda: _ready(resp("answer A")))
    assert got.text == "answer A" and not got.cached and cache.stats().foreign == 2
    assert (await cache.get(a)).text == "answer A"  # type: ignore[union-attr]


async def _ready(response: ChatResponse) -> ChatResponse:
    return response


def _v2(fp: str, **changes: Any) -> list[Any]:
    body = ["text", "stop", [], 1, 2, None, 1, {}]
    env = [ENVELOPE_VERSION, fp, 1.0, "ollama", "m", 1.0, 0.0, 0, body]
    for index, value in changes.items():
        i = int(index[1:])
        if i >= 100:
            body[i - 100] = value
        else:
            env[i] = value
    return env


FOREIGN = {
    "empty": lambda fp: b"",
    "garbage": lambda fp: b"\x00\xff garbage \xc1",
    "json-object": lambda fp: orjson.dumps({"text": "hi"}),
    "msgpack-int": lambda fp: msgpack.packb(7),
    "version-1": lambda fp: msgpack.packb(
        ["smc/1", 1.0, "ollama", "m", 1.0, 0.0, 0, ["old", None, [], 0, 0, None, 1, {}]]
    ),
    "short": lambda fp: msgpack.packb(_v2(fp)[:5]),
    "text-int": lambda fp: msgpack.packb(_v2(fp, f100=7)),
    "provider-none": lambda fp: msgpack.packb(_v2(fp, f3=None)),
    "gen-bool": lambda fp: orjson.dumps(_v2(fp, f7=True)),
    "gen-str": lambda fp: orjson.dumps(_v2(fp, f7="0")),
    "latency-str": lambda fp: orjson.dumps(_v2(fp, f5="1.0")),
    "tokens-float": lambda fp: orjson.dumps(_v2(fp, f103=1.5)),
    "metadata-list": lambda fp: orjson.dumps(_v2(fp, f107=[1])),
    "tool-args-list": lambda fp: orjson.dumps(_v2(fp, f102=[["f", [1], None]])),
    "tool-short": lambda fp: orjson.dumps(_v2(fp, f102=[["f"]])),
    "fp-int": lambda fp: orjson.dumps(_v2(fp, f1=7)),
    "fp-other": lambda fp: orjson.dumps(_v2(fp[:-1] + "0" if fp[-1] != "0" else fp[:-1] + "1")),
    "too-long": lambda fp: orjson.dumps([*_v2(fp), None, None]),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
async def test_whatever_lies_under_our_key_never_answers_and_never_raises(
    make_cache: Factory, client: Any, kind: str
) -> None:
    cache = make_cache()
    key = cache.key_for(req())
    await client.set(key, FOREIGN[kind](_fp(cache, key)))
    assert await cache.get(req()) is None
    got = await cache.get_or_call(req(), lambda: _ready(resp("paid")))
    assert got.text == "paid" and not got.cached
    st = cache.stats()
    assert st.value_errors == 1 and st.backend_errors == 0 and st.misses == 2
    assert st.foreign == (1 if kind in ("fp-other", "fp-int") else 0)  # answers another
    assert (await cache.get(req())).text == "paid"  # type: ignore[union-attr]


async def test_random_bytes_under_our_key_never_answer(make_cache: Factory, client: Any) -> None:
    cache = make_cache()
    rng = random.Random(3)
    key = cache.key_for(req())
    for _ in range(50):
        await client.set(key, rng.randbytes(rng.randrange(1, 300)))
        assert await cache.get(req()) is None
    assert cache.stats().value_errors == 50 and cache.stats().hits == 0


@pytest.mark.parametrize("kind", ["hash", "list", "set", "zset"])
async def test_other_redis_types_under_our_key_are_counted_misses(
    make_cache: Factory, client: Any, kind: str
) -> None:
    cache = make_cache()
    key = cache.key_for(req())
    write = {
        "hash": lambda: client.hset(key, "f", "v"),
        "list": lambda: client.rpush(key, "v"),
        "set": lambda: client.sadd(key, "v"),
        "zset": lambda: client.zadd(key, {"v": 1.0}),
    }
    await write[kind]()
    assert await cache.get(req()) is None
    assert (await cache.get_or_call(req(), lambda: _ready(resp("paid")))).text == "paid"
    st = cache.stats()
    assert st.value_errors >= 1 and st.backend_errors == 0 and cache.healthy


@pytest.mark.parametrize("field", ["*", "ollama"])
@pytest.mark.parametrize("value", ["seven", "", "1e3", "9" * 30, "\xff"])
async def test_a_garbage_generation_is_ignored_and_counted(
    make_cache: Factory, client: Any, field: str, value: str
) -> None:
    cache = make_cache()
    assert await cache.set(req(), resp("kept"))
    await client.hset(cache._keys.gen_key, field, value)
    cache._gens_expiry = 0.0  # reload the generations on the next call
    hit = await cache.get(req())  # the last known generation (0) is kept
    assert hit is not None and hit.text == "kept"
    got = await cache.get_or_call(req("other"), lambda: _ready(resp("paid")))
    assert got.text == "paid"
    st = cache.stats()
    assert st.foreign == 1 and st.backend_errors == 0 and cache.healthy


async def test_a_generation_key_of_another_type_keeps_the_cache_working(
    make_cache: Factory, client: Any
) -> None:
    cache = make_cache()
    await client.set(cache._keys.gen_key, b"not a hash")
    assert await cache.set(req(), resp("stored"))
    assert (await cache.get(req())).text == "stored"  # type: ignore[union-attr]
    st = cache.stats()
    assert st.value_errors == 1 and st.backend_errors == 0 and st.bypassed == 0 and cache.healthy


async def test_a_value_with_the_optional_trailing_field_is_served(
    make_cache: Factory, client: Any
) -> None:
    cache = make_cache()
    key = cache.key_for(req())
    raw = envelope.encode(resp("with extra"), 0, "msgpack", _fp(cache, key), [[0, 4], [4, 10]])
    await client.set(key, raw)
    hit = await cache.get(req())
    assert hit is not None and hit.text == "with extra"
    assert envelope.decode(raw, _fp(cache, key))[4] == [[0, 4], [4, 10]]
    assert envelope.decode(cache._encode(resp(), key))[4] is None
