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
The upstream is read by a task of its own (started by the manager), never by
a caller: a caller that leaves (break, error, cancellation) only detaches; the
last one to leave before the end cancels that task, which closes the upstream
response and frees its connection before :meth:`ResponseStream.aclose` returns.
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
    Created inside the reading task; :meth:`stop` before the task does anything else.
    """

    __slots__ = ("_handle", "_loop", "_task", "fired", "idle_s", "last")

    def __init__(self, idle_s: float) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._loop = loop
        self._task = task
        self.idle_s = idle_s
        self.last = loop.time()
        self.fired = False
        self._handle: asyncio.TimerHandle | None = loop.call_at(self.last + idle_s, self._check)

    def touch(self) -> None:
        self.last = self._loop.time()

    def _check(self) -> None:
        due = self.last + self.idle_s
        if self._loop.time() >= due:
            self._handle = None
            self.fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)

    def expired(self) -> bool:
        """Whether the watch cancelled the task (the cancellation is then undone)."""
        if not self.fired:
            return False
        self.fired = False
        return self._task.uncancel() == 0

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


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
