"""The stream relay: followers in other processes read a leader's chunks as they arrive.

Used by :meth:`AIManager.stream <samplemind_core.AIManager.stream>` when the cache has a
Redis client and ``CacheConfig.lease_s`` is set. For one stream key ``{key}``:

- ``{key}:slease`` -- the stream lease (``SET NX PX lease_s``, the value a token of
  this claim, given back by compare-and-delete and extended by compare-and-pexpire:
  never by another holder): its holder reads the provider. It is refreshed with the
  chunks, every quarter of ``lease_s`` (a stream may outlast ``lease_s``), and
  deleted at once when the holder ends, fails or is cancelled (also while its
  ``SET NX`` is out: then in the background); a holder that dies leaves it for at
  most ``lease_s``.
- ``{key}:chunks`` -- a Redis Stream: one ``XADD`` per chunk (field ``t``: the text),
  then a terminal entry (``end``: ``ok`` with ``r``, the stored envelope of the whole
  response, or ``err`` with ``e``, why). It expires between three quarters of
  ``lease_s`` and ``lease_s`` after its last entry (its expiry set with the first entry,
  then reset by the first batch of entries after each quarter of ``lease_s``, the terminal
  one included), and the holder deletes any old one before it opens its upstream.
- Followers ``XREAD BLOCK`` from the first entry on, in slices of at most
  ``_READ_SLICE_S``; each empty slice checks that the lease still exists. At most a
  quarter of ``CacheConfig.max_connections`` blocking reads run at once (each holds a
  connection); beyond that, followers poll every ``_POLL_S`` with ordinary bounded reads.
  A follower never waits past its own idle deadline (the caller decides what then).

Every command touches one key (a cluster routes each on its own); errors of the
store are counted like every other and turn the relay off for that stream (the
caller falls back to reading the provider itself), never escape.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import redis.exceptions

from .._cache.envelope import decode
from .._cache.keys import RELAY_SUFFIXES, GensMoved
from .._exceptions import CacheBackendError, CacheError, CacheValueError
from .._models import ChatResponse
from ._errors import _store_errors, _WriteRefused
from ._leases import _SingleFlight
from ._store import (
    _CAP_SHA,
    _CLAIM_SCRIPT,
    _CLAIM_SHA,
    _GENS_LOOKUP_CLAIM_SCRIPT,
    _GENS_LOOKUP_CLAIM_SHA,
    _LOOKUP_CLAIM_SCRIPT,
    _LOOKUP_CLAIM_SHA,
    Command,
    _no_scripting,
)

__all__ = ["RELAY_LEASE_SUFFIX", "RELAY_STREAM_SUFFIX", "RelayEntry", "_StreamRelay"]

RELAY_LEASE_SUFFIX: Final = RELAY_SUFFIXES[0]
RELAY_STREAM_SUFFIX: Final = RELAY_SUFFIXES[1]
_READ_SLICE_S: Final = 0.25
_READ_COUNT: Final = 256
_POLL_S: Final = 0.01

T = TypeVar("T")
logger = logging.getLogger("samplemind_core.cache")

RelayEntry = tuple[str, str | ChatResponse | None]
"""``("t", text)`` a chunk, ``("who", "provider/model")`` who streams the chunks that follow,
``("restart", None)`` the next chunk starts a replacement stream, ``("ok", response)`` the end,
``("err", reason)`` the leader failed, ``("gone", None)`` the lease vanished without an end."""


class _StreamRelay(_SingleFlight):
    """The relay's store I/O (see the module docstring)."""

    _relay_blocking: int = 0  # blocking reads in flight (an instance counter once set)

    def _relay_enabled(self) -> bool:
        return (
            self._redis is not None
            and self._lease_s is not None
            and self._clock() >= self._skip_until
        )

    def _gens_ride(self) -> bool:
        """True when a new stream's lookup can carry the generations' reload
        (:meth:`_lookup_or_claim` with ``gens=True``): one server with scripting, the relay
        on, the store healthy -- where the lookup is one script (decision 0920)."""
        return (
            self._where is None and self._scripting and not self._degraded and self._relay_enabled()
        )

    async def _lookup_or_claim(
        self, entry: str, key: str, start: float, extra: list[Any], gens: bool = False
    ) -> tuple[ChatResponse | None, bytes | bool | None]:
        """A new stream's lookup of ``entry`` and, on a miss, its relay claim of ``key``:
        ``(hit, claim)``. ``hit``: as :meth:`_lookup` (``extra`` gets the envelope's trailing
        field), with ``claim`` None. On a miss, ``claim`` is what :meth:`_relay_claim` would
        have returned with no entry found: a token (this process leads; give it back with
        ``_relay_release(key, token)``), False (another process leads), or None: not
        claimed here, the caller claims with :meth:`_relay_claim` as before.

        On one server with scripting, with the relay on and the store healthy, both are one
        ``EVALSHA`` (``_LOOKUP_CLAIM_SCRIPT``, decision 0880): the look and the claim with
        no moment between them (no re-check needed), one round trip less before the
        upstream. ``EVAL`` after ``NOSCRIPT``. Anywhere else (a cluster, no scripting, a
        degraded store, no relay, an L1 hit) and when the script cannot run (a value of
        another type under the entry, a server out of memory: it refuses scripts that write)
        the plain :meth:`_lookup`, claim None. A script cancelled or failed while out
        gives back in the background the lease it may have taken.

        ``gens`` (decision 0920): ``entry`` and ``key`` were built under an in-process copy
        of the generations older than ``generation_ttl_s``. Where :meth:`_gens_ride`, the
        reload travels in the same script (``_GENS_LOOKUP_CLAIM_SCRIPT``): the store's hash
        is taken as the new copy, and when the key's generations are not the store's the
        script does nothing else and :class:`GensMoved` is raised, the copy fresh: the
        caller builds its key again and calls once more (without ``gens``). Also raised,
        after a blocking reload, where the reload cannot ride (an L1 entry under ``entry``,
        which must not be served before the generations are known; the script refused):
        no lookup under an expired copy is ever answered."""
        l1 = self._l1
        if gens:
            if self._clock() < self._gens_expiry:
                gens = False  # (fresh meanwhile)
            elif (l1 is not None and l1.hit(entry, self._clock()) is not None) or not (
                self._gens_ride()
            ):
                await self._fresh_gens()
                raise GensMoved
        elif (
            l1 is not None and (hit := self._l1_hit(entry, self._clock(), start, extra)) is not None
        ):
            return hit, None
        if not gens and not self._gens_ride():  # (the lookup is no script here)
            return await self._lookup(entry, start, l1_checked=True, extra=extra), None
        assert self._lease_s is not None
        lease = key + RELAY_LEASE_SUFFIX
        stream = key + RELAY_STREAM_SUFFIX
        token = self._new_token()
        lease_ms = max(1, int(self._lease_s * 1000))
        epoch = self._gens_epoch
        if gens:
            sha, script = _GENS_LOOKUP_CLAIM_SHA, _GENS_LOOKUP_CLAIM_SCRIPT
            more_keys: tuple[str, ...] = (lease, stream, self._keys.gen_key)
        else:
            sha, script, more_keys = _LOOKUP_CLAIM_SHA, _LOOKUP_CLAIM_SCRIPT, (lease, stream)
        args = (token, lease_ms)
        # Queued (with the other lookups of this loop iteration) and shielded: a caller
        # cancelled while it is out leaves its outcome to ``_claim_left``, which gives the
        # lease back only if the script took it (a cancelled hit costs Redis nothing more).
        sent = self._io_queued_soon(
            entry, (("EVALSHA", sha, 1 + len(more_keys), entry, *more_keys, *args),)
        )
        again = False  # the script sent once more (EVAL after NOSCRIPT)
        try:
            try:
                (reply,) = await asyncio.shield(sent)
            except CacheError as exc:
                cause = exc.__cause__
                if not (isinstance(cause, redis.exceptions.NoScriptError) or _no_scripting(cause)):
                    raise
                # (a restart forgot the script, or no scripting: EVAL, or None from now on)
                again = True
                reply = await self._io_script(sha, script, entry, *args, more_keys=more_keys)
        except asyncio.CancelledError:
            if again:  # cancelled while the EVAL was out: it may have taken the lease
                self._release_later(lease, token, lost=True)
            elif sent.done():  # cancelled once the reply was in: it tells
                self._claim_left(lease, token, sent)
            else:
                sent.add_done_callback(functools.partial(self._claim_left, lease, token))
            raise
        except (CacheValueError, _WriteRefused):  # refused before any write: as before
            if gens:  # (another type under the entry or the hash, or out of memory)
                await self._fresh_gens()
                raise GensMoved from None
            return await self._lookup(entry, start, l1_checked=True, extra=extra), None
        except CacheError as exc:  # the SET may have landed: do not leave it
            self._release_later(lease, token, lost=True)
            self._backend_failed(exc, entry)
            self._stats.misses += 1
            return None, None
        except BaseException:  # (a bug): the script may have taken it
            self._release_later(lease, token, lost=True)
            raise
        if reply is None:  # no scripting (from now on): the plain lookup
            if gens:
                await self._fresh_gens()
                raise GensMoved
            return await self._lookup(entry, start, l1_checked=True, extra=extra), None
        self._backend_ok()
        if gens:  # the store's generations, read in the same script
            hash_ = reply[-1]
            if hash_ == self._gens_raw and epoch == self._gens_epoch:
                # (what an earlier reply brought: 100 starts at once parse it once)
                self._gens_expiry = max(self._gens_expiry, self._clock() + self._gen_ttl)
            elif self._take_gens(zip(hash_[::2], hash_[1::2], strict=True), epoch):
                self._gens_raw = hash_
            if reply[0] == 2:  # the key's generations are not the store's: nothing done
                if self._clock() >= self._gens_expiry:  # (a clear() of ours meanwhile)
                    await self._fresh_gens()
                raise GensMoved
        if reply[0]:  # stored: a hit (or a value to discard, then a miss claimed as before)
            hit = self._hit_of(entry, reply[1], start, extra)
            if hit is None:
                await self._discard(entry)
            return hit, None
        self._stats.misses += 1
        if reply[1]:
            self._stats.leases += 1
            return None, token
        return None, False

    async def _relay_claim(
        self,
        key: str,
        recheck: Callable[[], Awaitable[T]] | None = None,
        entry: str | None = None,
    ) -> tuple[bytes | bool | None, T | None]:
        """``(claim, found)``. ``claim``: a token (bytes, true): this process leads ``key``'s
        stream (old relay entries removed) and gives the lease back with
        ``_relay_release(key, token)``; False: another process does; None: no relay (no Redis, no
        ``lease_s``, or Redis failing). ``found``: what ``recheck`` returned (a look at the
        entry: another process may have stored it and given the lease back since our
        lookup), or None when it was not called.

        One round trip before the caller may open its upstream (decision 0541): the
        ``SET NX`` of the lease goes in one queued item with ``EXISTS`` of the relay
        stream and, when ``entry`` (the cache key ``recheck`` reads) is given, ``EXISTS``
        of the entry; on one connection they run in that order, so an entry stored by a
        holder that left before our ``SET`` is seen. ``recheck`` then runs only when the
        entry exists (for a follower too: a hit is a hit, whoever holds the lease), and the
        old relay stream is unlinked only when there is one. On one server with scripting
        the three are one ``EVALSHA`` (``_CLAIM_SCRIPT``, decision 0721), which also unlinks
        the old stream when the lease was taken. On a cluster (the keys live
        on several nodes: a pipeline keeps no order between them) the re-check follows the
        ``SET``'s reply, for the leader only, as before (decision 0400).

        The commands join the other streams' of the same event-loop iteration (one
        pipeline for many concurrent misses: ``_io_queued``)."""
        if not self._relay_enabled():
            return None, None
        assert self._lease_s is not None
        lease_ms = max(1, int(self._lease_s * 1000))
        lease = key + RELAY_LEASE_SUFFIX
        stream = key + RELAY_STREAM_SUFFIX
        found: T | None = None
        token = self._new_token()
        ordered = entry is not None and recheck is not None and self._where is None
        commands: tuple[Command, ...] = (
            ("SET", lease, token, "NX", "PX", lease_ms),
            ("EXISTS", stream),
        )
        commands_keys: tuple[str, ...] = ()
        if ordered:
            assert entry is not None
            commands += (("EXISTS", entry),)
            commands_keys = (stream, entry)
        try:
            try:
                replies = None
                if ordered and self._scripting:
                    # One command instead of three, the old stream unlinked in it (0721).
                    replies = await self._io_script(
                        _CLAIM_SHA, _CLAIM_SCRIPT, lease, token, lease_ms, more_keys=commands_keys
                    )
                    if replies is not None:
                        replies = [bool(replies[0]), False, replies[2]]  # (unlinked already)
                if replies is None:
                    replies = await self._io_queued(lease, commands)
            except CacheError as exc:
                if not isinstance(exc, _WriteRefused):  # it may have been set: do not leave it
                    self._release_later(lease, token, lost=True)
                raise
            except BaseException:  # cancelled while the SET was out: it may be set
                self._release_later(lease, token, lost=True)
                raise
            taken, old_stream = replies[0], replies[1]
            stored = bool(replies[2]) if ordered else taken and recheck is not None
            if taken or stored:
                unlink = (
                    self._io_queued_soon(stream, (("UNLINK", stream),))
                    if taken and old_stream
                    else None
                )
                try:
                    if stored and recheck is not None:
                        found = await recheck()  # (queued behind the UNLINK: one round trip)
                    if unlink is not None:
                        await unlink
                except BaseException:
                    if unlink is not None and not unlink.done():
                        unlink.cancel()
                    if taken:
                        await self._relay_release(key, token)  # the lease is ours: give it back
                    raise
        except CacheError as exc:
            self._backend_failed(exc)
            return None, None
        self._backend_ok()
        if taken:
            self._stats.leases += 1
            return token, found
        return False, found

    def _relay_commands(
        self, key: str, entries: list[dict[bytes, bytes]], refresh: bool
    ) -> tuple[Command, ...]:
        """One ``XADD`` per entry of ``key``'s relay stream, then, with ``refresh``, the
        ``PEXPIRE`` that resets its expiry to ``lease_s`` (after them: it needs the key)."""
        stream = key + RELAY_STREAM_SUFFIX
        commands: list[Command] = [
            ("XADD", stream, "*", *itertools.chain.from_iterable(fields.items()))
            for fields in entries
        ]
        if refresh:
            assert self._lease_s is not None
            commands.append(("PEXPIRE", stream, max(1, int(self._lease_s * 1000))))
        return tuple(commands)

    def _relay_writer(self, key: str, token: bytes = b"") -> RelayWriter:
        """A writer of ``key``'s relay entries that never holds its producer up; ``token``:
        the claim's (its lease is extended only while it still holds that token)."""
        return RelayWriter(self, key, token)

    def _relay_end_fields(
        self, response: ChatResponse | None, reason: str = ""
    ) -> dict[bytes, bytes]:
        """The terminal entry: ``ok`` with ``response``'s envelope, or ``err`` with ``reason``."""
        if response is not None:
            try:
                return {b"end": b"ok", b"r": self._encode(response)}
            except CacheError:
                return {b"end": b"err", b"e": b"the response cannot be stored"}
        return {b"end": b"err", b"e": reason.encode(errors="replace")[:500]}

    async def _relay_release(self, key: str, token: bytes) -> None:
        """Give the stream lease back if it still holds ``token`` (compare-and-delete; in the
        background when cancelled or Redis failed; never raises a cache error)."""
        await self._give_back(key + RELAY_LEASE_SUFFIX, token)

    def _claim_left(self, lease: str, token: bytes, sent: asyncio.Future[Any]) -> None:
        """The outcome of a lookup-and-claim script whose caller left while it was out: the
        lease given back (in the background) when the script took it, or when its outcome
        is unknown (the operation failed or was dropped); nothing for a hit or a claim
        another process holds."""
        if not sent.cancelled():
            exc = sent.exception()
            if exc is None:
                reply = sent.result()[0]
                if reply[0] or not reply[1]:
                    return  # a hit, or another process leads: nothing of ours is set
                self._release_later(lease, token)
                return
            if isinstance(exc, CacheValueError | _WriteRefused):
                return  # refused before any write
        with contextlib.suppress(RuntimeError):  # (no running loop: the lease expires)
            self._release_later(lease, token, lost=True)

    def _relay_release_later(self, key: str, token: bytes) -> None:
        """:meth:`_relay_release` in the background (for a caller that cannot await)."""
        self._release_later(key + RELAY_LEASE_SUFFIX, token)

    async def _relay_read(
        self, key: str, last_id: bytes, deadline: float
    ) -> tuple[bytes, list[RelayEntry]] | None:
        """The entries after ``last_id`` (waiting until ``deadline``, loop time): ``(last id,
        entries)``; ``(last_id, [])`` when the deadline passed; ``[("gone", None)]`` when the
        lease is gone with no end; None when Redis failed."""
        loop = asyncio.get_running_loop()
        stream = key + RELAY_STREAM_SUFFIX
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return last_id, []
            block_ms = max(1, int(min(left, _READ_SLICE_S) * 1000))
            try:
                with _store_errors:
                    if self._relay_blocking < max(1, self.config.max_connections // 4):
                        # A blocking read holds a connection for up to one slice, outside
                        # the slots of the other operations: at most a quarter of the pool.
                        self._relay_blocking += 1
                        try:
                            async with asyncio.timeout(
                                block_ms / 1000 + self._timeouts.timeout + 1.0
                            ):
                                reply = await self._redis.xread(
                                    {stream: last_id}, count=_READ_COUNT, block=block_ms
                                )
                        finally:
                            self._relay_blocking -= 1
                    else:  # that quarter is taken: poll, holding a slot only per read
                        reply = await self._bounded(
                            self._redis.xread, {stream: last_id}, count=_READ_COUNT
                        )
                        if not reply:
                            await asyncio.sleep(min(left, _POLL_S))
                    if not reply:
                        alive = await self._bounded(self._redis.exists, key + RELAY_LEASE_SUFFIX)
            except CacheError as exc:
                self._backend_failed(exc)
                return None
            if reply:
                return self._entries_of(reply, last_id)
            if not alive:
                # The holder ended (its end may have landed just before): one last look.
                try:
                    with _store_errors:
                        reply = await self._bounded(
                            self._redis.xread, {stream: last_id}, count=_READ_COUNT
                        )
                except CacheError as exc:
                    self._backend_failed(exc)
                    return None
                if reply:
                    return self._entries_of(reply, last_id)
                return last_id, [("gone", None)]

    def _entries_of(self, reply: Any, last_id: bytes) -> tuple[bytes, list[RelayEntry]]:
        entries: list[RelayEntry] = []
        rows: Sequence[Any] = (
            reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        )
        for entry_id, fields in rows:
            last_id = entry_id
            who = fields.get(b"p")
            if who is not None:
                entries.append(("who", who.decode(errors="replace")))
            if b"restart" in fields:
                entries.append(("restart", None))
            text = fields.get(b"t")
            if text is not None:
                entries.append(("t", text.decode()))
                continue
            end = fields.get(b"end")
            if end == b"ok":
                try:
                    response, _, _, _, _ = decode(fields[b"r"])
                except (CacheError, KeyError):
                    entries.append(("err", "the leader's response could not be read"))
                else:
                    entries.append(("ok", response))
            else:
                reason = fields.get(b"e", b"the leader failed")
                entries.append(("err", reason.decode(errors="replace")))
            break
        return last_id, entries


class RelayWriter:
    """Appends a leader's entries to its relay without making the leader wait for Redis.

    :meth:`put` queues an entry; one batch of this stream's entries is in flight at
    a time and carries every entry queued while the previous one was out (one entry
    per batch at a provider's pace, many when chunks come faster than Redis
    answers); each batch joins the other streams' in one pipeline
    (``_io_queued_soon``), and its commands are built when that pipeline is built, so
    the entries put until then go with it (a reader that leaves after the first chunk:
    the first chunk and the terminal entry in one round trip). No task per stream: the
    next batch is sent from the done callback of the previous one. After a failure of
    Redis the writer drops everything (followers elsewhere then reach their idle
    deadline, or see the lease gone). :meth:`close` queues the terminal entry and waits
    for the last batch (each bounded by ``op_timeout_s``).

    Expiries (decisions 0402, 0540, 0720): the relay stream's is reset with the first
    batch (the ``XADD`` that creates it) and then at most every quarter of ``lease_s``
    (a batch due for it, the terminal one included, carries the ``PEXPIRE``): the stream
    outlives its last entry by three quarters of ``lease_s`` at least, ``lease_s`` at
    most; the lease's (set by the claim's ``SET NX PX``, given back right after
    the terminal entry) at most every quarter of ``lease_s`` from the claim, by
    compare-and-pexpire of the claim's token (one ``EVALSHA`` queued with the entries'
    batch, no task; ``_io_cap`` on ``NOSCRIPT`` or without scripting): an old leader never extends a successor's lease, and a writer that finds its
    lease gone or taken over stops writing (``lost``; the successor's followers read the
    same stream key).
    """

    __slots__ = (
        "_cache",
        "_closing",
        "_key",
        "_lease_due",
        "_pending",
        "_refresh_due",
        "_refreshing",
        "_sending",
        "_token",
        "failed",
        "lost",
    )

    def __init__(self, cache: _StreamRelay, key: str, token: bytes = b"") -> None:
        self._cache = cache
        self._key = key
        self._token = token
        self._pending: list[dict[bytes, bytes]] = []
        self._sending: asyncio.Future[Any] | None = None
        self._refresh_due = -1.0  # loop time; the first batch refreshes the stream's expiry
        # the claim set the lease's expiry just now: its first refresh is a quarter later
        self._lease_due = asyncio.get_running_loop().time() + (cache._lease_s or 0.0) / 4
        self._refreshing: asyncio.Future[Any] | None = None
        self._closing = False
        self.failed = False
        self.lost = False

    def put(self, fields: dict[bytes, bytes]) -> None:
        if self.failed:
            return
        self._pending.append(fields)
        if self._sending is None:
            self._send()

    def _send(self) -> None:
        now = asyncio.get_running_loop().time()
        if (
            not self._closing
            and now >= self._lease_due
            and self._token
            and self._refreshing is None
        ):
            self._lease_due = now + (self._cache._lease_s or 0.0) / 4
            self._refresh_lease()
        fut = self._cache._io_queued_soon(self._key + RELAY_STREAM_SUFFIX, self._batch)
        self._sending = fut
        fut.add_done_callback(self._sent)

    def _batch(self) -> tuple[Command, ...]:
        """The commands of the batch in flight, built when its pipeline is built: every
        entry put until then (nothing once the writer failed or lost its lease)."""
        batch, self._pending = self._pending, []
        if self.failed or not batch:
            return ()
        now = asyncio.get_running_loop().time()
        refresh = now >= self._refresh_due
        if refresh:
            self._refresh_due = now + (self._cache._lease_s or 0.0) / 4
        return self._cache._relay_commands(self._key, batch, refresh)

    def _refresh_lease(self) -> None:
        """Extend the lease if it still holds our token (compare-and-pexpire, queued with
        this iteration's batch: no task); :meth:`_lease_checked` stops the writer when it
        does not. Without scripting, or after ``NOSCRIPT``, a task runs ``_io_cap`` (its
        fallbacks)."""
        cache = self._cache
        assert cache._lease_s is not None
        lease = self._key + RELAY_LEASE_SUFFIX
        ttl_ms = max(1, int(cache._lease_s * 1000))
        refreshing: asyncio.Future[Any]
        if cache._scripting:
            command = ("EVALSHA", _CAP_SHA, 1, lease, self._token, ttl_ms)
            refreshing = cache._io_queued_soon(lease, (command,))
        else:
            refreshing = asyncio.ensure_future(cache._io_cap(lease, self._token, ttl_ms))
        self._refreshing = refreshing
        refreshing.add_done_callback(self._lease_checked)

    def _lease_checked(self, fut: asyncio.Future[Any]) -> None:
        self._refreshing = None
        if fut.cancelled() or self._closing:
            return
        exc = fut.exception()
        if exc is not None:
            cause = exc.__cause__
            if isinstance(cause, redis.exceptions.NoScriptError) or _no_scripting(cause):
                # (the server forgot the script, or has none: _io_cap's own fallbacks)
                assert self._cache._lease_s is not None
                self._refreshing = retry = asyncio.ensure_future(
                    self._cache._io_cap(
                        self._key + RELAY_LEASE_SUFFIX,
                        self._token,
                        max(1, int(self._cache._lease_s * 1000)),
                    )
                )
                retry.add_done_callback(self._lease_checked)
            return  # another error of the store: the entries' batch counts it
        result = fut.result()
        mine = result[0] if isinstance(result, list) else result
        if not mine:
            self.lost = self.failed = True
            self._pending = []
            logger.warning(
                "a stream's relay lease expired or was taken over while its leader was "
                "still streaming: this leader stops relaying (its own readers are served)"
            )

    def _sent(self, fut: asyncio.Future[Any]) -> None:
        self._sending = None
        exc = (
            CacheBackendError("the relay write was cancelled")
            if fut.cancelled()
            else fut.exception()
        )
        if exc is not None:
            self.failed = True
            self._pending = []
            if isinstance(exc, CacheError):
                self._cache._backend_failed(exc)
            return
        if self._pending and not self.failed:
            self._send()

    async def close(self, fields: dict[bytes, bytes]) -> None:
        """Queue the terminal entry and wait until everything queued is written (or dropped)."""
        self._closing = True
        refreshing = self._refreshing
        if refreshing is not None:
            refreshing.cancel()  # the lease is given back next (a late PEXPIRE finds no key)
        self.put(fields)
        while (fut := self._sending) is not None:
            if fut.done():  # its callback (_sent) has not run yet: let it
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(Exception):  # counted by _sent (which runs first)
                await asyncio.shield(fut)
