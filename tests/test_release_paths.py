"""Two release paths, each driven exactly (no random timing) and checked by what is left.

1. A claim whose outcome is unknown (the caller cancelled while its ``SET NX`` / claim script
   was out, or the operation timed out) is given back in the background, and looked at a
   second time ``2 x op_timeout_s`` after a first look that found nothing. Here the claim
   lands exactly between the two looks (held by a client wrapper until the first look
   answered), so only the second look can remove it: the lease ``SET NX``, the producer's
   relay claim, and the stream start's lookup-and-claim scripts (timed out with the caller
   gone or waiting; the ``EVAL`` after ``NOSCRIPT`` cancelled).
2. A stream start's lookup-and-claim script (decision 0880, and the generations-checking
   one of decision 0920) whose caller is cancelled while it is out: the script ran on
   Redis and took the lease, and its reply comes back late (``_claim_left`` reads it),
   never (the operation times out: outcome unknown), or was already in when the
   cancellation landed; and the ``EVAL`` sent after ``NOSCRIPT`` whose reply is lost.

Each leaves no lease, and another process is then served. Every wait has a liveness bound;
the leases live 60 s, so their own expiry cannot hide a leak (decision 0990).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

from fixtures.redis import RedisServer
from samplemind_core import CacheConfig, ChatRequest, ChatResponse
from samplemind_core.cache import ResponseCache
from samplemind_core.cache._relay import RELAY_LEASE_SUFFIX
from samplemind_core.cache._store import (
    _GENS_LOOKUP_CLAIM_SCRIPT,
    _GENS_LOOKUP_CLAIM_SHA,
    _LOOKUP_CLAIM_SCRIPT,
    _LOOKUP_CLAIM_SHA,
)
from tests._helpers import until

# Each case waits out a store timeout and the product's second look (0.3-0.7 s, about 9 s for
# the file, little CPU): outside the fast tier like the tests of about 1 CPU s (decision
# 0421), in the full suite and CI.
pytestmark = pytest.mark.slow

LEASE_SUFFIX = ":lease"
LEASE_S = 60.0  # far beyond every wait here: a lease left behind is seen, never expired


def req(text: str = "Which scale is this riff in?") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], provider="ollama", model="m")


def _config(namespace: str, op_timeout_s: float) -> CacheConfig:
    return CacheConfig(namespace=namespace, lease_s=LEASE_S, op_timeout_s=op_timeout_s)


async def _answer(text: str) -> ChatResponse:
    return ChatResponse(text=text, provider="ollama", model="m")


async def _first_look(cache: ResponseCache, looks: list[bool]) -> None:
    """Wait until ``cache`` looked once at the lease (``looks``), or nothing that could is
    left (no batch in flight, no background release): a removed release fails here at once,
    not at a liveness bound."""
    await asyncio.wait_for(until(lambda: not cache._batches), 30)
    await asyncio.sleep(0)  # (the done callbacks of the last batch's futures)
    await asyncio.wait_for(until(lambda: bool(looks) or not cache._releases), 30)
    assert looks, "nothing looked at the lease: its release is missing"


async def _let_land(proxy: Any) -> None:
    """Send what ``proxy`` holds and wait for it (a test that failed before its gate opened
    leaves no task behind on clients that are about to close)."""
    proxy.gate.set()
    if proxy.landed is not None:
        await asyncio.wait_for(asyncio.gather(proxy.landed, return_exceptions=True), 30)


# --------------------------------------------- 1. a lost claim's second look


class _Gated:
    """A client proxy that can hold one command back (``_send_late``): the command is sent
    once ``gate`` is set, as its own task (``landed``), shielded, so a cancellation or a
    timeout of its caller does not stop it; ``out`` is set once it is held."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.out = asyncio.Event()
        self.landed: asyncio.Future[Any] | None = None

    async def _send_late(self, send: Callable[[], Awaitable[Any]]) -> Any:
        async def later() -> Any:
            await self.gate.wait()
            return await send()

        self.landed = asyncio.ensure_future(later())
        self.out.set()
        return await asyncio.shield(self.landed)


class LateSet(_Gated):
    """A client whose lease ``SET NX`` reaches Redis only once ``gate`` is set; the caller's
    await of it can be cancelled (or time out) meanwhile, the ``SET`` still goes (``landed``):
    a command already on its way, in a batch or on another connection."""

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != "set":
            return attr

        async def op(*args: Any, **kwargs: Any) -> Any:
            if not kwargs.get("nx") or self.landed is not None:
                return await attr(*args, **kwargs)
            return await self._send_late(lambda: attr(*args, **kwargs))

        return op


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
async def clients(request: Any) -> AsyncIterator[tuple[Any, Any, Any]]:
    """Two clients of one store ("processes") and a raw one to look at it."""
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        made: list[Any] = [fakeredis.FakeAsyncRedis(server=server) for _ in range(3)]
    else:
        live: RedisServer = request.getfixturevalue("redis_server")
        made = [Redis.from_url(live.url) for _ in range(3)]
    try:
        yield made[0], made[1], made[2]
    finally:
        for c in made:
            await c.aclose()


@pytest.mark.parametrize("way", ["cancelled", "timed out"])
async def test_a_set_that_lands_after_the_first_look_is_removed_by_the_second(
    clients: tuple[Any, Any, Any], way: str
) -> None:
    one, two, raw = clients
    namespace = "rp" + uuid.uuid4().hex[:6]
    # (op_timeout_s: how long the timed-out SET is waited for; the second look comes
    # 2 x op_timeout_s after the first)
    config = _config(namespace, 0.2)
    proxy = LateSet(one)
    a = ResponseCache(proxy, config=config)
    b = ResponseCache(two, config=config)
    lease = a.key_for(req()) + LEASE_SUFFIX
    looks: list[bool] = []
    at: list[float] = []  # (loop time) the first look's end, the second look's start
    cad = a._io_cad
    loop = asyncio.get_running_loop()

    async def watched(key: str, token: bytes) -> bool:
        if key == lease and looks:
            at.append(loop.time())
        deleted = await cad(key, token)
        if key == lease:
            looks.append(deleted)
            if len(looks) == 1:  # the first look is answered: only now does the SET land
                assert proxy.landed is not None
                proxy.gate.set()
                await proxy.landed
                at.append(loop.time())
        return deleted

    a._io_cad = watched  # type: ignore[method-assign]
    try:
        caller = asyncio.ensure_future(a.get_or_call(req(), lambda: _answer("a")))
        await asyncio.wait_for(proxy.out.wait(), 30)
        if way == "cancelled":
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(caller, 30)
        else:  # the SET outlives op_timeout_s: the caller goes on without a lease
            got = await asyncio.wait_for(caller, 30)
            assert got.text == "a" and a.stats().leases == 0
        await _first_look(a, looks)
        await asyncio.wait_for(until(lambda: proxy.landed is not None and proxy.landed.done()), 30)
        assert proxy.landed is not None and proxy.landed.result()  # it did take the lease
        await asyncio.wait_for(until(lambda: not a._releases), 30)
        assert looks == [False, True]  # nothing at the first look, the lease at the second
        # the second look waits out the SET's longest time out (2 x op_timeout_s): a bound of
        # the product, not a speed (asyncio.sleep never wakes early; 1 ms for the clock)
        assert at[1] - at[0] >= 2 * config.op_timeout_s - 0.001
        assert not await raw.exists(lease)
        # another process is served at once: no lease to wait on (it would wait LEASE_S)
        got = await asyncio.wait_for(b.get_or_call(req(), lambda: _answer("b")), 10)
        assert b.stats().lease_waits == 0
        assert got.text == "b" or (got.cached and got.text == "a")
    finally:
        await _let_land(proxy)
        await a.aclose()
        await b.aclose()


# ----------------------------------- 2. a stream start cancelled while its script is out


class HeldScript(_Gated):
    """A real client on which the lookup-and-claim script (``EVALSHA`` or ``EVAL``, whichever
    of ``marks``) runs on Redis, but its reply is held: ``ran`` is set once Redis ran it; the
    reply comes back once ``gate`` is set (never, if it is not: the operation times out or
    its caller is cancelled). ``land_late``: the script is held *before* it is sent instead
    (shielded: a cancellation or a timeout of its caller does not stop it), and sent once
    ``gate`` is set (``landed``: its task; ``out`` is set when it is held)."""

    def __init__(self, inner: Any, marks: set[Any], land_late: bool = False) -> None:
        super().__init__(inner)
        self.marks = marks
        self.land_late = land_late
        self.armed = True
        self.ran = asyncio.Event()

    def _ours(self, command: tuple[Any, ...]) -> bool:
        return (
            self.armed
            and len(command) > 1
            and command[0] in ("EVALSHA", "EVAL")
            and command[1] in self.marks
        )

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "pipeline":  # (the queued path: one pipeline per loop iteration)

            def make(*args: Any, **kwargs: Any) -> Any:
                pipe = attr(*args, **kwargs)
                execute = pipe.execute

                async def wrapped(*a: Any, **kw: Any) -> Any:
                    if any(self._ours(tuple(c)) for c, _ in pipe.command_stack):
                        return await self._held(lambda: execute(*a, **kw))
                    return await execute(*a, **kw)

                pipe.execute = wrapped
                return pipe

            return make
        if name == "execute_command":  # (one command alone)

            async def op(*args: Any, **kwargs: Any) -> Any:
                if self._ours(args):
                    return await self._held(lambda: attr(*args, **kwargs))
                return await attr(*args, **kwargs)

            return op
        return attr

    async def _held(self, send: Callable[[], Awaitable[Any]]) -> Any:
        self.armed = False
        if not self.land_late:
            reply = await send()
            self.ran.set()
            await self.gate.wait()
            return reply

        async def sent() -> Any:
            reply = await send()
            self.ran.set()
            return reply

        return await self._send_late(sent)


@pytest.mark.redis
@pytest.mark.parametrize("gens", [False, True], ids=["lookup-script", "gens-script"])
@pytest.mark.parametrize("reply", ["late", "never", "in", "eval-lost"])
async def test_a_start_cancelled_while_its_script_is_out_leaves_no_stream_lease(
    redis_server: RedisServer, gens: bool, reply: str
) -> None:
    """``late``: the reply comes after the caller left (``_claim_left`` reads it: taken);
    ``never``: the operation times out (outcome unknown); ``in``: the reply was in when the
    cancellation landed; ``eval-lost``: the server forgot the script, the ``EVAL`` sent after
    ``NOSCRIPT`` ran and its reply is lost to the cancellation."""
    sha, script = (
        (_GENS_LOOKUP_CLAIM_SHA, _GENS_LOOKUP_CLAIM_SCRIPT)
        if gens
        else (_LOOKUP_CLAIM_SHA, _LOOKUP_CLAIM_SCRIPT)
    )
    raw = Redis.from_url(redis_server.url)
    inner = Redis.from_url(redis_server.url)
    other = Redis.from_url(redis_server.url)
    proxy = HeldScript(inner, {script} if reply == "eval-lost" else {sha})
    if reply == "in":
        proxy.gate.set()  # (nothing held: the cancellation lands as the reply comes in)
    namespace = "rs" + uuid.uuid4().hex[:6]
    # (op_timeout_s: how long a held reply is waited for when it never comes)
    a = ResponseCache(proxy, config=_config(namespace, 0.3 if reply == "never" else 10.0))
    b = ResponseCache(other, config=_config(namespace, 10.0))
    try:
        await a._fresh_gens()
        entry = a.key_for(req("held"))
        key = entry  # (the feed's key when on_interrupt="raise")
        lease = key + RELAY_LEASE_SUFFIX
        if reply == "eval-lost":
            await raw.script_flush()  # a restart forgot it: NOSCRIPT, then EVAL
        else:
            await raw.script_load(script)
        if gens:
            a._gens_expiry = 0.0  # (generation_ttl_s of quiet: the reload rides the script)
        sent: list[asyncio.Future[Any]] = []
        queued = a._io_queued_soon
        caller: asyncio.Future[Any] | None = None

        def noted(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
            fut = queued(*args, **kwargs)
            sent.append(fut)
            if reply == "in":  # cancelled the moment the reply is in, before it resumes
                assert caller is not None
                fut.add_done_callback(lambda _: caller.cancel())
            return fut

        a._io_queued_soon = noted  # type: ignore[method-assign]
        caller = asyncio.ensure_future(
            a._lookup_or_claim(entry, key, time.perf_counter(), [], gens=gens)
        )
        if reply != "in":
            await asyncio.wait_for(proxy.ran.wait(), 30)
            assert await raw.exists(lease)  # the script took it; its reply is held
            caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, 30)
        a._io_queued_soon = queued  # type: ignore[method-assign]
        assert len(sent) == 1 and (reply != "in" or sent[0].done())
        if reply == "late":
            assert not sent[0].done()  # still out after the caller left
            proxy.gate.set()
        await asyncio.wait_for(asyncio.wait(sent), 30)
        if reply == "never":
            assert sent[0].exception() is not None  # timed out: the outcome is unknown
        elif reply != "eval-lost":
            assert sent[0].result()[0][:2] == [0, 1]  # a miss, claimed by us
        await asyncio.sleep(0)  # (the done callbacks of the reply have run)
        await asyncio.wait_for(until(lambda: not a._releases), 30)
        assert not await raw.exists(lease)
        # another process now leads the stream (no lease to wait on for LEASE_S)
        await b._fresh_gens()
        hit, claim = await asyncio.wait_for(
            b._lookup_or_claim(entry, key, time.perf_counter(), []), 30
        )
        assert hit is None and isinstance(claim, bytes)
        await b._relay_release(key, claim)
        assert not await raw.exists(lease)
    finally:
        await _let_land(proxy)
        await a.aclose()
        await b.aclose()
        for c in (raw, inner, other):
            await c.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("gens", [False, True], ids=["lookup-script", "gens-script"])
@pytest.mark.parametrize("way", ["timed out", "timed out, caller waits", "eval cancelled"])
async def test_a_claim_script_that_lands_after_the_first_look_is_removed_by_the_second(
    redis_server: RedisServer, gens: bool, way: str
) -> None:
    """The lookup-and-claim script sent, its caller gone before it reached Redis, and it
    lands only once the first look at its lease answered: ``timed out``, the batch carrying
    the ``EVALSHA`` timed out after the caller left (``_claim_left``: outcome unknown);
    ``timed out, caller waits``, the same with the caller still there (a miss, no claim);
    ``eval cancelled``, the caller cancelled while its ``EVAL`` after ``NOSCRIPT`` was out.
    Only the lost claim's second look can remove that lease."""
    sha, script = (
        (_GENS_LOOKUP_CLAIM_SHA, _GENS_LOOKUP_CLAIM_SCRIPT)
        if gens
        else (_LOOKUP_CLAIM_SHA, _LOOKUP_CLAIM_SCRIPT)
    )
    raw = Redis.from_url(redis_server.url)
    inner = Redis.from_url(redis_server.url)
    other = Redis.from_url(redis_server.url)
    proxy = HeldScript(inner, {script} if way == "eval cancelled" else {sha}, land_late=True)
    namespace = "rl" + uuid.uuid4().hex[:6]
    config = _config(namespace, 0.2)  # (the batch's time out; the second look 0.4 s later)
    a = ResponseCache(proxy, config=config)
    b = ResponseCache(other, config=_config(namespace, 10.0))
    try:
        await a._fresh_gens()
        entry = a.key_for(req("lands late"))
        key = entry
        lease = key + RELAY_LEASE_SUFFIX
        if way == "eval cancelled":
            await raw.script_flush()  # NOSCRIPT, then EVAL
        else:
            await raw.script_load(script)
        if gens:
            a._gens_expiry = 0.0
        looks: list[bool] = []
        cad = a._io_cad

        async def watched(lease_key: str, token: bytes) -> bool:
            deleted = await cad(lease_key, token)
            if lease_key == lease:
                looks.append(deleted)
                if len(looks) == 1:  # the first look answered: only now does the script land
                    assert proxy.landed is not None
                    proxy.gate.set()
                    await proxy.landed
            return deleted

        a._io_cad = watched  # type: ignore[method-assign]
        caller = asyncio.ensure_future(
            a._lookup_or_claim(entry, key, time.perf_counter(), [], gens=gens)
        )
        await asyncio.wait_for(proxy.out.wait(), 30)
        assert not await raw.exists(lease)  # (held before it was sent)
        if way == "timed out, caller waits":
            assert await asyncio.wait_for(caller, 30) == (None, None)  # a miss, not claimed
        else:
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(caller, 30)
        await _first_look(a, looks)
        await asyncio.wait_for(until(lambda: proxy.landed is not None and proxy.landed.done()), 30)
        assert proxy.ran.is_set()  # it did run on Redis, after the first look
        await asyncio.wait_for(until(lambda: not a._releases), 30)
        assert looks == [False, True]
        assert not await raw.exists(lease)
        await b._fresh_gens()
        hit, claim = await asyncio.wait_for(
            b._lookup_or_claim(entry, key, time.perf_counter(), []), 30
        )
        assert hit is None and isinstance(claim, bytes)
        await b._relay_release(key, claim)
    finally:
        await _let_land(proxy)
        await a.aclose()
        await b.aclose()
        for c in (raw, inner, other):
            await c.aclose()


class LateClaim(_Gated):
    """A client whose relay claim (the pipeline with the lease's ``SET NX``) is held before it
    is sent (shielded) and sent once ``gate`` is set (``landed``; ``out`` once held)."""

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != "pipeline":
            return attr

        def make(*args: Any, **kwargs: Any) -> Any:
            pipe = attr(*args, **kwargs)
            execute = pipe.execute

            async def wrapped(*a: Any, **kw: Any) -> Any:
                claim = any(c[0] == "SET" and "NX" in c for c, _ in pipe.command_stack)
                if not claim or self.landed is not None:
                    return await execute(*a, **kw)
                return await self._send_late(lambda: execute(*a, **kw))

            pipe.execute = wrapped
            return pipe

        return make


@pytest.mark.parametrize("way", ["cancelled", "timed out"])
async def test_a_relay_claim_that_lands_after_the_first_look_is_removed_by_the_second(
    clients: tuple[Any, Any, Any], way: str
) -> None:
    """The producer's relay claim (``SET NX`` with ``EXISTS``, where the lookup-and-claim
    script does not run: a cluster, no scripting), its caller cancelled or its operation timed
    out before it reached Redis, landing only once the first look answered."""
    one, two, raw = clients
    namespace = "rc" + uuid.uuid4().hex[:6]
    config = _config(namespace, 0.2)
    proxy = LateClaim(one)
    a = ResponseCache(proxy, config=config)
    b = ResponseCache(two, config=config)
    key = a.key_for(req("relay claim")) + "|s"
    lease = key + RELAY_LEASE_SUFFIX
    looks: list[bool] = []
    cad = a._io_cad

    async def watched(lease_key: str, token: bytes) -> bool:
        deleted = await cad(lease_key, token)
        if lease_key == lease:
            looks.append(deleted)
            if len(looks) == 1:
                assert proxy.landed is not None
                proxy.gate.set()
                await proxy.landed
        return deleted

    a._io_cad = watched  # type: ignore[method-assign]
    try:
        claim = asyncio.ensure_future(a._relay_claim(key))
        await asyncio.wait_for(proxy.out.wait(), 30)
        if way == "cancelled":
            claim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(claim, 30)
        else:
            assert await asyncio.wait_for(claim, 30) == (None, None)  # no relay: read alone
        await _first_look(a, looks)
        await asyncio.wait_for(until(lambda: proxy.landed is not None and proxy.landed.done()), 30)
        assert proxy.landed is not None and proxy.landed.result()[0]  # it took the lease
        await asyncio.wait_for(until(lambda: not a._releases), 30)
        assert looks == [False, True]
        assert not await raw.exists(lease)
        got, _ = await asyncio.wait_for(b._relay_claim(key), 30)  # another process leads
        assert isinstance(got, bytes)
        await b._relay_release(key, got)
    finally:
        await _let_land(proxy)
        await a.aclose()
        await b.aclose()
