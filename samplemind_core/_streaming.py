"""Streams of :meth:`AIManager.stream <samplemind_core.AIManager.stream>`: the chunks a caller reads,
and the one upstream that many callers share.

::

    async with ai.stream(request, task="describe", priority="speed") as stream:
        async for chunk in stream:        # StreamChunk(text, index, restarted)
            ui.write(chunk.text)
        resp = stream.response            # the ChatResponse complete() would have returned

An :class:`UpstreamFeed` holds the chunks of one upstream stream (or of a stored
one) in order and wakes its readers when one arrives; each
:class:`ResponseStream` reads it from the first chunk at its own pace, so a
caller that joins late gets every chunk from the first, then the live tail.
The upstream is owned by a task of its own (started by the manager: it opens it,
falls back, stores and relays the answer): a caller that leaves (break, error,
cancellation) only detaches; the last one to leave before the end cancels that
task, which closes the upstream response and frees its connection before
:meth:`ResponseStream.aclose` returns.

While a caller is the feed's only reader, the producer may *lend* it the per-chunk
read (:meth:`UpstreamFeed.lend`, decision 0800): the caller then reads the upstream
in its own task, one text chunk per ``__anext__`` (pushed into the feed and relayed
as the producer would), without waiting for the producer task to be scheduled for
each chunk. The read goes back to the producer at the end of the stream, on any
error of the read (the producer's code then falls back, interrupts, stores or fails
as always), when a second reader joins, and when the caller leaves or is cancelled
(also in the middle of a read: no byte is lost).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from itertools import accumulate, islice
from types import TracebackType
from typing import Any, Final, Literal

from ._exceptions import (
    AllProvidersFailedError,
    ClientStateError,
    StreamInterrupted,
)
from ._models import ChatResponse

__all__ = [
    "CHUNKS_KEY",
    "IdleWatch",
    "LentRead",
    "ResponseStream",
    "StreamChunk",
    "UpstreamFeed",
    "chunk_boundaries",
    "finalize_stream",
    "split_text",
    "stored_chunks",
]

_perf: Final = time.perf_counter


_YIELD_EVERY: Final = 8
"""A reader that never had to wait gives the event loop back once every this many chunks,
first right after its first chunk."""


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One piece of a streamed answer.

    ``text``: the new text (never empty); ``index``: 0, 1, 2, ... in the order
    delivered; ``restarted``: ``True`` on the first chunk of a fresh stream that
    replaces an interrupted one (``on_interrupt="restart"``): the text shown
    so far should be discarded.
    """

    text: str
    index: int
    restarted: bool = False


def _copy_error(exc: BaseException) -> BaseException:
    """A fresh instance of a shared failure for one reader (tracebacks stay per reader)."""
    if isinstance(exc, StreamInterrupted):
        return exc.copy()
    if isinstance(exc, AllProvidersFailedError):
        new: BaseException = AllProvidersFailedError(list(exc.attempts))
        new.__cause__ = exc.__cause__
        return new
    return exc


class IdleWatch:
    """The idle timeout of one upstream read loop, cheaper per chunk than ``asyncio.timeout``.

    One timer per stream instead of one per chunk: :meth:`touch` after each chunk
    only records the loop time; when the timer fires it re-arms itself at
    ``last touch + idle_s``, or, when that moment has passed, cancels the reading
    task. The reader then calls :meth:`expired` on whatever its await raised: True
    (and the cancellation undone) when the watch caused it, so that it can raise
    its timeout error instead; a cancellation of anyone else stays a cancellation.
    Created inside the reading task; :meth:`hand` moves the read to another task
    (``None``: nobody reads now, e.g. a lent read between two of its caller's chunks:
    the time nobody asks for a chunk is not idle time); :meth:`stop` before the task
    does anything else.
    """

    __slots__ = ("_cancelled", "_handle", "_loop", "_stopped", "_task", "fired", "idle_s", "last")

    def __init__(self, idle_s: float) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._loop = loop
        self._task: asyncio.Task[Any] | None = task
        self._cancelled: asyncio.Task[Any] | None = None
        self._stopped = False
        self.idle_s = idle_s
        self.last = loop.time()
        self.fired = False
        self._handle: asyncio.TimerHandle | None = loop.call_at(self.last + idle_s, self._check)

    def touch(self) -> None:
        self.last = self._loop.time()

    def hand(self, task: asyncio.Task[Any] | None) -> None:
        """The read is now ``task``'s (the idle time counted from now), or nobody's."""
        self._task = task
        if task is not None and not self._stopped:
            self.last = self._loop.time()
            if self._handle is None:
                self._handle = self._loop.call_at(self.last + self.idle_s, self._check)

    def _check(self) -> None:
        task = self._task
        if task is None:  # nobody reads: re-armed by hand()
            self._handle = None
            return
        due = self.last + self.idle_s
        if self._loop.time() >= due:
            self._handle = None
            self.fired = True
            self._cancelled = task
            task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def expired(self) -> bool:
        """Whether the watch cancelled the current task (the cancellation is then undone)."""
        task = self._cancelled
        if not self.fired or task is None or task is not asyncio.current_task():
            return False
        self.fired = False
        self._cancelled = None
        return task.uncancel() == 0

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


_AGAIN: Final = True  # a lent read given back: the producer reads (or lends) again
_ENDED: Final = False  # a lent read given back at the end of the upstream


class LentRead:
    """The producer's per-chunk read of its upstream, lent to the feed's only reader.

    ``step()`` is the producer's own loop body: it reads the upstream until one
    non-empty text chunk, pushes it into the feed (and relays it), and returns
    True, or False at the end of the upstream; it raises the read's errors (the
    idle timeout already turned into the producer's timeout error through
    ``watch``). :meth:`read` runs one step in the caller's task; the read goes
    back to the producer (:meth:`give_back`) at the end, on an error, when a
    second reader has joined, and when the caller is cancelled. ``busy`` while
    a step runs.
    """

    __slots__ = ("_fut", "busy", "feed", "step", "watch")

    def __init__(
        self,
        feed: UpstreamFeed,
        step: Callable[[], Awaitable[bool]],
        watch: IdleWatch,
        fut: asyncio.Future[bool],
    ) -> None:
        self.feed = feed
        self.step = step
        self.watch = watch
        self.busy = False
        self._fut = fut

    def give_back(self, outcome: bool | BaseException) -> None:
        """End the loan: ``True`` the producer reads on, ``False`` the upstream ended, an
        exception the producer raises as its own read's error. Nothing when the producer
        has gone (cancelled: it took the read back itself)."""
        feed = self.feed
        if feed._lent is self:
            feed._lent = None
        fut = self._fut
        if not fut.done():
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)

    async def read(self) -> bool:
        """One step in the current task: True when it pushed a chunk, False when the read
        went back to the producer instead (the end, an error) or the producer took it back.
        The caller's own cancellation gives the read back and propagates."""
        self.busy = True
        watch = self.watch
        watch.hand(asyncio.current_task())
        try:
            got = await self.step()
        except asyncio.CancelledError:
            self.busy = False
            watch.hand(None)
            self.give_back(_AGAIN)
            raise
        except BaseException as exc:
            self.busy = False
            watch.hand(None)
            self.give_back(exc)
            return False
        self.busy = False
        watch.hand(None)
        if not got:
            self.give_back(_ENDED)
        elif self.feed.readers > 1 or self.feed._lent is not self:
            self.give_back(_AGAIN)  # a follower joined meanwhile: the producer reads for both
        return got


class UpstreamFeed:
    """The chunks of one stream, shared by its readers (see the module docstring).

    Written by one producer (:meth:`push`, then :meth:`finish` or :meth:`fail`);
    read by any number of :class:`ResponseStream` objects. ``gaps_ms[i]`` is the
    time between chunk ``i - 1`` (or the start) and chunk ``i``; ``restarts``
    the indices of chunks that start a replacement stream; ``final_start`` the
    index of the first chunk of the stream that completed (what is stored).
    """

    __slots__ = (
        "_last",
        "_lent",
        "_rest",
        "_waiters",
        "chunks",
        "done",
        "error",
        "final_start",
        "gaps_ms",
        "key",
        "on_idle",
        "readers",
        "response",
        "restarts",
        "source",
        "task",
    )

    def __init__(
        self, key: str | None = None, *, source: Literal["upstream", "cache", "relay"] = "upstream"
    ) -> None:
        self.key = key
        self.source = source
        self.chunks: list[str] = []
        self.gaps_ms: list[float] = []
        self.restarts: set[int] = set()
        self.final_start = 0
        self.done = False
        self.error: BaseException | None = None
        self.response: ChatResponse | None = None
        self.readers = 0
        self.task: asyncio.Task[None] | None = None
        self.on_idle: Callable[[UpstreamFeed], None] | None = None
        # One future per waiting reader, all resolved and dropped at the next chunk (an
        # asyncio.Event would remove each waiter from a deque: O(readers) per reader).
        self._waiters: list[asyncio.Future[None]] = []
        self._lent: LentRead | None = None
        self._last = _perf()
        # A stored answer's chunks after the first, not cut yet (replay_stored): the text,
        # the chunk lengths (None: split into words) and the recorded gaps.
        self._rest: tuple[str, list[int] | None, Any] | None = None

    # -- the producer's side ---------------------------------------------------

    def push(self, text: str) -> None:
        now = _perf()
        self.chunks.append(text)
        self.gaps_ms.append((now - self._last) * 1000.0)
        self._last = now
        self._wake()

    async def drive(
        self, step: Callable[[], Awaitable[bool]], watch: IdleWatch, *, lend: bool
    ) -> None:
        """Run the producer's read ``step`` until the upstream ends (or raise its error).

        With ``lend`` (the read is resumable after a cancellation), the read is lent
        (:meth:`lend`) whenever the feed has exactly one reader, and read here otherwise.
        """
        if not lend:
            while await step():
                pass
            return
        while True:
            if self.readers == 1:
                if await self.lend(step, watch):
                    continue  # given back: lend again to a single reader, or read
                return
            if not await step():
                return

    async def lend(self, step: Callable[[], Awaitable[bool]], watch: IdleWatch) -> bool:
        """Lend the read ``step`` to the feed's only reader until it gives it back: False
        when the upstream ended, True when the producer should read on; the read's error
        is raised here. A cancellation takes the read back (a step running in the
        reader's task then finds the upstream closed and drops its own outcome)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        lent = LentRead(self, step, watch, fut)
        self._lent = lent
        watch.hand(None)
        self._wake()  # a reader waiting for a chunk takes the read at once
        try:
            return await fut
        finally:
            if self._lent is lent:
                self._lent = None
            if fut.done() and not fut.cancelled():
                fut.exception()  # (retrieved: raised above, or dropped with our cancellation)
            watch.hand(asyncio.current_task())

    def _wake(self) -> None:
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for fut in waiters:
                if not fut.done():  # (a reader cancelled meanwhile)
                    fut.set_result(None)

    def replay(
        self, chunks: list[str], gaps_ms: list[float] | None, response: ChatResponse
    ) -> None:
        """Fill the feed with a stored answer's chunks and end it (a cache hit)."""
        self.chunks = chunks
        self.gaps_ms = gaps_ms if gaps_ms is not None else [0.0] * len(chunks)
        self.finish(response)

    def replay_stored(self, response: ChatResponse, extra: Any = None) -> None:
        """Fill the feed with a stored answer and end it (a cache hit), cut as
        :func:`stored_chunks` cuts it, but lazily: only the first chunk is cut (and only
        its stored length checked) here, the others when a reader first asks for more
        (:meth:`cut_rest`), so a replay's first chunk waits neither for the whole answer
        to be cut nor for every stored length to be checked. Where the stored lengths
        turn out not to add up after a first length that did fit, the text after the
        first chunk is cut into words (:func:`stored_chunks` would cut the whole text
        into words): the chunks joined are the stored text in every case."""
        text = response.text
        meta = _boundaries(response, extra)
        lengths = meta.get("lengths") if isinstance(meta, dict) else None
        if (
            isinstance(lengths, list)
            and lengths
            and type(n := lengths[0]) is int
            and 0 < n <= len(text)
        ):
            self.chunks = [text[:n]]
        else:
            lengths = None
            first = _WORDS.match(text)
            self.chunks = [first.group()] if first is not None else []
        self.gaps_ms = []
        self._rest = (text, lengths, meta) if self.chunks else None
        self.finish(response)

    def cut_rest(self) -> None:
        """Cut the rest of a stored answer given to :meth:`replay_stored` (idempotent),
        with the recorded gaps (zeros when none were stored or they are not valid)."""
        rest = self._rest
        if rest is None:
            return
        self._rest = None
        text, lengths, meta = rest
        chunks = self.chunks
        gaps = None
        if lengths is not None and _valid_lengths(meta, len(text)) is not None:
            ends = list(accumulate(lengths))
            chunks += map(text.__getitem__, map(slice, ends, islice(ends, 1, None)))
            gaps = _valid_gaps(meta, len(chunks))
        else:
            chunks += _WORDS.findall(text, len(chunks[0]))
        self.gaps_ms = gaps if gaps is not None else [0.0] * len(chunks)

    def restart(self) -> None:
        """The next chunk starts a replacement stream."""
        self.restarts.add(len(self.chunks))
        self.final_start = len(self.chunks)

    def finish(self, response: ChatResponse) -> None:
        self.response = response
        self.done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.done = True
        self._wake()

    @property
    def final_chunks(self) -> list[str]:
        return self.chunks[self.final_start :]

    # -- the readers' side -----------------------------------------------------

    async def wait(self) -> None:
        """Until the next chunk or the end (the caller's cancellation propagates)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    def attach(self) -> None:
        self.readers += 1
        lent = self._lent
        if lent is not None and not lent.busy:
            lent.give_back(_AGAIN)  # two readers: the producer reads for both

    def detach(self) -> asyncio.Task[None] | None:
        """One reader left; the producer task to await when it was the last before the end."""
        self.readers -= 1
        if self.readers > 0 or self.done:
            return None
        if self.on_idle is not None:
            self.on_idle(self)  # nobody may join it any more
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            return task
        return None


class ResponseStream:
    """The stream of one :meth:`AIManager.stream <samplemind_core.AIManager.stream>` call.

    Use it as an async context manager, then iterate it: ``async for chunk in
    stream`` yields :class:`StreamChunk` objects in order; once the iteration
    ended, :attr:`response` is the complete :class:`~samplemind_core.ChatResponse`.
    Iteration raises :class:`~samplemind_core.AllProvidersFailedError` when no
    provider produced text, and :class:`~samplemind_core.StreamInterrupted` when
    one failed after text had been delivered. Leaving the block before the end
    detaches this caller (and closes the upstream when nobody else reads it).
    """

    def __init__(
        self,
        opener: Callable[[], Awaitable[tuple[UpstreamFeed, str]]],
        *,
        start: float,
        replay: Literal["instant", "paced"] = "instant",
        max_replay_gap_s: float = 5.0,
        finalize: Callable[[ResponseStream, ChatResponse], ChatResponse] | None = None,
    ) -> None:
        self._opener = opener
        self._start = start
        self._replay = replay
        self._max_gap_s = max_replay_gap_s
        self._finalize = finalize
        self._feed: UpstreamFeed | None = None
        self._attached = False
        self._next = 0
        self._state: Literal["new", "open", "ended", "failed", "closed"] = "new"
        self._response: ChatResponse | None = None
        self._role = ""
        self.ttft_ms: float | None = None
        """Time from the call to the first chunk with text (None before it)."""
        self.extra: dict[str, Any] = {}

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> ResponseStream:
        if self._state != "new":
            raise ClientStateError("a ResponseStream can be entered once")
        feed, role = await self._opener()  # attached before it returns
        self._feed = feed
        self._role = role
        self._attached = True
        self._state = "open"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Detach from the stream (idempotent); the last reader to leave closes the upstream."""
        if self._state in ("new", "open"):
            self._state = "closed"
        if not self._attached or self._feed is None:
            return
        self._attached = False
        task = self._feed.detach()
        if task is not None:
            # Wait for the producer to close the upstream (its connection is free on return).
            # A second cancellation of our own caller meanwhile still propagates.
            await asyncio.wait([task])

    @property
    def role(self) -> str:
        """Where this caller's chunks come from: ``"leader"`` (its call read the provider),
        ``"follower"`` (it shares another call's upstream in this process), ``"relay"``
        (another process's, through Redis) or ``"cache"`` (a stored answer); known once the
        first chunk has arrived (``""`` before the block is entered)."""
        feed = self._feed
        if feed is not None:
            if feed.source == "cache":
                return "cache"
            if feed.source == "relay" and self._role == "leader":
                return "relay"
        return self._role

    # -- iteration -------------------------------------------------------------

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> StreamChunk:
        feed = self._feed
        if feed is None or self._state == "new":
            raise ClientStateError("use the stream inside `async with ai.stream(...) as stream:`")
        if self._state != "open":
            raise StopAsyncIteration
        i = self._next
        waited = False
        while i >= len(feed.chunks):
            if feed._rest is not None:  # a stored answer's chunks after the first
                if not waited:
                    # The loop is given back before the cut, not after it (below): other
                    # readers' first chunks do not wait for this reader's cut either.
                    await asyncio.sleep(0)
                    waited = True
                feed.cut_rest()  # (idempotent: another reader may have cut it meanwhile)
                continue
            if feed.done:
                self._end(feed)
                raise StopAsyncIteration
            lent = feed._lent
            if lent is not None and feed.readers == 1 and not lent.busy:
                # The only reader, every chunk read: read the upstream in this task. Its
                # chunks are live ones, delivered as a raw read would (no extra yield: a
                # run of chunks without a suspension is at most what one transport read
                # brought, and the next read waits for the loop).
                await lent.read()
                waited = True
                continue
            await feed.wait()
            waited = True
        if self._replay == "paced" and feed.source == "cache":
            feed.cut_rest()  # the recorded gaps, from the first chunk's
            gap = min(feed.gaps_ms[i] / 1000.0, self._max_gap_s)
            if gap > 0:
                await asyncio.sleep(gap)
                waited = True
        if not waited and i % _YIELD_EVERY == 1:
            # Chunks already here (a replay, or a late joiner catching up) would otherwise be
            # handed over without ever giving the loop back: one reader draining a long replay
            # would hold every other caller's first chunk until it ended. The first chunk goes
            # out at once and the loop is given back right after it (then every 8 chunks), so
            # concurrent readers' first chunks do not queue behind this reader's next ones.
            await asyncio.sleep(0)
        self._next = i + 1
        if self.ttft_ms is None:
            self.ttft_ms = (_perf() - self._start) * 1000.0
        return StreamChunk(feed.chunks[i], i, i in feed.restarts)

    def _end(self, feed: UpstreamFeed) -> None:
        if feed.error is not None:
            self._state = "failed"
            self._detach_quietly()
            raise _copy_error(feed.error)
        assert feed.response is not None
        self._state = "ended"
        self._detach_quietly()
        response = feed.response
        if self._finalize is not None:
            response = self._finalize(self, response)
        else:
            response = replace(response, metadata=dict(response.metadata))
        self._response = response

    def _detach_quietly(self) -> None:
        if self._attached and self._feed is not None:
            self._attached = False
            self._feed.detach()  # the feed is done: nothing to cancel

    # -- the outcome -----------------------------------------------------------

    @property
    def response(self) -> ChatResponse:
        """The whole answer, once iteration has ended normally.

        Before that, :class:`~samplemind_core.ClientStateError` (iterate to the end
        first); after a failed or abandoned stream too.
        """
        if self._response is None:
            if self._state == "failed":
                raise ClientStateError("the stream failed: there is no response")
            raise ClientStateError(
                "stream.response is set after the last chunk: iterate the stream to its end first"
            )
        return self._response

    @property
    def text(self) -> str:
        """The text delivered to this caller so far."""
        if self._feed is None:
            return ""
        return "".join(self._feed.chunks[: self._next])


# -- what the cache stores, and how a stored answer is replayed ----------------

CHUNKS_KEY: Final = "stream_chunks"
"""The metadata key under which entries stored before 2026-12-06 (decision 0142) kept a
stream's chunk boundaries. Boundaries now travel in the envelope's optional trailing
field (:func:`chunk_boundaries`, decision 0220); an old entry's key is still read (and
replays its chunks) and is removed from every response handed to a caller."""

_WORDS: Final = re.compile(r"\s*\S+|\s+$")
_INT: Final = frozenset({int})
_NUMBER: Final = frozenset({int, float})
_ZERO: Final = 0.0
"""``_ZERO.__le__(x)`` is ``0 <= x`` in C (a float: ``int.__le__`` of a float is NotImplemented)."""


def split_text(text: str) -> list[str]:
    """How a stored answer that was not streamed is replayed: one chunk per word.

    Each chunk is a word with the whitespace before it (as providers' tokens
    come: ``"Hello"``, ``" world"``); trailing whitespace is a last chunk of its
    own. The chunks joined are exactly ``text``; an empty text has no chunk.

    >>> split_text("Hello  big\\nworld ")
    ['Hello', '  big', '\\nworld', ' ']
    """
    return _WORDS.findall(text)


def chunk_boundaries(feed: UpstreamFeed) -> dict[str, list[Any]]:
    """The chunk boundaries of ``feed``'s completed stream, stored in the envelope's
    trailing field: ``{"lengths": [...], "gaps_ms": [...]}`` (each chunk's length in
    characters, and the recorded gap before it, 0.1 ms)."""
    return {
        "lengths": [len(c) for c in feed.final_chunks],
        "gaps_ms": [round(g, 1) for g in feed.gaps_ms[feed.final_start :]],
    }


def stored_chunks(
    response: ChatResponse, extra: Any = None
) -> tuple[list[str], list[float] | None]:
    """The chunks (and recorded gaps) to replay a cached ``response``.

    ``extra``: the envelope's trailing field (:func:`chunk_boundaries`). An entry
    stored before it moved there keeps them under ``metadata[CHUNKS_KEY]``: read
    when ``extra`` has none, and always popped from ``response.metadata``. A stored
    stream gives back its own chunk texts in order; a stored answer that was not
    streamed (or whose boundaries do not add up) is split by :func:`split_text`
    (no gaps recorded). :meth:`UpstreamFeed.replay_stored` cuts the same chunks lazily.
    """
    text = response.text
    meta = _boundaries(response, extra)
    lengths = _valid_lengths(meta, len(text))
    if lengths is None:
        return split_text(text), None
    chunks: list[str] = []
    at = 0
    for n in lengths:
        chunks.append(text[at : at + n])
        at += n
    return chunks, _valid_gaps(meta, len(chunks))


def _boundaries(response: ChatResponse, extra: Any) -> Any:
    """The stored boundaries: ``extra`` when it is a dict, else an old entry's
    ``metadata[CHUNKS_KEY]`` (popped from the response in every case)."""
    old = response.metadata.pop(CHUNKS_KEY, None)
    return extra if isinstance(extra, dict) else old


def _valid_lengths(meta: Any, size: int) -> list[int] | None:
    """The chunk lengths in the stored boundaries ``meta`` when they are positive ints
    adding up to ``size`` (the text's length), else None (the text is split into words)."""
    if not isinstance(meta, dict):
        return None
    lengths = meta.get("lengths")
    # C-level loops (issuperset(map(type, ...)), min, sum) instead of a generator of
    # isinstance() calls: these checks once ran before a replay's first chunk (now after it).
    if (
        isinstance(lengths, list)
        and _INT.issuperset(map(type, lengths))
        and (not lengths or min(lengths) > 0)
        and sum(lengths) == size
    ):
        return lengths
    return None


def _valid_gaps(meta: Any, n: int) -> list[float] | None:
    """The recorded gaps in the stored boundaries ``meta`` when they are ``n`` numbers
    >= 0, else None."""
    gaps = meta.get("gaps_ms") if isinstance(meta, dict) else None
    if (
        isinstance(gaps, list)
        and len(gaps) == n
        and set(map(type, gaps)) <= _NUMBER
        and all(map(_ZERO.__le__, gaps))
    ):
        return gaps
    return None


def finalize_stream(stream: ResponseStream, response: ChatResponse) -> ChatResponse:
    """The response one caller gets at the end of its stream (its own object and metadata).

    ``latency_ms``: from the call to the end; ``metadata["ttft_ms"]``: from the call
    to the first chunk with text (``None`` for an answer without text);
    ``metadata["stream"]``: ``{"role", "chunks"}``. A follower of another call's
    upstream gets ``cached=True``, ``cost_usd=0.0``, ``attempts=0`` and
    ``metadata["coalesced"] = True`` (like a coalesced ``complete()``).
    """
    latency_ms = (_perf() - stream._start) * 1000.0
    metadata = dict(response.metadata)
    metadata.pop(CHUNKS_KEY, None)
    role = stream.role
    metadata["ttft_ms"] = stream.ttft_ms
    metadata["stream"] = {"role": role, "chunks": stream._next}
    if role in ("follower", "relay"):
        metadata["coalesced"] = True
        metadata.setdefault(
            "cache", {"latency_ms": response.latency_ms, "cost_usd": response.cost_usd}
        )
        return replace(
            response,
            cached=True,
            cost_usd=0.0,
            attempts=0,
            latency_ms=latency_ms,
            metadata=metadata,
        )
    if role == "cache":
        response.attempts = 0
    return replace(response, latency_ms=latency_ms, metadata=metadata)
