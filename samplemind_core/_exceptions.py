"""The one exception tree of ``samplemind_core``.

Every error the layer raises is a :class:`SampleMindError`. Errors of the
libraries underneath (``redis.*``, ``httpx.*``) are translated at the seam
with ``raise ... from exc`` so that callers only ever catch ours::

    SampleMindError
    ├── ConfigError                 bad or missing settings
    ├── ClientStateError            a client used before open / after close
    ├── CacheError                  a Redis-side failure (never escapes ResponseCache.get/set)
    │   ├── CacheBackendError       Redis unreachable, timed out, refused the command
    │   └── CacheValueError         corrupt, foreign or oversized value
    ├── TransportError              the HTTP exchange failed before a usable reply
    │   ├── ConnectError            could not connect
    │   ├── RequestTimeout          connect / read / write / pool timeout
    │   └── RemoteProtocolError     the server ended the connection (disconnect, HTTP/2 GOAWAY)
    ├── ProviderError               the provider answered, but not with a usable reply
    │   ├── RateLimitError          429 (``retry_after`` in seconds when the server said)
    │   ├── ProviderServerError     5xx
    │   ├── AuthenticationError     401 / 403
    │   ├── BadRequestError         other 4xx (never retried)
    │   └── MalformedResponseError  the body is not what the wire format promises
    ├── AllProvidersFailedError     every provider of the chain failed (``attempts`` lists each)
    └── StreamInterrupted           a stream failed after text had reached the caller
                                    (``partial_text``, ``provider``, ``attempts``)

Messages never contain API keys or full prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AllProvidersFailedError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "CacheBackendError",
    "CacheError",
    "CacheValueError",
    "ClientStateError",
    "ConfigError",
    "ConnectError",
    "MalformedResponseError",
    "ProviderError",
    "ProviderServerError",
    "RateLimitError",
    "RemoteProtocolError",
    "RequestTimeout",
    "SampleMindError",
    "StreamInterrupted",
    "TransportError",
]


class SampleMindError(Exception):
    """Base class of every error raised by ``samplemind_core``."""


class ConfigError(SampleMindError, ValueError):
    """A setting is missing, malformed or contradicts another one."""


class ClientStateError(SampleMindError, RuntimeError):
    """A client was used in a state that does not allow it (closed, other event loop)."""


class CacheError(SampleMindError):
    """A Redis-side failure. ``ResponseCache`` counts these and never lets them escape."""


class CacheBackendError(CacheError):
    """Redis is unreachable, too slow (per-operation timeout) or refused the command."""


class CacheValueError(CacheError):
    """A stored value is corrupt, foreign (not our envelope) or over the size limit."""


class TransportError(SampleMindError):
    """The HTTP exchange failed before a usable reply arrived."""

    retryable: bool = True


class ConnectError(TransportError):
    """The connection could not be established."""


class RequestTimeout(TransportError):
    """A connect, read, write or pool timeout expired."""


class RemoteProtocolError(TransportError):
    """The server ended the connection (disconnect mid-body, HTTP/2 GOAWAY)."""


class ProviderError(SampleMindError):
    """A provider answered, but not with a usable reply.

    ``provider`` names the provider, ``status`` is the HTTP status (0 when none),
    ``retryable`` says whether the same call may succeed if repeated.
    """

    retryable: bool = False

    def __init__(self, message: str, *, provider: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class RateLimitError(ProviderError):
    """429 Too Many Requests. ``retry_after`` is in seconds when the server said."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.retry_after = retry_after


class ProviderServerError(ProviderError):
    """5xx from the provider (502/503/504 are retried)."""

    retryable = True


class AuthenticationError(ProviderError):
    """401 / 403: the key is missing, wrong or lacks permission."""


class BadRequestError(ProviderError):
    """Any other 4xx: the request itself is wrong; repeating it cannot help."""


class MalformedResponseError(ProviderError):
    """The body does not follow the provider's wire format (bad JSON, no choices, ...)."""

    retryable = True


@dataclass(frozen=True, slots=True)
class Attempt:
    """One provider attempt inside :class:`AllProvidersFailedError`."""

    provider: str
    model: str
    error: str
    latency_ms: float = 0.0


class AllProvidersFailedError(SampleMindError):
    """Every provider of the chain failed; ``attempts`` lists each one and its cause."""

    def __init__(self, attempts: list[Attempt]) -> None:
        self.attempts = attempts
        lines = "; ".join(f"{a.provider}/{a.model}: {a.error}" for a in attempts)
        super().__init__(f"all {len(attempts)} provider attempt(s) failed: {lines}")


class StreamInterrupted(SampleMindError):
    """A stream failed after text had already been handed to the caller.

    No transparent fallback is attempted then (the caller has shown the text;
    a second provider would write a different answer after it), unless the
    stream was opened with ``on_interrupt="restart"``. Nothing is cached.

    ``partial_text`` is the text delivered before the failure (of the stream
    that failed), ``provider`` / ``model`` name who was streaming, ``chunks``
    counts the chunks delivered by it, ``cause`` describes the failure (the
    exception is also chained as ``__cause__`` where it can be), and
    ``attempts`` lists every provider failure of this stream (as in
    :class:`AllProvidersFailedError`). The message never contains the text.
    """

    def __init__(
        self,
        *,
        partial_text: str,
        provider: str,
        model: str,
        chunks: int,
        cause: str,
        attempts: list[Attempt] | None = None,
    ) -> None:
        self.partial_text = partial_text
        self.provider = provider
        self.model = model
        self.chunks = chunks
        self.cause = cause
        self.attempts = list(attempts or [])
        super().__init__(
            f"stream from {provider}/{model} interrupted after {chunks} chunk(s) "
            f"({len(partial_text)} characters): {cause}"
        )

    def copy(self) -> StreamInterrupted:
        """A fresh instance with the same fields (one per caller of a shared stream)."""
        new = StreamInterrupted(
            partial_text=self.partial_text,
            provider=self.provider,
            model=self.model,
            chunks=self.chunks,
            cause=self.cause,
            attempts=self.attempts,
        )
        new.__cause__ = self.__cause__
        return new
