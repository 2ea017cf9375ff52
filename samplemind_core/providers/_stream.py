"""A provider's streamed reply: :class:`ProviderStream` and the decoder base classes.

An adapter's :meth:`~samplemind_core.providers.Provider.open_stream` sends the
native streaming request on the shared client
(:meth:`~samplemind_core.http.HttpClient.open_stream`), checks the status, and
hands the open :class:`~samplemind_core.http.StreamResponse` to a
:class:`ProviderStream` with the adapter's :class:`StreamDecoder`. The stream
reads the body chunk by chunk (:meth:`StreamResponse.read_chunk
<samplemind_core.http.StreamResponse.read_chunk>`), feeds the decoder and yields
each text delta as soon as the bytes that carry it have been parsed.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from .._exceptions import (
    ClientStateError,
    MalformedResponseError,
    ProviderError,
    TransportError,
)
from .._models import ChatResponse, ToolCall, Usage
from ._parse import NDJSONParser, SSEParser, StreamLimitError, StreamSyntaxError

if TYPE_CHECKING:
    from ..http import StreamResponse
    from .base import Provider

__all__ = ["JSONLinesDecoder", "ProviderStream", "SSEDecoder", "StreamDecoder"]


class StreamDecoder(ABC):
    """The state of one streamed reply of one wire format.

    :meth:`feed` takes the body's bytes and appends the text deltas they
    complete to ``out``; it raises the mapped
    :class:`~samplemind_core.ProviderError` for an error event or a malformed
    one. ``done`` turns true at the format's terminal event; :meth:`result` then
    gives the reply (text, model, finish reason, usage, tool calls).
    """

    def __init__(self, provider: Provider, model: str) -> None:
        self.provider = provider
        self.name = provider.name
        self.model = model
        self.done = False
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.input_tokens: Any = 0
        self.output_tokens: Any = 0
        self.tool_calls: list[ToolCall] = []

    @abstractmethod
    def feed(self, chunk: bytes, out: deque[str]) -> None:
        """Parse ``chunk``; append the text deltas it completes to ``out``."""

    def ended(self) -> bool:
        """Whether the format's terminal event has been seen."""
        return self.done

    def at_eof(self) -> None:
        """The body ended: raise when the terminal event never came."""
        if not self.ended():
            raise self.provider.malformed("the stream ended without its terminal event")

    def emit(self, text: Any, out: deque[str]) -> None:
        if not isinstance(text, str):
            raise self.provider.malformed("a text delta is not a string")
        if text:
            self.text.append(text)
            out.append(text)

    def result(self) -> ChatResponse:
        return ChatResponse(
            text="".join(self.text),
            provider=self.name,
            model=self.model,
            tool_calls=self.tool_calls,
            finish_reason=self.finish_reason,
            usage=Usage(int(self.input_tokens or 0), int(self.output_tokens or 0)),
        )

    def json(self, data: str | bytes) -> dict[str, Any]:
        """An event's JSON object, or MalformedResponseError."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise self.provider.malformed("a stream event is not valid JSON") from exc
        if not isinstance(obj, dict):
            raise self.provider.malformed("a stream event is not a JSON object")
        return obj


class SSEDecoder(StreamDecoder):
    """A decoder of ``text/event-stream``: subclasses implement :meth:`event`."""

    def __init__(self, provider: Provider, model: str, max_line_bytes: int) -> None:
        super().__init__(provider, model)
        self.parser = SSEParser(max_line_bytes)

    def feed(self, chunk: bytes, out: deque[str]) -> None:
        if self.done:
            return  # bytes after the terminal event are ignored
        events, error = self.parser.parse(chunk)
        for name, data in events:
            self.event(name, data, out)
            if self.done:
                return
        if error is not None:
            raise error

    def at_eof(self) -> None:
        if not self.done:
            out: deque[str] = deque()
            for name, data in self.parser.finish():
                self.event(name, data, out)
                if self.done:
                    break
            if out:
                raise self.provider.malformed("text after the end of the stream")
        super().at_eof()

    @abstractmethod
    def event(self, name: str, data: str, out: deque[str]) -> None:
        """Handle one complete event."""


class JSONLinesDecoder(StreamDecoder):
    """A decoder of NDJSON: subclasses implement :meth:`line`."""

    def __init__(self, provider: Provider, model: str, max_line_bytes: int) -> None:
        super().__init__(provider, model)
        self.parser = NDJSONParser(max_line_bytes)

    def feed(self, chunk: bytes, out: deque[str]) -> None:
        if self.done:
            return
        for obj in self.parser.objects(chunk):
            self.line(obj, out)
            if self.done:
                return

    def at_eof(self) -> None:
        if not self.done:
            out: deque[str] = deque()
            for obj in self.parser.finish():
                self.line(obj, out)
            if out:
                raise self.provider.malformed("text after the end of the stream")
        super().at_eof()

    @abstractmethod
    def line(self, obj: dict[str, Any], out: deque[str]) -> None:
        """Handle one JSON object."""


_BAD_EVENT = (KeyError, IndexError, TypeError, AttributeError, ValueError)


class ProviderStream:
    """One provider's streamed reply, read as text deltas.

    ``async for text in stream`` yields the non-empty text deltas in order,
    each as soon as its bytes are parsed (metadata frames yield nothing). It
    raises, during iteration, :class:`~samplemind_core.MalformedResponseError`
    (a malformed event, a line over ``HttpConfig.stream_max_line_bytes``, a
    stream that ends without its terminal event), the mapped
    :class:`~samplemind_core.ProviderError` of an error event (rate limit →
    ``RateLimitError``, overloaded / 5xx → ``ProviderServerError``, ...), and
    the client's :class:`~samplemind_core.TransportError` subclasses for a cut
    connection. After such an error (or a cancelled read, unless the manager
    made it resumable) the stream is spent: a further ``__anext__`` raises
    :class:`~samplemind_core.ClientStateError`.

    :attr:`response` is the :class:`~samplemind_core.ChatResponse` once the
    iteration ended normally (joined text, provider, model, finish reason,
    usage, assembled tool calls, ``cost_usd`` at the adapter's price,
    ``attempts``, ``latency_ms`` from the open to the end).

    :meth:`aclose` (idempotent) closes the upstream response and frees its
    connection, also after a cancelled ``__anext__``; ``async with`` calls it.

    :attr:`upstream` is the open :class:`~samplemind_core.http.StreamResponse`
    (status, headers, attempts); :attr:`http_response` the same head as an
    ``httpx.Response`` (see there).
    """

    __slots__ = (
        "_closed",
        "_decoder",
        "_error",
        "_failed",
        "_finished",
        "_http_response",
        "_pending",
        "_provider",
        "_response",
        "_resume",
        "_started",
        "_upstream",
        "model",
        "provider",
    )

    def __init__(
        self,
        provider: Provider,
        model: str,
        upstream: StreamResponse,
        decoder: StreamDecoder,
        started: float,
    ) -> None:
        self.provider: str = provider.name
        self.model: str = model
        self._provider = provider
        self._upstream = upstream
        self._http_response: httpx.Response | None = None
        self._decoder = decoder
        self._started = started
        self._pending: deque[str] = deque()
        self._error: BaseException | None = None
        self._failed = False
        self._resume = False
        self._finished = False
        self._closed = False
        self._response: ChatResponse | None = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "done" if self._finished else "open"
        return f"<ProviderStream {self.provider}/{self.model} {state}>"

    @property
    def upstream(self) -> StreamResponse:
        """The upstream reply (status, headers, attempts; its body belongs to the stream)."""
        return self._upstream

    @property
    def http_response(self) -> httpx.Response:
        """The upstream reply's head as an ``httpx.Response``: status, headers, HTTP
        version and ``extensions["samplemind"]``; its body belongs to the stream.

        On httpx's transport (or an injected one) the response itself; on the raw
        aiohttp path (the default transport) one built from :attr:`upstream` on
        first access, whose ``content`` is empty (decision 0520).
        """
        if self._http_response is None:
            self._http_response = self._upstream.as_httpx()
        return self._http_response

    @property
    def response(self) -> ChatResponse:
        """The whole reply, once iteration ended normally; ClientStateError before."""
        if self._response is None:
            raise ClientStateError(
                f"{self.provider} stream: the response is known only after the last chunk "
                "(iterate the stream to its end first)"
            )
        return self._response

    def __aiter__(self) -> ProviderStream:
        return self

    async def __anext__(self) -> str:
        pending = self._pending
        while True:
            if pending:
                return pending.popleft()
            if self._error is not None:
                error, self._error = self._error, None
                self._failed = True
                raise error
            if self._finished:
                raise StopAsyncIteration
            if self._failed or self._closed:
                raise ClientStateError(
                    f"{self.provider} stream is "
                    + ("spent after an error or a cancelled read" if self._failed else "closed")
                    + ": open a new stream"
                )
            try:
                chunk = await self._upstream.read_chunk()
            except TransportError:
                self._failed = True
                await self.aclose()
                raise
            except asyncio.CancelledError:
                # A cancelled read: the caller closes the stream, unless it asked to resume
                # (_allow_resume) on a transport whose cancelled read loses no byte.
                if not self._resume:
                    self._failed = True
                raise
            except BaseException:
                self._failed = True
                raise
            if not chunk:  # the end of the body
                self._at_eof()
                await self.aclose()  # the body is read: the connection is back in the pool
                continue
            try:
                self._decoder.feed(chunk, pending)
            except ProviderError as exc:
                self._error = exc
            except (StreamLimitError, StreamSyntaxError) as exc:
                self._error = self._malformed(str(exc), exc)
            except _BAD_EVENT as exc:
                self._error = self._malformed(
                    f"a stream event does not follow the wire format ({type(exc).__name__})", exc
                )
            if self._error is not None:
                await self.aclose()  # free the connection before reporting the error

    def _allow_resume(self) -> bool:
        """From now on a cancelled ``__anext__`` leaves the stream readable, from any task,
        with no byte lost or repeated, when the transport's read is resumable (the raw
        aiohttp path: its buffer and the decoder's partial line are kept); returns whether
        it is. Used by the manager to lend the read to a caller's task (decision 0800)."""
        self._resume = self._upstream._resumable
        return self._resume

    def _malformed(self, what: str, cause: BaseException) -> MalformedResponseError:
        err = self._provider.malformed(what)
        err.__cause__ = cause
        return err

    def _at_eof(self) -> None:
        try:
            self._decoder.at_eof()
            reply = self._decoder.result()
        except ProviderError as exc:
            self._error = exc
            return
        except (StreamLimitError, StreamSyntaxError, *_BAD_EVENT) as exc:
            self._error = self._malformed(str(exc), exc)
            return
        provider = self._provider
        reply.cost_usd = provider.cost(reply.model or self.model, reply.usage)
        upstream = self._upstream
        reply.attempts = upstream.attempts
        reply.metadata["retry_wait_s"] = upstream.retry_wait_s
        reply.latency_ms = (time.perf_counter() - self._started) * 1000.0
        self._response = reply
        self._finished = True

    async def aclose(self) -> None:
        """Close the upstream response and free its connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._upstream.aclose()

    async def __aenter__(self) -> ProviderStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
