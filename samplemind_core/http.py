"""The shared async HTTP client: one pool per event loop, retries, typed errors.

>>> import asyncio, httpx
>>> from samplemind_core.http import HttpClient
>>> async def demo() -> int:
...     transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
...     async with HttpClient(transport=transport) as http:
...         response = await http.request("GET", "http://127.0.0.1/ping")
...     return response.extensions["samplemind"]["attempts"]
>>> asyncio.run(demo())
1

Lifecycle
    :meth:`HttpClient.shared` returns the client of the *running* event loop
    (one per loop, kept in a ``WeakKeyDictionary``; a client is never reused
    across loops). ``async with HttpClient(...)`` and :meth:`HttpClient.aclose`
    for private clients. The transport is opened lazily on the first request.
    A closed client, or one used from another loop, raises
    :class:`~samplemind_core.ClientStateError` saying what to do instead.

Transports
    Injected (``transport=``: ``httpx.MockTransport``, the fixtures' world
    transport, any ``httpx.AsyncBaseTransport``) or built from
    :class:`~samplemind_core.HttpConfig`: ``"httpx"`` (httpx's own pool, HTTP/1.1
    or HTTP/2 with ``http2=True``) or ``"aiohttp"`` (``httpx_aiohttp.AiohttpTransport``,
    HTTP/1.1 only; aiohttp is imported only when chosen). Pool: 100
    connections / 50 keep-alive; timeouts: connect 5 s, read 30 s, pool 10 s. gzip,
    deflate and brotli are accepted and decoded by ``httpx.Response``.

    httpx's own pool (httpcore 1.0) is guarded against two defects that lock it
    up under bursts (:mod:`samplemind_core._pool_guard`): at most
    ``max_connections`` requests are inside it at once (the others wait, first
    come first served, for at most the pool timeout), and connections that
    nobody will connect leave it. A response holds its slot until it is closed.

    The default is ``HttpConfig.transport="auto"``: the aiohttp transport, or
    httpx's own for HTTP/2 (the measurements behind that choice are in
    ``docs/measurements/2026-12-01-moved-from-core-docstrings.md``;
    ``samplemind-bench run --live --suite client`` measures them again).
    respx's mocker only intercepts httpx's own transport: tests that rely on it
    pin ``transport="httpx"`` or inject a transport.

Streams
    :meth:`HttpClient.stream` yields an ``httpx.Response`` on every transport.
    :meth:`HttpClient.open_stream` (what the providers use) returns a
    :class:`StreamResponse`; on the aiohttp transport built from the config (no
    injected transport) it sends straight on the client's ``aiohttp.ClientSession``,
    the same session and connection limit the aiohttp transport sends
    :meth:`HttpClient.request` with: each URL parsed once into a ``yarl.URL``, one
    ``aiohttp.ClientTimeout`` per headers bound, no httpx ``Request``/``Response``/
    ``Headers`` objects (decision 0520). Retries, ``Retry-After``, the error
    mapping and the timeouts are those of the httpx path; aiohttp decodes gzip,
    deflate (and brotli when installed). Otherwise ``open_stream`` wraps the
    :meth:`stream` path.

Hot path
    Requests go straight to the transport (``transport.handle_async_request``)
    rather than through ``httpx.AsyncClient.send``: no cookie jar, auth flow,
    redirect machinery or environment proxies (``trust_env`` would read
    ``os.environ``, which only ``Settings.from_env`` may do). JSON bodies are
    encoded once with orjson, so retries re-send the same bytes. The first
    attempt runs without tenacity; only a retryable outcome enters the
    tenacity loop.

Retries
    Up to ``RetryConfig.attempts`` (3) on connect errors, timeouts, connections
    ended by the server (``RemoteProtocolError``, ``ReadError``/``WriteError``,
    aiohttp's ``ServerDisconnectedError``/``ClientPayloadError``, HTTP/2 GOAWAY)
    and on the statuses :data:`RETRY_STATUSES` (429, 502, 503, 504, and 529,
    Anthropic's "overloaded"). 500 and every other 4xx are never retried (the
    router falls back instead). Waits are exponential with full jitter; a
    ``Retry-After`` (seconds or HTTP-date, or ``retry-after-ms``) replaces the
    backoff and is capped by ``retry_after_cap_s``; the total of the waits never
    exceeds ``budget_s`` (a wait that would exceed it ends the retries). When
    the attempts run out on a retryable status the last response is returned;
    on a transport error our :class:`~samplemind_core.TransportError` subclass is
    raised ``from`` the original. Every response carries
    ``response.extensions["samplemind"] = {"attempts": n, "retry_wait_s": s}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import functools
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeVar

import httpx
import orjson

from ._config import HttpConfig, RetryConfig, mask_url, mask_urls_in
from ._exceptions import (
    ClientStateError,
    ConfigError,
    ConnectError,
    RemoteProtocolError,
    RequestTimeout,
    TransportError,
)

if TYPE_CHECKING:
    import ssl

    import aiohttp
    import yarl
    from tenacity import RetryCallState

__all__ = [
    "RETRY_STATUSES",
    "HttpClient",
    "StreamResponse",
    "backoff_wait",
    "build_transport",
    "iter_body",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)

RETRY_STATUSES: Final = frozenset({429, 502, 503, 504, 529})
"""Statuses the client retries. 500 is not retried: the router falls back instead."""

_USER_AGENT: Final = "samplemind-core/0.1.0"
_URL_CACHE_SIZE: Final = 1024
_INF: Final = float("inf")

Sleep = Callable[[float], Awaitable[None]]


class _Reply(Protocol):
    """What the retry loop reads of a reply: ``httpx.Response`` and :class:`StreamResponse`."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


_R = TypeVar("_R", bound=_Reply)

_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, HttpClient] = (
    weakref.WeakKeyDictionary()
)


def _accept_encoding() -> str:
    """``gzip, deflate`` plus ``br`` when a brotli decoder is installed (httpx decodes it)."""
    import importlib.util

    for name in ("brotli", "brotlicffi"):
        if importlib.util.find_spec(name) is not None:
            return "gzip, deflate, br"
    return "gzip, deflate"


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait, or ``None``.

    Reads ``retry-after-ms`` (OpenAI) first, then ``Retry-After`` as delta
    seconds or an HTTP-date. Negative or unparsable values give ``None``/0.
    ``headers``: ``httpx.Headers``, aiohttp's headers, or any mapping whose
    ``get`` ignores case (a plain dict needs lower-case names).

    >>> parse_retry_after(httpx.Headers({"Retry-After": "7"}))
    7.0
    >>> parse_retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}),
    ...                   now=1445412480.0)
    10.0
    >>> parse_retry_after(httpx.Headers({})) is None
    True
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_wait(retry: RetryConfig, attempt: int, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): full-jitter exponential.

    ``min(backoff_max_s, backoff_base_s * 2 ** (attempt - 1))``, times a uniform
    draw in [0, 1) when ``retry.jitter`` is on.
    """
    ceiling = min(retry.backoff_max_s, retry.backoff_base_s * 2.0 ** (attempt - 1))
    if not retry.jitter:
        return ceiling
    draw: float = (rng or random).uniform(0.0, ceiling)
    return draw


def _where(request: httpx.Request) -> str:
    """Method and URL without query string (never a secret, never a prompt)."""
    url = request.url
    return f"{request.method} {url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"


def _credentials_to_header(method: str, url: str, headers: dict[str, str]) -> str:
    """``url`` without its userinfo, which becomes a Basic ``authorization`` header.

    Both transports then send the same request (aiohttp would otherwise turn the
    userinfo into Basic auth, and httpx's transport would drop it). A URL with
    credentials on a request that has its own ``authorization`` header (an API
    key) is refused with :class:`~samplemind_core.ConfigError`: one of them
    would be silently lost.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url  # refused with its reason when it is sent
    if not parsed.userinfo:
        return url
    if "authorization" in headers:
        raise ConfigError(
            f"{method} {mask_url(url)}: the URL carries credentials and the request has "
            "its own Authorization header (the provider's API key); keep only one of them"
        )
    token = base64.b64encode(f"{parsed.username}:{parsed.password}".encode()).decode("ascii")
    headers["authorization"] = f"Basic {token}"
    return str(parsed.copy_with(userinfo=b""))


def _map_aiohttp_error(exc: BaseException) -> type[TransportError] | None:
    """Our class for an aiohttp error (aiohttp is already imported when one exists)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return RequestTimeout
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | aiohttp.ClientConnectionError
        | aiohttp.ClientResponseError,
    ):
        return RemoteProtocolError
    return None


def _map_error(
    exc: BaseException, request: httpx.Request, attempt: int, *, reading: bool = False
) -> TransportError:
    """Translate an httpx (or aiohttp, via httpx_aiohttp) error into our tree.

    ``reading``: the error came while a streamed body was read (after the headers).
    """
    cls: type[TransportError] | None = None
    retryable = True
    origin = exc.__cause__ if isinstance(exc, httpx.TransportError) else exc
    if origin is not None and type(origin).__module__.startswith("aiohttp"):
        # httpx_aiohttp maps every ClientConnectionError (a server disconnect
        # included) to httpx.ConnectTimeout: look at the aiohttp cause instead.
        cls = _map_aiohttp_error(origin)
    if cls is None:
        if isinstance(exc, httpx.ConnectError):
            cls = ConnectError
        elif isinstance(exc, httpx.TimeoutException):
            cls = RequestTimeout
        elif isinstance(
            exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError | httpx.CloseError
        ):
            cls = RemoteProtocolError
        else:  # LocalProtocolError, UnsupportedProtocol, ProxyError, DecodingError, ...
            cls = TransportError
            retryable = False
    when = "while reading the streamed body" if reading else f"on attempt {attempt}"
    detail = mask_urls_in(str(exc))
    userinfo = request.url.userinfo.decode("ascii", "replace")
    if userinfo:  # the library's message may quote the URL: never its password
        detail = detail.replace(userinfo, "***")
        if request.url.password:
            detail = detail.replace(request.url.password, "***")
    err = cls(f"{_where(request)} failed {when}: {type(exc).__name__}: {detail}")
    if not retryable:
        err.retryable = False
    return err


@functools.cache
def _tls_context(kind: str) -> ssl.SSLContext:
    """The TLS context of one kind of transport (``"aiohttp"``, ``"h1"``, ``"h2"``), made once
    per process: what httpx builds for ``verify=True`` without the environment (certifi's CA
    bundle, hostname checks, ``CERT_REQUIRED``), as each transport built before.

    Loading the CA bundle costs about 40 ms of CPU, which every client paid again. httpcore
    sets the ALPN list on the context before each handshake (``h2`` offered only with
    ``http2``) and aiohttp sets none, so the kinds never share a context.
    """
    return httpx.create_ssl_context(verify=True, trust_env=False)


def _map_raw_error(
    exc: BaseException, method: str, where: str, attempt: int, *, reading: bool = False
) -> TransportError:
    """Translate an error of the raw aiohttp path into our tree, as :func:`_map_error` does
    for the same error met through httpx-aiohttp (``where``: the URL without its query)."""
    cls = _map_aiohttp_error(exc)
    retryable = cls is not None
    when = "while reading the streamed body" if reading else f"on attempt {attempt}"
    err = (cls or TransportError)(
        f"{method} {where} failed {when}: {type(exc).__name__}: {mask_urls_in(str(exc))}"
    )
    if not retryable:  # an invalid or non-HTTP URL, a refused header: retrying cannot help
        err.retryable = False
    return err


def _aiohttp_pool(config: HttpConfig) -> tuple[httpx.AsyncBaseTransport, aiohttp.ClientSession]:
    """The aiohttp transport of ``config`` and the ``ClientSession`` it sends with.

    One session, one connector, one connection limit (``max_connections``) for
    :meth:`HttpClient.request` (through httpx-aiohttp) and the raw stream path of
    :meth:`HttpClient.open_stream`; closing the transport closes the session. No
    cookie jar (as on httpx's own transport, which the client drives without one)
    and no environment proxies (``trust_env=False``).
    """
    transport = build_transport(config)
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=config.max_connections,
        keepalive_timeout=config.keepalive_expiry_s,
        ssl=getattr(transport, "ssl_context", True),
    )
    session = aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
    )
    transport.client = session  # type: ignore[attr-defined]
    return transport, session


async def _send_raw(
    session: aiohttp.ClientSession,
    method: str,
    target: tuple[yarl.URL, str],
    content: bytes | None,
    headers: dict[str, str],
    timeouts: aiohttp.ClientTimeout,
    seconds: float | None,
    attempt: int,
) -> StreamResponse:
    """One attempt of the raw stream path: the headers, then (not 2xx) the error body."""
    url, where = target
    try:
        if seconds is None:
            raw = await session.request(
                method, url, data=content, headers=headers, timeout=timeouts, allow_redirects=False
            )
        else:
            scope = asyncio.timeout(seconds)
            try:
                async with scope:
                    raw = await session.request(
                        method,
                        url,
                        data=content,
                        headers=headers,
                        timeout=timeouts,
                        allow_redirects=False,
                    )
            except TimeoutError as exc:
                if not scope.expired():
                    raise
                raise RequestTimeout(
                    f"{method} {where} failed on attempt {attempt}: ReadTimeout: "
                    f"no response headers within {seconds:g} s"
                ) from exc
    except (TransportError, asyncio.CancelledError):
        raise
    except Exception as exc:
        # aiohttp's own errors, its timeouts, and the ValueError of a header it refuses
        # (a newline in a value: not retryable, as httpx's LocalProtocolError)
        if isinstance(exc, TimeoutError | ValueError) or type(exc).__module__.startswith("aiohttp"):
            raise _map_raw_error(exc, method, where, attempt) from exc
        raise
    response = _AiohttpStreamResponse(raw, method, where)
    status = raw.status
    if 200 <= status < 300:
        return response
    try:  # an error reply: read its body (for the error's message), free the connection
        response.content = await raw.read()
    except Exception as exc:
        if isinstance(exc, TimeoutError) or type(exc).__module__.startswith("aiohttp"):
            raise _map_raw_error(exc, method, where, attempt, reading=True) from exc
        raise
    finally:
        raw.release()
    return response


def build_transport(config: HttpConfig, *, http1: bool = True) -> httpx.AsyncBaseTransport:
    """The transport ``config`` describes, with its pool limits (used by :class:`HttpClient`).

    ``http2=True`` negotiates HTTP/2 by ALPN over TLS and keeps HTTP/1.1 for
    cleartext URLs; ``http1=False`` (with ``http2=True``) forces HTTP/2 with
    prior knowledge (h2c), e.g. for the local emulator::

        HttpClient(transport=build_transport(HttpConfig(http2=True), http1=False))
    """
    limits = httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_keepalive_connections,
        keepalive_expiry=config.keepalive_expiry_s,
    )
    if config.effective_transport == "aiohttp":
        if config.http2:
            raise ConfigError(
                "the aiohttp transport speaks HTTP/1.1 only: use transport='httpx' for HTTP/2 "
                "(SAMPLEMIND_TRANSPORT=httpx) or turn http2 off"
            )
        try:
            from httpx_aiohttp import AiohttpTransport
        except ImportError as exc:
            raise ConfigError(
                "transport='aiohttp' needs aiohttp and httpx-aiohttp: "
                "pip install aiohttp httpx-aiohttp (core dependencies of samplemind-core)"
            ) from exc
        transport: httpx.AsyncBaseTransport = AiohttpTransport(
            verify=_tls_context("aiohttp"), limits=limits, trust_env=False
        )
        return transport
    if not http1 and not config.http2:
        raise ConfigError("http1=False needs HttpConfig(http2=True)")
    from ._pool_guard import GuardedHTTPTransport

    try:
        return GuardedHTTPTransport(
            gate_size=config.max_connections,
            verify=_tls_context("h2" if config.http2 else "h1"),
            http1=http1,
            http2=config.http2,
            limits=limits,
            trust_env=False,
            retries=0,
        )
    except ImportError as exc:
        raise ConfigError("http2=True needs h2: pip install 'httpx[http2]'") from exc


def _current_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise ClientStateError(
            "HttpClient needs a running event loop: call it from async code "
            "(inside asyncio.run(...))"
        ) from None


class HttpClient:
    """Pooled async HTTP client with retries; see the module docstring.

    ``sleep`` is awaited between attempts (inject a no-op in tests);
    ``rng`` draws the jitter (inject a seeded ``random.Random`` for determinism).
    """

    def __init__(
        self,
        config: HttpConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or HttpConfig()
        if self.config.effective_transport == "aiohttp" and self.config.http2 and transport is None:
            raise ConfigError(
                "the aiohttp transport speaks HTTP/1.1 only: use transport='httpx' for HTTP/2 "
                "(SAMPLEMIND_TRANSPORT=httpx) or turn http2 off"
            )
        self._sleep = sleep
        self._rng = rng
        self._injected = transport
        self._transport: httpx.AsyncBaseTransport | None = None
        self._loop_ref: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._closed = False
        cfg = self.config
        self._timeout: dict[str, float] = {
            "connect": cfg.connect_timeout_s,
            "read": cfg.read_timeout_s,
            "write": cfg.write_timeout_s,
            "pool": cfg.pool_timeout_s,
        }
        self._headers: dict[str, str] = {}
        self._urls: dict[str, httpx.URL] = {}
        # The raw aiohttp path of open_stream: only on the real aiohttp transport.
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, tuple[yarl.URL, str]] = {}
        self._aio_timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    # -- lifecycle ---------------------------------------------------------

    @classmethod
    def shared(cls, config: HttpConfig | None = None) -> HttpClient:
        """The client of the running event loop, created on first use.

        A closed shared client is replaced by a new one. Asking for a
        different ``config`` than the live shared client's raises
        :class:`~samplemind_core.ConfigError`.
        """
        loop = _current_loop()
        client = _SHARED.get(loop)
        if client is None or client._closed:
            client = cls(config)
            client._loop_ref = weakref.ref(loop)
            _SHARED[loop] = client
        elif config is not None and config != client.config:
            raise ConfigError(
                "the shared HttpClient of this event loop already exists with another HttpConfig: "
                "close it first (await HttpClient.shared().aclose()) or build a private "
                "HttpClient(config)"
            )
        return client

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def is_open(self) -> bool:
        """True once the transport has been opened (first request or ``async with``)."""
        return self._transport is not None and not self._closed

    def _open(self) -> httpx.AsyncBaseTransport:
        """Check the state and return the transport, opening it lazily (slow path)."""
        if self._closed:
            raise ClientStateError(
                "HttpClient is closed: create a new HttpClient, or use HttpClient.shared() "
                "which replaces a closed shared client"
            )
        loop = _current_loop()
        if self._loop_ref is None:
            self._loop_ref = weakref.ref(loop)
        elif self._loop_ref() is not loop:  # another loop, or the first one is gone
            raise ClientStateError(
                "HttpClient belongs to another event loop: use HttpClient.shared() in each "
                "loop, or create one HttpClient per loop (a client is never shared across loops)"
            )
        if self._transport is None:
            if self._injected is None and self.config.effective_transport == "aiohttp":
                self._transport, self._session = _aiohttp_pool(self.config)
            else:
                self._transport = self._injected or build_transport(self.config)
            self._headers = {
                "accept": "application/json",
                "accept-encoding": _accept_encoding(),
                "user-agent": _USER_AGENT,
            }
        return self._transport

    async def __aenter__(self) -> HttpClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool (and an injected transport). Idempotent.

        Must run on the loop that opened the client, unless that loop is closed
        (its connections are gone with it; the client is then just marked closed).
        """
        if self._closed:
            return
        bound = self._loop_ref() if self._loop_ref is not None else None
        alive = bound is not None and not bound.is_closed()
        if self._transport is not None and alive and bound is not asyncio.get_running_loop():
            raise ClientStateError(
                "HttpClient.aclose() must run on the event loop that opened the client"
            )
        transport = self._transport or self._injected
        self._transport = None
        self._session = None  # closed with the transport that owns it
        self._closed = True
        if bound is not None and _SHARED.get(bound) is self:
            del _SHARED[bound]
        if transport is not None and (alive or bound is None):
            await transport.aclose()

    # -- requests ----------------------------------------------------------

    def _prepare(
        self,
        json: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> tuple[httpx.AsyncBaseTransport, bytes | None, dict[str, str]]:
        """Check ``timeout``, open the transport, encode the body, merge the headers."""
        if timeout is not None and not 0 < timeout < _INF:  # also refuses NaN
            raise ConfigError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
        transport = self._transport
        if (
            transport is None
            or self._closed
            or self._loop_ref is None
            or self._loop_ref() is not asyncio.get_running_loop()
        ):
            transport = self._open()
        hdrs = self._headers.copy()
        if content is None and json is not None:
            try:
                content = orjson.dumps(json)
            except TypeError as exc:  # orjson.JSONEncodeError: nothing was sent
                raise ConfigError(f"request body cannot be encoded as JSON ({exc})") from None
            hdrs["content-type"] = "application/json"
        if headers:
            for key, value in headers.items():
                hdrs[key.lower()] = value
        return transport, content, hdrs

    def stream(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> contextlib.AbstractAsyncContextManager[httpx.Response]:
        """A streamed reply: ``async with http.stream(...) as response: ...``.

        Retries exactly like :meth:`request` until the response's status and
        headers have arrived (connect errors, the statuses :data:`RETRY_STATUSES`
        with ``Retry-After``, timeouts to the first byte), never after. Yields
        the ``httpx.Response`` with its body unread for a 2xx (read it with
        :func:`iter_body`, which maps a cut connection to our
        :class:`~samplemind_core.TransportError` tree, or with ``aiter_bytes`` /
        ``aiter_raw``); any other status arrives with its (error) body already
        read, so ``response.content`` works. Leaving the block by any way (end,
        error, cancellation) closes the response and frees its connection.

        ``timeout`` bounds the wait for the headers (each attempt);
        :class:`~samplemind_core.RequestTimeout` when it passes. Gaps between
        body reads are the caller's to police (the layer's idle timeout); the
        client's ``read_timeout_s`` (or ``timeout`` when longer) stays as a
        backstop per read, so that a dead peer never hangs a reader that
        polices nothing. Bad arguments raise
        :class:`~samplemind_core.ConfigError` when the block is entered,
        before anything is sent. ``response.extensions["samplemind"]`` holds
        ``attempts`` and ``retry_wait_s`` as for :meth:`request`.

        On the aiohttp transport this goes through httpx-aiohttp; :meth:`open_stream`
        (a :class:`StreamResponse`, no httpx objects) is the cheaper way to stream.
        """
        return self._stream(method, url, json, content, headers, timeout)

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        method: str,
        url: str,
        json: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float | None,  # noqa: ASYNC109 - the headers' bound (contract)
    ) -> AsyncIterator[httpx.Response]:
        transport, content, hdrs = self._prepare(json, content, headers, timeout)
        if "@" in url:
            url = _credentials_to_header(method, url, hdrs)
        response = await self._open_httpx_stream(transport, method, url, content, hdrs, timeout)
        try:
            yield response
        finally:
            await _close_quietly(response)

    async def _open_httpx_stream(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        url: str,
        content: bytes | None,
        hdrs: dict[str, str],
        timeout: float | None,  # noqa: ASYNC109 - the headers' bound (contract)
    ) -> httpx.Response:
        """Send through the httpx transport with retries; the 2xx body is left unread."""
        ext = self._timeout
        if timeout is not None:
            ext = {
                "connect": min(ext["connect"], timeout),
                "read": max(ext["read"], timeout),
                "write": timeout,
                "pool": timeout,
            }
        wrapped = _StreamTransport(transport, timeout)
        return await self._attempts(wrapped, method, url, content, hdrs, ext, None)

    async def open_stream(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the headers' bound (contract)
    ) -> StreamResponse:
        """Send a streamed request; return a :class:`StreamResponse` once its headers are in.

        The same contract as :meth:`stream` (retries before the headers only, with
        the same policy and ``Retry-After``; a 2xx body left to read, any other
        status with its error body read into ``response.content``; ``timeout``
        bounds the wait for the headers of each attempt; the same errors of our
        tree), but the reply is a small :class:`StreamResponse` rather than an
        ``httpx.Response``, and the caller owns it: read it with
        :meth:`StreamResponse.read_chunk` (or ``async for``) and close it
        (``async with``, or :meth:`StreamResponse.aclose`) on every way out.

        On the real aiohttp transport (``HttpConfig`` resolving to ``"aiohttp"``
        and no injected transport) the request goes straight to the client's
        own ``aiohttp.ClientSession``, the one its aiohttp transport sends
        :meth:`request` with (one pool, one connection limit): no httpx
        ``Request``/``Response`` objects on the way (decision 0520). With an
        injected transport (``httpx.MockTransport``, the fixtures' world
        transport) or httpx's own, the request takes the :meth:`stream` path,
        so respx and mock transports see every streamed request.
        """
        transport, content, hdrs = self._prepare(json, content, headers, timeout)
        if "@" in url:
            url = _credentials_to_header(method, url, hdrs)
        session = self._session
        if session is None:
            response = await self._open_httpx_stream(transport, method, url, content, hdrs, timeout)
            return _HttpxStreamResponse(response)
        return await self._open_raw(session, method, url, content, hdrs, timeout)

    def _target(self, method: str, url: str) -> tuple[yarl.URL, str]:
        """``url`` parsed once (the same checks as the httpx path), and its masked form."""
        import yarl

        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"invalid URL for {method}: {exc}") from exc
        netloc = parsed.netloc.decode("ascii", "replace")
        target = (yarl.URL(str(parsed), encoded=True), f"{parsed.scheme}://{netloc}{parsed.path}")
        if len(self._targets) >= _URL_CACHE_SIZE:
            self._targets.clear()
        self._targets[url] = target
        return target

    def _aio_timeout(self, timeout: float | None) -> aiohttp.ClientTimeout:
        """The aiohttp timeouts of a stream whose headers are bounded by ``timeout``
        (as the httpx path's: connect capped by it, read at least it, pool wait it)."""
        import aiohttp

        cfg = self._timeout
        if timeout is None:
            connect, read, pool = cfg["connect"], cfg["read"], cfg["pool"]
        else:
            connect, read, pool = min(cfg["connect"], timeout), max(cfg["read"], timeout), timeout
        # aiohttp's ``connect`` is the pool wait plus the connection's set-up,
        # ``sock_connect`` the set-up alone (httpx-aiohttp maps them the same way).
        made = aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)
        if len(self._aio_timeouts) >= _URL_CACHE_SIZE:
            self._aio_timeouts.clear()
        self._aio_timeouts[timeout] = made
        return made

    async def _open_raw(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        content: bytes | None,
        hdrs: dict[str, str],
        timeout: float | None,  # noqa: ASYNC109 - the headers' bound (contract)
    ) -> StreamResponse:
        """The raw aiohttp path of :meth:`open_stream`: first attempt, then the retry loop."""
        target = self._targets.get(url) or self._target(method, url)
        aio_timeout = self._aio_timeouts.get(timeout) or self._aio_timeout(timeout)
        attempts = self.config.retry.attempts
        try:
            response = await _send_raw(
                session, method, target, content, hdrs, aio_timeout, timeout, 1
            )
        except TransportError as exc:
            if not exc.retryable or attempts <= 1:
                raise
            first: StreamResponse | TransportError = exc
        else:
            if response.status_code not in RETRY_STATUSES or attempts <= 1:
                return response
            first = response

        def send(attempt: int) -> Awaitable[StreamResponse]:
            return _send_raw(session, method, target, content, hdrs, aio_timeout, timeout, attempt)

        response, tries, waited = await self._retry(send, method, url, first)
        response.attempts = tries
        response.retry_wait_s = waited
        return response

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per-request HTTP timeout (contract)
    ) -> httpx.Response:
        """Send one request with retries; return the response with its body read.

        ``json`` is encoded with orjson (``content`` wins when both are given).
        ``timeout`` (seconds) is a deadline for the whole call: waiting for a
        pool slot, connecting, sending, reading the body, every retry and the
        waits between them; at its expiry the call raises
        :class:`~samplemind_core.RequestTimeout` (no retry is started that could
        not end before it). It also overrides the read/write/pool timeouts and
        caps the connect timeout. Without it, each phase of each attempt is
        bounded by :class:`~samplemind_core.HttpConfig`'s timeouts. A ``timeout``
        that is not a finite number > 0 raises :class:`~samplemind_core.ConfigError`
        before anything is sent.
        """
        transport, content, hdrs = self._prepare(json, content, headers, timeout)
        if "@" in url:
            url = _credentials_to_header(method, url, hdrs)
        if timeout is None:
            return await self._attempts(transport, method, url, content, hdrs, self._timeout, None)
        ext = {
            "connect": min(self._timeout["connect"], timeout),
            "read": timeout,
            "write": timeout,
            "pool": timeout,
        }
        deadline = asyncio.get_running_loop().time() + timeout
        call = self._attempts(transport, method, url, content, hdrs, ext, deadline)
        return await self._within(timeout, method, url, call)

    async def _within(
        self,
        timeout: float,  # noqa: ASYNC109 - the per-request deadline (contract)
        method: str,
        url: str,
        call: Awaitable[httpx.Response],
    ) -> httpx.Response:
        """Await ``call`` under a deadline of ``timeout`` s from now.

        The deadline covers everything the call does: waiting for a pool slot,
        connecting, sending, reading the body, retries and the waits between
        them. Its expiry raises :class:`~samplemind_core.RequestTimeout`; the
        caller's own cancellation still propagates as ``CancelledError``.
        """
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await call
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise RequestTimeout(
                f"{method} {url.split('?', 1)[0]} did not complete within {timeout:g} s "
                "(the whole call: pool wait, connect, send, read and retries)"
            ) from exc

    async def _attempts(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        url: str,
        content: bytes | None,
        hdrs: dict[str, str],
        ext: dict[str, float],
        deadline: float | None,
    ) -> httpx.Response:
        """The first attempt, then the retry loop when its outcome is retryable."""
        attempts = self.config.retry.attempts
        try:
            response = await self._send(transport, method, url, content, hdrs, ext, 1)
        except TransportError as exc:
            if not exc.retryable or attempts <= 1:
                raise
            first: httpx.Response | TransportError = exc
        else:
            if response.status_code not in RETRY_STATUSES or attempts <= 1:
                response.extensions["samplemind"] = {"attempts": 1, "retry_wait_s": 0.0}
                return response
            first = response

        def send(attempt: int) -> Awaitable[httpx.Response]:
            return self._send(transport, method, url, content, hdrs, ext, attempt)

        response, tries, waited = await self._retry(send, method, url, first, deadline)
        response.extensions["samplemind"] = {"attempts": tries, "retry_wait_s": waited}
        return response

    async def _send(
        self,
        transport: httpx.AsyncBaseTransport,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        ext: dict[str, float],
        attempt: int,
    ) -> httpx.Response:
        parsed = self._urls.get(url)
        if parsed is None:  # httpx's URL parsing is slow: parse each URL once
            try:
                parsed = httpx.URL(url)
            except httpx.InvalidURL as exc:
                raise ConfigError(f"invalid URL for {method}: {exc}") from exc
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[url] = parsed
        request = httpx.Request(
            method, parsed, content=content, headers=headers, extensions={"timeout": ext}
        )
        try:
            response = await transport.handle_async_request(request)
        except httpx.TransportError as exc:
            raise _map_error(exc, request, attempt) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("aiohttp"):
                raise _map_error(exc, request, attempt) from exc
            raise
        except BaseException:  # cancelled while waiting for a connection or the headers
            _reap_orphans(transport)
            raise
        response.request = request
        if _STREAMED in response.extensions and 200 <= response.status_code < 300:
            return response  # HttpClient.stream: the caller reads the body
        try:
            await response.aread()
        except BaseException as exc:
            await response.aclose()
            if isinstance(exc, httpx.TransportError) or (
                isinstance(exc, Exception) and type(exc).__module__.startswith("aiohttp")
            ):
                raise _map_error(exc, request, attempt) from exc
            raise
        return response

    async def _retry(
        self,
        send: Callable[[int], Awaitable[_R]],
        method: str,
        url: str,
        first: _R | TransportError,
        deadline: float | None = None,
    ) -> tuple[_R, int, float]:
        """The slow path: tenacity drives attempts 2..n (``send(n)``) after a retryable
        first outcome. Returns the last reply, the attempts made and the seconds waited."""
        from tenacity import (
            AsyncRetrying,
            retry_if_exception,
            retry_if_result,
            stop_after_attempt,
        )
        from tenacity.stop import stop_base

        retry = self.config.retry
        loop = asyncio.get_running_loop()
        pending: list[_R | TransportError] = [first]
        state = {"attempt": 0}

        async def attempt() -> _R:
            state["attempt"] += 1
            if pending:  # replay the first outcome, already observed on the fast path
                outcome = pending.pop()
                if isinstance(outcome, TransportError):
                    raise outcome
                return outcome
            return await send(state["attempt"])

        def wait(rs: RetryCallState) -> float:
            outcome = rs.outcome
            delay: float | None = None
            if outcome is not None and not outcome.failed:
                response: _R = outcome.result()
                after = parse_retry_after(response.headers)
                if after is not None:
                    delay = min(after, retry.retry_after_cap_s)
            if delay is None:
                delay = backoff_wait(retry, rs.attempt_number, self._rng)
            return delay

        class over_budget(stop_base):
            """Stop when the next wait would take the total past ``budget_s`` or the deadline."""

            def __call__(self, rs: RetryCallState) -> bool:
                upcoming = rs.upcoming_sleep or 0.0
                if deadline is not None and loop.time() + upcoming >= deadline:
                    return True  # the wait would use up the call's deadline
                return rs.idle_for + upcoming > retry.budget_s

        def give_up(rs: RetryCallState) -> _R:
            assert rs.outcome is not None
            result: _R = rs.outcome.result()  # re-raises a TransportError
            return result

        def before_sleep(rs: RetryCallState) -> None:
            outcome = rs.outcome
            if outcome is None or not logger.isEnabledFor(logging.DEBUG):
                return
            if outcome.failed:
                why = type(outcome.exception()).__name__
            else:
                why = f"HTTP {outcome.result().status_code}"
            logger.debug(
                "retrying %s %s after %s (attempt %d of %d, waiting %.3f s)",
                method,
                mask_url(url.split("?", 1)[0]),
                why,
                rs.attempt_number,
                retry.attempts,
                rs.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            sleep=self._sleep,
            stop=stop_after_attempt(retry.attempts) | over_budget(),
            wait=wait,
            retry=(
                retry_if_exception(lambda e: isinstance(e, TransportError) and e.retryable)
                | retry_if_result(lambda r: r.status_code in RETRY_STATUSES)
            ),
            retry_error_callback=give_up,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            response: _R = await retrying(attempt)
        except TransportError as exc:
            exc.add_note(
                f"samplemind: {state['attempt']} attempt(s), "
                f"{retrying.statistics.get('idle_for', 0.0):.3f} s waited"
            )
            raise
        return response, state["attempt"], float(retrying.statistics.get("idle_for", 0.0))


_CLOSING: set[asyncio.Task[None]] = set()
"""Background closes of reaped connections (kept referenced until done)."""


def _reap_orphans(transport: httpx.AsyncBaseTransport) -> int:
    """Drop the connections httpcore's pool orphaned when a request was cancelled.

    httpcore 1.0.9 (encode/httpcore#1093, open) keeps, for good, a connection whose
    request was cancelled after the pool had assigned it but before the request was
    sent on it: either still ``CONNECTING`` (no socket yet) or HTTP/1.1 ``NEW`` (socket
    open, nothing sent). Such a connection is neither idle, closed, expired nor
    available, so one pool slot (and, when ``NEW``, one socket) is lost per such
    cancellation until every request gets ``PoolTimeout``. Only connections that no
    queued request holds and that never carried a request are removed; a ``NEW`` one
    is closed in the background. A no-op for other transports and when httpcore's
    internals are not the expected ones. Returns how many were removed.
    """
    transport = getattr(transport, "_sm_inner", transport)
    pool = getattr(transport, "_pool", None)
    connections = getattr(pool, "_connections", None)
    requests = getattr(pool, "_requests", None)
    if not isinstance(connections, list) or not isinstance(requests, list):
        return 0
    try:
        held = {id(r.connection) for r in requests if getattr(r, "connection", None) is not None}
        orphans = [c for c in connections if id(c) not in held and _never_used(c)]
        for c in orphans:
            connections.remove(c)
    except (AttributeError, TypeError, ValueError):  # another httpcore: leave it alone
        return 0
    for c in orphans:
        if getattr(c, "_connection", None) is not None:
            task = asyncio.get_running_loop().create_task(_close_orphan(c))
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)
    if orphans:
        logger.debug("dropped %d connection(s) orphaned by a cancelled request", len(orphans))
    return len(orphans)


def _never_used(connection: Any) -> bool:
    """An httpcore connection still connecting, or connected (HTTP/1.1) but never sent on."""
    inner = getattr(connection, "_connection", False)
    if inner is None:
        return getattr(connection, "_connect_failed", True) is False
    if inner is False or connection.is_available() or connection.is_closed():
        return False
    state = getattr(inner, "_state", None)
    return getattr(state, "name", None) == "NEW" and getattr(inner, "_request_count", 1) == 0


async def _close_orphan(connection: Any) -> None:
    try:
        await connection.aclose()
    except Exception as exc:  # the socket may already be gone
        logger.debug("closing an orphaned connection failed: %s", type(exc).__name__)


_STREAMED: Final = "samplemind_stream"
"""Marks a response of :meth:`HttpClient.stream`: ``_send`` leaves its 2xx body unread."""


class _StreamTransport(httpx.AsyncBaseTransport):
    """The client's transport for one streamed call: bounds the wait for the headers
    (``seconds``; ``None``: no bound beyond the transport's own timeouts) and marks the
    response so that a 2xx body is left for the caller to read."""

    __slots__ = ("_sm_inner", "seconds")

    def __init__(self, inner: httpx.AsyncBaseTransport, seconds: float | None) -> None:
        self._sm_inner = inner
        self.seconds = seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.seconds is None:
            response = await self._sm_inner.handle_async_request(request)
        else:
            scope = asyncio.timeout(self.seconds)
            try:
                async with scope:
                    response = await self._sm_inner.handle_async_request(request)
            except TimeoutError as exc:
                if not scope.expired():
                    raise
                _reap_orphans(self._sm_inner)
                raise httpx.ReadTimeout(
                    f"no response headers within {self.seconds:g} s", request=request
                ) from exc
        response.extensions[_STREAMED] = True
        return response


async def _close_quietly(response: httpx.Response) -> None:
    """Close a streamed response, freeing its connection, whatever state it is in.

    A close error (the peer already gone) is logged, never raised over the
    caller's own outcome. The close itself is shielded: a caller cancelled while
    leaving the block (even more than once) still waits until the connection is
    freed, then the cancellation is re-raised. Closing is local work (no reply
    is awaited), so this wait is short.
    """
    task = asyncio.ensure_future(response.aclose())
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            cancelled = exc
        except Exception:  # reported below from task.exception()
            pass
    error = None if task.cancelled() else task.exception()
    if error is not None:
        logger.debug("closing a streamed response failed: %s: %s", type(error).__name__, error)
    if cancelled is not None:
        raise cancelled


async def iter_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """The decoded body of a streamed response, chunk by chunk as it arrives.

    Errors of the connection (the peer cut it, reset it, a read timed out) are
    raised as our :class:`~samplemind_core.TransportError` subclasses
    (``RemoteProtocolError``, ``RequestTimeout``), ``from`` the original.

    Unlike ``response.aiter_bytes()``, reaching the end does not close the
    response in the reader's task: the owner of the response closes it
    (:meth:`HttpClient.stream` does, in a close that a cancellation cannot cut
    short; httpcore's own close, cut by a cancellation, leaves its connection
    busy for good).
    """
    request = response.request
    attempts = response.extensions.get("samplemind", {}).get("attempts", 1)
    stream = response.stream
    make_decoder = getattr(response, "_get_content_decoder", None)
    if not isinstance(stream, httpx.AsyncByteStream) or make_decoder is None:
        raw: AsyncIterator[bytes] = response.aiter_bytes()  # pragma: no cover - other httpx
        decoder = None
    else:
        raw = stream.__aiter__()
        decoder = make_decoder()
    try:
        while True:
            try:
                chunk = await raw.__anext__()
                if decoder is not None:
                    chunk = decoder.decode(chunk)
            except StopAsyncIteration:
                break
            except httpx.TransportError as exc:
                raise _map_error(exc, request, attempts, reading=True) from exc
            except Exception as exc:
                if type(exc).__module__.startswith("aiohttp"):
                    raise _map_error(exc, request, attempts, reading=True) from exc
                raise
            if chunk:
                yield chunk
        if decoder is not None:
            try:
                tail = decoder.flush()
            except httpx.DecodingError as exc:
                raise _map_error(exc, request, attempts, reading=True) from exc
            if tail:
                yield tail
    finally:
        close = getattr(raw, "aclose", None)
        if close is not None:
            await close()


class StreamResponse:
    """A streamed reply as :meth:`HttpClient.open_stream` returns it.

    ``status_code``, ``reason_phrase``, ``http_version`` (``"HTTP/1.1"``,
    ``"HTTP/2"``), ``headers`` (a read-only mapping whose ``get`` ignores case:
    aiohttp's headers on the raw path, ``httpx.Headers`` on the httpx path),
    ``method`` and ``url`` (without its query string or credentials),
    ``attempts`` and ``retry_wait_s`` (as ``extensions["samplemind"]``, which
    also holds them). ``content`` is the (decoded) body of a reply that is not
    2xx, already read; ``b""`` for a 2xx, whose body is read with
    :meth:`read_chunk` or ``async for chunk in response``.

    The caller owns the response: :meth:`aclose` (idempotent; ``async with``
    calls it) frees its connection on every way out, and a cancellation cannot
    cut it short. Read errors are our :class:`~samplemind_core.TransportError`
    subclasses (``RemoteProtocolError`` for a cut connection, ``RequestTimeout``
    when ``HttpConfig.read_timeout_s`` passes without a byte), ``from`` the
    original.
    """

    __slots__ = (
        "_reason",
        "attempts",
        "content",
        "headers",
        "http_version",
        "method",
        "retry_wait_s",
        "status_code",
        "url",
    )

    _resumable: ClassVar[bool] = False
    """Whether a :meth:`read_chunk` cancelled while it waits loses nothing: the next call
    (from any task) returns the bytes it would have returned (the raw aiohttp path, whose
    ``StreamReader.readany`` keeps its buffer; not httpx's async-generator body)."""

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        *,
        method: str,
        url: str,
        reason_phrase: str = "",
        http_version: str = "HTTP/1.1",
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self._reason = reason_phrase
        self.http_version = http_version
        self.method = method
        self.url = url
        self.content = b""
        self.attempts = 1
        self.retry_wait_s = 0.0

    def __repr__(self) -> str:
        return f"<StreamResponse [{self.status_code}] {self.method} {self.url}>"

    @property
    def reason_phrase(self) -> str:
        """The server's reason phrase, or the standard one when it sent none (as httpx)."""
        return self._reason or httpx.codes.get_reason_phrase(self.status_code)

    @property
    def extensions(self) -> dict[str, Any]:
        """``{"samplemind": {"attempts": n, "retry_wait_s": s}}``, as on ``httpx.Response``."""
        return {"samplemind": {"attempts": self.attempts, "retry_wait_s": self.retry_wait_s}}

    @property
    def text(self) -> str:
        """:attr:`content` decoded (the charset of the content type, else UTF-8; bad bytes replaced)."""
        charset = "utf-8"
        for part in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = part.strip().partition("=")
            if name.lower() == "charset" and value:
                charset = value.strip('"')
        try:
            return self.content.decode(charset, "replace")
        except LookupError:
            return self.content.decode("utf-8", "replace")

    @property
    def closed(self) -> bool:
        """True once the response is closed (its connection freed)."""
        raise NotImplementedError

    async def read_chunk(self) -> bytes:
        """The next chunk of the (decoded) body as it arrives; ``b""`` at its end."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Free the connection (back to the pool when the body was read to its end). Idempotent."""
        raise NotImplementedError

    def as_httpx(self) -> httpx.Response:
        """An ``httpx.Response`` with this reply's status, headers, version and extensions,
        without a body (the body belongs to whoever reads this response)."""
        version = self.http_version.encode("ascii")
        return httpx.Response(
            self.status_code,
            headers=list(self.headers.items()),
            request=httpx.Request(self.method, self.url),
            extensions={
                "http_version": version,
                "reason_phrase": self.reason_phrase.encode("ascii", "replace"),
                **self.extensions,
            },
        )

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self.read_chunk():
            yield chunk

    async def __aenter__(self) -> StreamResponse:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _AiohttpStreamResponse(StreamResponse):
    """The raw path: an ``aiohttp.ClientResponse`` read with ``readany``."""

    __slots__ = ("_raw",)

    _resumable: ClassVar[bool] = True

    def __init__(self, raw: aiohttp.ClientResponse, method: str, where: str) -> None:
        version = raw.version
        super().__init__(
            raw.status,
            raw.headers,
            method=method,
            url=where,
            reason_phrase=raw.reason or "",
            http_version=(
                "HTTP/1.1"
                if version is None or version == (1, 1)
                else f"HTTP/{version.major}.{version.minor}"
            ),
        )
        self._raw = raw

    @property
    def closed(self) -> bool:
        return self._raw.closed

    async def read_chunk(self) -> bytes:
        try:
            return await self._raw.content.readany()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) or type(exc).__module__.startswith("aiohttp"):
                raise _map_raw_error(
                    exc, self.method, self.url, self.attempts, reading=True
                ) from exc
            raise

    async def aclose(self) -> None:
        # release() is synchronous: nothing to cut short. An unread body closes the
        # connection; a body read to its end returns it to the pool.
        raw = self._raw
        if not raw.closed:
            raw.release()


class _HttpxStreamResponse(StreamResponse):
    """The httpx path: an ``httpx.Response`` from :meth:`HttpClient.stream`'s sending,
    read with :func:`iter_body`."""

    __slots__ = ("_done", "_reader", "_response")

    def __init__(self, response: httpx.Response) -> None:
        url = response.request.url
        meta = response.extensions.get("samplemind", {})
        super().__init__(
            response.status_code,
            response.headers,
            method=response.request.method,
            url=f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}",
            reason_phrase=response.reason_phrase,
            http_version=response.http_version,
        )
        self.attempts = int(meta.get("attempts", 1))
        self.retry_wait_s = float(meta.get("retry_wait_s", 0.0))
        if not 200 <= response.status_code < 300:
            self.content = response.content
        self._response = response
        self._reader: AsyncIterator[bytes] | None = None
        self._done = False

    @property
    def closed(self) -> bool:
        return self._done

    async def read_chunk(self) -> bytes:
        reader = self._reader
        if reader is None:
            reader = self._reader = iter_body(self._response)
        try:
            return await reader.__anext__()
        except StopAsyncIteration:
            return b""

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        reader = self._reader
        close: Callable[[], Any] | None = getattr(reader, "aclose", None)
        try:
            if close is not None:
                with contextlib.suppress(RuntimeError):  # a read still running elsewhere
                    await close()
        finally:
            await _close_quietly(self._response)

    def as_httpx(self) -> httpx.Response:
        return self._response
