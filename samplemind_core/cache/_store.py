"""Store I/O: the only code that touches Redis (connection slots, deadlines, batched lookups).

Every command goes through :meth:`_StoreIO._bounded`: at most
``CacheConfig.max_connections`` operations at once (the others wait their
turn for up to ``pool_timeout_s``), each under ``op_timeout_s`` measured on
the event loop's responsive clock (``samplemind_core._cache.deadlines``).
Lookups started in one event-loop iteration while another is in flight go
out together as one pipeline (``CacheConfig.batch_gets``), each caller on a
future of its own, so one caller's cancellation touches nobody else's. The
stream path's small writes (a relay lease's ``SET NX``, ``UNLINK``, a relay's
``XADD`` entries: :meth:`_StoreIO._io_queued`) join the same queue, so that 100
concurrent streams' misses cost a few pipelines, not hundreds of commands.
Every error of the store is translated in one place (``_errors``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import redis.exceptions

from .._cache.deadlines import _OpTimeouts, _Slots
from .._config import CacheConfig
from .._exceptions import CacheBackendError, CacheError
from ._errors import _per_key, _PoolExhausted, _Skipped, _store_error, _store_errors
from ._health import _Health

__all__ = ["Command", "Commands", "_StoreIO"]

Command = tuple[Any, ...]
"""One Redis command for :meth:`_StoreIO._io_queued`, as ``execute_command`` takes it:
``("SET", key, b"1", "NX", "PX", 10000)`` (one key per command: a cluster routes each)."""

_CAD_SCRIPT: Final = (
    b"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    b"else return 0 end"
)
"""Compare-and-delete of one key (a lease given back only by the holder of its token)."""
_CAD_SHA: Final = hashlib.sha1(_CAD_SCRIPT).hexdigest()
_CAP_SCRIPT: Final = (
    b"if redis.call('get', KEYS[1]) == ARGV[1] then "
    b"return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
"""Compare-and-pexpire of one key (a lease extended only by the holder of its token)."""
_CAP_SHA: Final = hashlib.sha1(_CAP_SCRIPT).hexdigest()
_CLAIM_SCRIPT: Final = (
    b"local taken = redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) "
    b"local old = 0 "
    b"if taken then old = redis.call('unlink', KEYS[2]) end "
    b"return {taken and 1 or 0, old, redis.call('exists', KEYS[3])}"
)
"""A stream relay's claim on one server (decision 0721): the lease ``KEYS[1]`` taken with
``SET NX PX`` (value ``ARGV[1]``, ``ARGV[2]`` ms), the old relay stream ``KEYS[2]``
unlinked when it was, and whether the entry ``KEYS[3]`` exists: ``{taken, unlinked,
stored}``, what ``SET NX``, ``EXISTS``, ``EXISTS`` and a later ``UNLINK`` told before."""
_CLAIM_SHA: Final = hashlib.sha1(_CLAIM_SCRIPT).hexdigest()
_LOOKUP_CLAIM_SCRIPT: Final = (
    b"local v = redis.call('get', KEYS[1]) "
    b"if v then return {1, v} end "
    b"local taken = redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) "
    b"if taken then redis.call('unlink', KEYS[3]) return {0, 1} end "
    b"return {0, 0}"
)
"""A stream's lookup and relay claim in one command on one server (decision 0880): the entry
``KEYS[1]`` read; when it is there, ``{1, value}`` and nothing else done; otherwise the lease
``KEYS[2]`` taken with ``SET NX PX`` (value ``ARGV[1]``, ``ARGV[2]`` ms), the old relay
stream ``KEYS[3]`` unlinked when it was, and ``{0, taken}``: what ``GET`` then
:data:`_CLAIM_SCRIPT` told, with no moment between the look and the claim."""
_LOOKUP_CLAIM_SHA: Final = hashlib.sha1(_LOOKUP_CLAIM_SCRIPT).hexdigest()
_GENS_LOOKUP_CLAIM_SCRIPT: Final = (
    b"local g0, p0, f = string.match(KEYS[1], ':(%d+)%.(%d+):([^:]*):[^:]*$') "
    b"local h = redis.call('hgetall', KEYS[4]) "
    b"local g, p = '0', '0' "
    b"if f == '_' then f = '' end "
    b"for i = 1, #h, 2 do "
    b"if h[i] == '*' then g = h[i + 1] elseif h[i] == f then p = h[i + 1] end "
    b"end "
    b"if g ~= g0 or p ~= p0 then return {2, h} end "
    b"local v = redis.call('get', KEYS[1]) "
    b"if v then return {1, v, h} end "
    b"local taken = redis.call('set', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) "
    b"if taken then redis.call('unlink', KEYS[3]) return {0, 1, h} end "
    b"return {0, 0, h}"
)
""":data:`_LOOKUP_CLAIM_SCRIPT` that first reads the generation hash ``KEYS[4]`` (decision
0920). The generations the entry's key ``KEYS[1]`` was built under are read from the key
itself (``...:{G}.{P}:{provider or '_'}:{fingerprint}``); when the hash's namespace field
``*`` is not ``G``, or the provider's field is not ``P`` (a missing field reads ``'0'``; a
key that does not parse never matches) -- the key was built under generations that are not
the store's -- ``{2, hash}`` and nothing else done; otherwise what
:data:`_LOOKUP_CLAIM_SCRIPT` answers, with the hash (``HGETALL``'s flat list) as a third
element. Atomic: no answer of an old generation is served, no lease of one taken. (The
expected generations are not sent as arguments: every argument costs the client's command
packer about a microsecond, 100 starts at once pay it in their queue.)"""
_GENS_LOOKUP_CLAIM_SHA: Final = hashlib.sha1(_GENS_LOOKUP_CLAIM_SCRIPT).hexdigest()

logger = logging.getLogger("samplemind_core.cache")


def _no_scripting(exc: BaseException | None) -> bool:
    """``exc`` says the server has no Lua scripting (e.g. fakeredis without ``lupa``)."""
    if not isinstance(exc, redis.exceptions.ResponseError) or isinstance(
        exc, redis.exceptions.NoScriptError
    ):
        return False
    text = str(exc).lower()
    return "unknown command" in text and ("eval" in text or "script" in text)


Commands = tuple[Command, ...] | Callable[[], tuple[Command, ...]]
"""What :meth:`_StoreIO._io_queued_soon` takes: the commands, or a function that returns
them, called when the pipeline that carries them is built (so that what its caller adds
until then rides in the same round trip: the relay's entries, :class:`RelayWriter`)."""

_Item = tuple[str, "Commands | None", "asyncio.Future[Any]"]
"""A queued operation: its (first) key, its commands (None: a GET of the key; a function:
built when sent), its future."""


def _still_cancelled() -> None:
    """Raise ``CancelledError`` when the current task has a cancellation pending.

    redis-py (8.2) can swallow a cancellation that lands while it reads a reply
    (it drops the connection and returns or retries): a bulk command checks after
    each await so the caller's cancellation still propagates. Inside an
    ``asyncio.timeout`` block, the timeout's own swallowed cancellation becomes
    its ``TimeoutError`` the same way.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class _StoreIO(_Health):
    """The ``_io_*`` methods: one Redis command (or pipeline) each, bounded and translated."""

    _redis: Any

    def _init_store(self, redis: Any, config: CacheConfig) -> None:
        self._redis = redis
        self._timeouts = _OpTimeouts(config.op_timeout_s)
        pool_size = getattr(getattr(redis, "connection_pool", None), "max_connections", None)
        slots = config.max_connections
        if isinstance(pool_size, int) and 0 < pool_size < slots:
            slots = pool_size  # never more operations at once than the client has connections
        self._slots = _Slots(slots, config.pool_timeout_s, self._timeouts)
        self._bulk_timeout = config.bulk_timeout_s
        # lookups started in one event-loop iteration go out together (CacheConfig.batch_gets)
        self._batch_gets = config.batch_gets
        self._batch_max = config.get_batch_max
        self._get_queue: list[_Item] = []
        self._queue_loop: asyncio.AbstractEventLoop | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._gets_in_flight = 0  # GET operations sent and not answered yet (single or batch)
        self._scripting = True  # False once the server said it has no EVAL (see _io_cad)

    async def _wait_slot(self) -> None:
        """Wait for a connection slot (counted); :class:`_PoolExhausted` when none comes in time."""
        self._stats.pool_waits += 1
        if not await self._slots.wait():
            raise _PoolExhausted(
                f"no redis connection slot within {self._slots.timeout * 1000:.0f} ms"
            )

    async def _bounded(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)`` holding a connection slot, under ``op_timeout_s``.

        The slot wait has its own deadline (``pool_timeout_s``, see
        :class:`_Slots`); the operation's deadline (:class:`_OpTimeouts`) starts
        once a slot is held. A cancellation made by that deadline becomes
        :class:`CacheBackendError` and is undone (``Task.uncancel``), whatever
        the client turned it into; any other cancellation (the caller's own)
        propagates, also when the client swallowed it (redis-py may return a
        reply, or raise a connection error, after the task was cancelled): a
        task with a cancellation still pending leaves with ``CancelledError``.
        """
        slots = self._slots
        if not slots.take():
            await self._wait_slot()
            if self._clock() < self._skip_until:
                slots.release()
                raise _Skipped("redis failed while this operation waited for a slot")
        timeouts = self._timeouts
        try:
            task = timeouts.enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                if not timeouts.exit(task):
                    if task.cancelling() and not isinstance(exc, asyncio.CancelledError):
                        raise asyncio.CancelledError from exc  # the client hid the caller's
                    raise  # the caller's own cancellation, or an error of the store
                if task.uncancel() == 0:
                    raise CacheBackendError(
                        f"redis operation timed out after {timeouts.timeout * 1000:.0f} ms"
                    ) from None
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise asyncio.CancelledError from None  # the caller cancelled too
            if timeouts.exit(task):  # the client swallowed our cancellation: undo it
                task.uncancel()
            if task.cancelling():  # it swallowed the caller's: the caller is leaving
                raise asyncio.CancelledError
            return result
        finally:
            slots.release()

    async def _io_get(self, key: str) -> bytes | None:
        if not self._batch_gets or not (self._gets_in_flight or self._get_queue):
            # Alone (no other lookup in flight): sent at once, as one GET; batching would
            # only add a loop iteration. Lookups that come while it is out are batched.
            self._gets_in_flight += 1
            try:
                with _store_errors:
                    return await self._bounded(self._get_one, key)  # type: ignore[no-any-return]
            finally:
                self._gets_in_flight -= 1
        return await self._enqueue(key, None)  # type: ignore[no-any-return]

    async def _io_queued(self, key: str, commands: tuple[Command, ...]) -> list[Any]:
        """Run ``commands`` (``key``: the first one's key) and return their replies in order.

        Alone (nothing queued or in flight) they are sent at once (one command, or one
        pipeline); otherwise they join the batch of the current event-loop iteration,
        with the lookups (one pipeline for all, each caller on a future of its own).
        Writes are never sent twice (no retry on a stale connection, unlike reads).
        A reply that is an error raises that error (as ours); a failed batch raises
        :class:`~samplemind_core.CacheBackendError` for every caller in it.
        """
        if not self._batch_gets or not (self._gets_in_flight or self._get_queue):
            self._gets_in_flight += 1
            try:
                with _store_errors:
                    return await self._bounded(self._run_alone, commands)  # type: ignore[no-any-return]
            finally:
                self._gets_in_flight -= 1
        return await self._enqueue(key, commands)  # type: ignore[no-any-return]

    def _io_queued_soon(self, key: str, commands: Commands) -> asyncio.Future[Any]:
        """:meth:`_io_queued` queued in any case (sent at the end of this loop iteration,
        with whatever else is queued meanwhile, e.g. the caller's next lookup): a future
        of the replies. Await it (or cancel it) before leaving. Without ``batch_gets``, a
        task that sends them alone. ``commands`` may be a function returning them: it is
        called when the pipeline is built (at once without ``batch_gets``), never twice."""
        if not self._batch_gets:
            if callable(commands):
                commands = commands()
            return asyncio.ensure_future(self._io_queued(key, commands))
        return self._enqueue(key, commands)

    def _enqueue(self, key: str, commands: Commands | None) -> asyncio.Future[Any]:
        # Queue the key; one callback at the end of this loop iteration sends the queue.
        # Each caller awaits a future of its own: its cancellation touches nobody else's.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        queue = self._get_queue
        if not queue or self._queue_loop is not loop:
            queue = self._get_queue = []  # (a queue left on a closed loop is dropped)
            self._queue_loop = loop
            loop.call_soon(self._flush_gets, queue)
        queue.append((key, commands, fut))
        return fut

    def _flush_gets(self, queue: list[_Item]) -> None:
        if self._get_queue is queue:
            self._get_queue = []
        loop = asyncio.get_running_loop()
        size = self._batch_max
        parts = [queue]
        where = self._where
        if where is not None and len(queue) > 1:
            # A cluster: one batch per node (the client splits a pipeline by node anyway),
            # so that a sick node's batch fails, and is backed off, alone.
            groups: dict[str | None, list[_Item]] = {}
            for item in queue:
                groups.setdefault(where(item[0]), []).append(item)
            parts = list(groups.values())
        for part in parts:
            for i in range(0, len(part), size):
                task = loop.create_task(self._get_batch(part[i : i + size]))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)

    async def _get_batch(self, batch: list[_Item]) -> None:
        """One store operation for the items of ``batch``; every caller's future gets its outcome."""
        live = [item for item in batch if not item[2].done()]  # not cancelled meanwhile
        if not live:
            return
        task = asyncio.current_task()
        assert task is not None
        waiting = len(live)

        def left(fut: asyncio.Future[Any]) -> None:
            nonlocal waiting
            if fut.cancelled():
                waiting -= 1
                if waiting == 0:
                    task.cancel()  # every caller left: stop, and give the slot back

        for _, _, fut in live:
            fut.add_done_callback(left)
        self._gets_in_flight += 1
        try:
            with _store_errors:
                if all(commands is None for _, commands, _ in live):
                    if len(live) == 1:
                        results = [await self._bounded(self._get_one, live[0][0])]
                    else:
                        results = await self._bounded(self._get_many, [key for key, _, _ in live])
                else:
                    results = await self._bounded(self._run_many, live)
        except BaseException as exc:
            # Back off now, before a waiter handed our slot sends its batch (as an unbatched
            # lookup's own caller does); each caller then counts its key's miss and error.
            backed_off = False
            if isinstance(exc, CacheBackendError) and not isinstance(
                exc, _PoolExhausted | _Skipped
            ):
                # a batch that failed as a whole backs off its keys' one node, or the store
                # (a cluster's dead node may also fail its keys one by one: below)
                where = self._where
                nodes = {where(key) for key, _, _ in live} if where is not None else {None}
                self._back_off(exc, live[0][0] if len(nodes) == 1 else None)
                backed_off = True
            for _, _, fut in live:
                if not fut.done():
                    fut.set_exception(_per_key(exc, backed_off=backed_off))
            if not isinstance(exc, Exception):
                raise  # this task itself was cancelled (the loop is closing)
            return
        finally:
            self._gets_in_flight -= 1
        for (_, _, fut), result in zip(live, results, strict=True):
            if not fut.done():
                if isinstance(result, Exception):
                    fut.set_exception(_store_error(result))
                else:
                    fut.set_result(result)

    async def _run_alone(self, commands: tuple[Command, ...]) -> list[Any]:
        redis = self._redis
        if len(commands) == 1:
            return [await redis.execute_command(*commands[0])]
        pipe = redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _run_many(self, items: list[_Item]) -> list[Any]:
        """One pipeline for lookups and queued commands: per item, its GET's reply, or the
        list of its commands' replies (the first error among them instead, if any)."""
        pipe = self._redis.pipeline(transaction=False)
        sent: list[tuple[Command, ...] | None] = []
        for key, commands, _ in items:
            if commands is None:
                pipe.get(key)
            else:
                if callable(commands):
                    commands = commands()  # built now: what was added until now goes too
                for command in commands:
                    pipe.execute_command(*command)
            sent.append(commands)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        out: list[Any] = []
        at = 0
        for commands in sent:
            if commands is None:
                out.append(replies[at])
                at += 1
                continue
            mine = replies[at : at + len(commands)]
            at += len(commands)
            error = next((r for r in mine if isinstance(r, Exception)), None)
            out.append(error if error is not None else mine)
        return out

    async def _get_one(self, key: str) -> Any:
        return await self._fresh_retry(lambda: self._redis.get(key))

    async def _get_many(self, keys: list[str]) -> list[Any]:
        def send() -> Awaitable[list[Any]]:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            return pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

        replies: list[Any] = await self._fresh_retry(send)
        return replies

    async def _fresh_retry(self, send: Callable[[], Awaitable[Any]]) -> Any:
        """``await send()`` (reads only), tried once more after a connection error.

        A connection left in the client's pool from before a Redis restart fails the
        first command sent on it (redis-py does not retry a pipeline, nor always a
        single command): the idle connections (as stale, likely) are dropped and the
        read is sent once more on a fresh one. Not after our own deadline fired.
        """
        try:
            return await send()
        except redis.exceptions.ConnectionError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the deadline (or the caller) cancelled it: no second try
            pool = getattr(self._redis, "connection_pool", None)
            disconnect = getattr(pool, "disconnect", None)
            if disconnect is not None:
                await disconnect(inuse_connections=False)
            return await send()

    async def _io_set(self, key: str, data: bytes, ttl_ms: int) -> None:
        # (with the other queued commands when some are in flight: concurrent streams that
        # end together store their answers in one pipeline)
        await self._io_queued(key, (("SET", key, data, "PX", ttl_ms),))

    async def _io_set_nx(self, key: str, token: bytes, ttl_ms: int) -> bool:
        with _store_errors:
            return bool(await self._bounded(self._redis.set, key, token, nx=True, px=ttl_ms))

    async def _io_unlink(self, key: str) -> None:
        await self._io_queued(key, (("UNLINK", key),))

    async def _io_cad(self, key: str, token: bytes) -> bool:
        """Delete ``key`` only if its value is ``token`` (compare-and-delete); True if deleted.

        One ``EVALSHA`` of a one-key script (so a cluster routes it like any command),
        queued with the other commands of this event-loop iteration; ``EVAL`` once the
        server answered ``NOSCRIPT`` (a restart or ``SCRIPT FLUSH`` forgot it). A server
        without scripting (fakeredis without ``lupa``) gets ``GET`` then ``UNLINK`` of a
        matching value instead, from then on: not atomic (a successor that takes the key
        between the two commands loses it), so for tests, not for production.
        """
        if self._scripting:
            done = await self._io_script(_CAD_SHA, _CAD_SCRIPT, key, token)
            if done is not None:
                return bool(done)
        (value,) = await self._io_queued(key, (("GET", key),))
        if value != token:
            return False
        await self._io_unlink(key)
        return True

    async def _io_cap(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Reset ``key``'s expiry to ``ttl_ms`` only if its value is ``token``
        (compare-and-pexpire); True if reset, False when the key is gone or another
        holder's (decision 0540). The same script path and fallbacks as :meth:`_io_cad`
        (``EVALSHA``, ``EVAL`` after ``NOSCRIPT``, ``GET`` then ``PEXPIRE`` without
        scripting: not atomic, for tests)."""
        if self._scripting:
            done = await self._io_script(_CAP_SHA, _CAP_SCRIPT, key, token, ttl_ms)
            if done is not None:
                return bool(done)
        (value,) = await self._io_queued(key, (("GET", key),))
        if value != token:
            return False
        (reset,) = await self._io_queued(key, (("PEXPIRE", key, ttl_ms),))
        return bool(reset)

    async def _io_script(
        self, sha: str, script: bytes, key: str, *args: Any, more_keys: tuple[str, ...] = ()
    ) -> Any:
        """A script's reply (``EVALSHA``, then ``EVAL`` after ``NOSCRIPT``); its keys are
        ``key`` and ``more_keys`` (more than one only where they live on one server: not on
        a cluster); None when the server has no scripting (from then on ``_scripting`` is
        False)."""
        keys = (1 + len(more_keys), key, *more_keys)
        try:
            (reply,) = await self._io_queued(key, (("EVALSHA", sha, *keys, *args),))
            return reply
        except CacheError as exc:
            cause = exc.__cause__
            if isinstance(cause, redis.exceptions.NoScriptError):
                (reply,) = await self._io_queued(key, (("EVAL", script, *keys, *args),))
                return reply
            if not _no_scripting(cause):
                raise
            if self._scripting:
                self._scripting = False
                logger.warning(
                    "the redis server has no Lua scripting: leases are given back and "
                    "extended with GET then UNLINK / PEXPIRE (not atomic)"
                )
            return None

    async def _io_hgetall(self, key: str) -> dict[Any, Any]:
        with _store_errors:
            return await self._bounded(self._redis.hgetall, key)  # type: ignore[no-any-return]

    async def _io_hincrby(self, key: str, field: str) -> int:
        with _store_errors:
            return int(await self._bounded(self._redis.hincrby, key, field, 1))

    async def _io_set_many(self, items: list[tuple[str, bytes]], ttl_ms: int) -> None:
        if not self._slots.take():
            await self._wait_slot()
        try:
            with _store_errors:
                async with asyncio.timeout(self._bulk_timeout):
                    pipe = self._redis.pipeline(transaction=False)
                    for key, data in items:
                        pipe.set(key, data, px=ttl_ms)
                    await pipe.execute()
                    _still_cancelled()
        finally:
            self._slots.release()

    async def _io_get_many(self, keys: list[str]) -> list[Any]:
        """One pipeline of GETs (admin path: one key per command, routed by slot on a cluster);
        the values in ``keys``' order (None where a key is gone)."""
        if not self._slots.take():
            await self._wait_slot()
        try:
            with _store_errors:
                async with asyncio.timeout(self._bulk_timeout):
                    pipe = self._redis.pipeline(transaction=False)
                    for key in keys:
                        pipe.get(key)
                    values = list(await pipe.execute(raise_on_error=False))
                    _still_cancelled()
                    return values
        finally:
            self._slots.release()

    async def _io_unlink_many(self, keys: list[str]) -> int:
        if not self._slots.take():
            await self._wait_slot()
        try:
            with _store_errors:
                async with asyncio.timeout(self._bulk_timeout):
                    pipe = self._redis.pipeline(transaction=False)
                    for key in keys:
                        # one key per command: routed by slot on a cluster
                        pipe.execute_command("UNLINK", key)
                    removed = sum(int(n) for n in await pipe.execute())
                    _still_cancelled()
                    return removed
        finally:
            self._slots.release()

    async def _io_scan(self, pattern: str) -> AsyncIterator[str]:
        # No slot held across the scan: the client takes a connection per SCAN call,
        # and purge() needs a slot for its UNLINK batches meanwhile (admin path).
        with _store_errors:
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                _still_cancelled()  # a cancellation swallowed during the SCAN call
                yield key.decode() if isinstance(key, bytes) else str(key)
            _still_cancelled()
