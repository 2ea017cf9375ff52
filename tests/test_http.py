"""Tests of the shared HTTP client: lifecycle, retries, error mapping, transports.

Mocked transports (``httpx.MockTransport``) prove the retry policy with an
injected no-op sleep; a raw asyncio server on 127.0.0.1 proves the real-socket
faults (disconnect and reset mid-body, refused connection, read timeout) with
both httpx's own transport and the aiohttp one; hypercorn proves HTTP/2 (h2c).
"""

from __future__ import annotations

import asyncio
import gzip
import random
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import brotli  # type: ignore[import-untyped]
import httpx
import pytest

from samplemind_core import (
    ClientStateError,
    ConfigError,
    ConnectError,
    HttpConfig,
    RemoteProtocolError,
    RequestTimeout,
    RetryConfig,
    TransportError,
)
from samplemind_core.http import (
    RETRY_STATUSES,
    HttpClient,
    backoff_wait,
    build_transport,
    parse_retry_after,
)
from tests._helpers import LoopbackHTTP, read_request

URL = "http://api.test/v1/thing"


class Sleeps:
    """An injected sleep that records the requested waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def scripted(
    *outcomes: int | Exception | httpx.Response,
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A mock transport answering with the given outcomes in turn (then 200)."""
    seen: list[httpx.Request] = []
    queue = list(outcomes)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        outcome = queue.pop(0) if queue else 200
        if isinstance(outcome, Exception):
            raise outcome
        if isinstance(outcome, httpx.Response):
            return outcome
        return httpx.Response(outcome, json={"n": len(seen)})

    return httpx.MockTransport(handler), seen


def client(
    transport: httpx.AsyncBaseTransport, sleeps: Sleeps | None = None, **retry: Any
) -> HttpClient:
    config = HttpConfig(retry=RetryConfig(**retry)) if retry else HttpConfig()
    return HttpClient(config, transport=transport, sleep=sleeps or Sleeps(), rng=random.Random(7))


# -- lifecycle ---------------------------------------------------------------


async def test_shared_is_one_client_per_running_loop() -> None:
    a = HttpClient.shared()
    assert HttpClient.shared() is a
    assert HttpClient.shared(HttpConfig()) is a  # an equal config is fine
    with pytest.raises(ConfigError, match="another HttpConfig"):
        HttpClient.shared(HttpConfig(http2=True))
    await a.aclose()
    b = HttpClient.shared()
    assert b is not a and not b.closed  # a closed shared client is replaced
    await b.aclose()


def test_shared_clients_differ_across_loops_and_never_cross() -> None:
    transport, _ = scripted()

    async def first() -> HttpClient:
        c = HttpClient.shared()
        c._injected = transport  # answer without a network
        await c.request("GET", URL)
        return c

    async def second(previous: HttpClient) -> HttpClient:
        with pytest.raises(ClientStateError, match="another event loop"):
            await previous.request("GET", URL)
        c = HttpClient.shared()
        assert c is not previous
        await c.aclose()
        return c

    c1 = asyncio.run(first())
    asyncio.run(second(c1))
    asyncio.run(c1.aclose())  # its loop is gone: closing just marks it closed
    assert c1.closed


def test_shared_outside_a_loop_says_what_to_do() -> None:
    with pytest.raises(ClientStateError, match="running event loop"):
        HttpClient.shared()


async def test_closed_client_raises_and_says_what_to_do() -> None:
    transport, seen = scripted()
    async with client(transport) as http:
        assert http.is_open
        await http.request("GET", URL)
    assert http.closed
    with pytest.raises(ClientStateError, match="create a new HttpClient"):
        await http.request("GET", URL)
    await http.aclose()  # idempotent
    assert len(seen) == 1


async def test_transport_opens_lazily() -> None:
    transport, _ = scripted()
    http = client(transport)
    assert not http.is_open
    await http.request("GET", URL)
    assert http.is_open
    await http.aclose()


def test_import_is_cheap() -> None:
    code = (
        "import sys, samplemind_core.http\n"
        "heavy = [m for m in ('aiohttp', 'httpx_aiohttp', 'h2', 'tenacity') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- request building ----------------------------------------------------------


async def test_headers_body_and_timeouts() -> None:
    transport, seen = scripted()
    async with client(transport) as http:
        await http.request("POST", URL, json={"b": 1, "a": [1, 2]}, headers={"X-Key": "v"})
        await http.request("POST", URL, content=b"raw", timeout=2.0)
    first, second = seen
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-key"] == "v"
    assert first.headers["accept-encoding"] == "gzip, deflate, br"
    assert first.headers["user-agent"].startswith("samplemind-core/")
    assert first.content == b'{"b":1,"a":[1,2]}'
    assert first.extensions["timeout"] == {
        "connect": 5.0,
        "read": 30.0,
        "write": 30.0,
        "pool": 10.0,
    }
    assert second.content == b"raw"
    assert second.extensions["timeout"] == {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0}


async def test_gzip_and_brotli_bodies_are_decoded() -> None:
    payload = b'{"ok": true}'
    transport, _ = scripted(
        httpx.Response(200, content=gzip.compress(payload), headers={"content-encoding": "gzip"}),
        httpx.Response(200, content=brotli.compress(payload), headers={"content-encoding": "br"}),
    )
    async with client(transport) as http:
        assert (await http.request("GET", URL)).json() == {"ok": True}
        assert (await http.request("GET", URL)).json() == {"ok": True}


def test_default_transport_is_aiohttp_and_httpx_for_http2() -> None:
    from httpx_aiohttp import AiohttpTransport

    assert HttpConfig().effective_transport == "aiohttp"
    assert isinstance(build_transport(HttpConfig()), AiohttpTransport)
    assert HttpConfig(http2=True).effective_transport == "httpx"
    assert HttpConfig(transport="httpx").effective_transport == "httpx"


def test_pool_limits_and_protocol_from_config() -> None:
    t = build_transport(HttpConfig(transport="httpx"))
    assert isinstance(t, httpx.AsyncHTTPTransport)
    pool = t._pool
    assert (pool._max_connections, pool._max_keepalive_connections) == (100, 50)
    assert pool._http2 is False
    assert build_transport(HttpConfig(http2=True))._pool._http2 is True  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"HTTP/1\.1 only"):
        HttpClient(HttpConfig(transport="aiohttp", http2=True))
    with pytest.raises(ConfigError, match="http2=True"):
        build_transport(HttpConfig(transport="httpx"), http1=False)


def test_aiohttp_transport_builds_with_our_limits() -> None:
    from httpx_aiohttp import AiohttpTransport

    t = build_transport(HttpConfig(transport="aiohttp"))
    assert isinstance(t, AiohttpTransport)
    assert t.limits.max_connections == 100


async def test_invalid_url_is_a_config_error() -> None:
    transport, _ = scripted()
    async with client(transport) as http:
        with pytest.raises(ConfigError, match="invalid URL"):
            await http.request("GET", "http://[::1")


# -- retries -------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(RETRY_STATUSES))
async def test_retryable_status_is_retried(status: int) -> None:
    sleeps = Sleeps()
    transport, seen = scripted(status, status)
    async with client(transport, sleeps) as http:
        response = await http.request("POST", URL, json={"x": 1})
    assert response.status_code == 200
    assert len(seen) == 3
    assert response.extensions["samplemind"]["attempts"] == 3
    assert response.extensions["samplemind"]["retry_wait_s"] == pytest.approx(sum(sleeps.waits))
    assert len(sleeps.waits) == 2
    assert {r.content for r in seen} == {b'{"x":1}'}  # the body is re-sent intact


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 500, 501])
async def test_other_statuses_are_never_retried(status: int) -> None:
    sleeps = Sleeps()
    transport, seen = scripted(status)
    async with client(transport, sleeps) as http:
        response = await http.request("GET", URL)
    assert response.status_code == status
    assert len(seen) == 1 and sleeps.waits == []
    assert response.extensions["samplemind"] == {"attempts": 1, "retry_wait_s": 0.0}


async def test_exhausted_status_returns_the_last_response() -> None:
    transport, seen = scripted(503, 503, 429)
    async with client(transport) as http:
        response = await http.request("GET", URL)
    assert response.status_code == 429
    assert len(seen) == 3
    assert response.extensions["samplemind"]["attempts"] == 3


@pytest.mark.parametrize(
    ("error", "ours"),
    [
        (httpx.ConnectError("refused"), ConnectError),
        (httpx.ConnectTimeout("slow connect"), RequestTimeout),
        (httpx.ReadTimeout("slow read"), RequestTimeout),
        (httpx.WriteTimeout("slow write"), RequestTimeout),
        (httpx.PoolTimeout("pool"), RequestTimeout),
        (httpx.RemoteProtocolError("peer closed connection"), RemoteProtocolError),
        (httpx.ReadError("connection reset"), RemoteProtocolError),
    ],
)
async def test_transport_errors_are_retried_then_mapped(
    error: Exception, ours: type[TransportError]
) -> None:
    sleeps = Sleeps()
    transport, seen = scripted(error, error)
    async with client(transport, sleeps) as http:
        response = await http.request("GET", URL)
        assert response.extensions["samplemind"]["attempts"] == 3
        seen.clear()
        transport2, seen2 = scripted(error, error, error)
        http2 = client(transport2, sleeps)
        with pytest.raises(ours) as info:
            await http2.request("GET", URL + "?key=sk-CANARY-123")
        await http2.aclose()
    assert len(seen2) == 3
    assert info.value.__cause__ is error
    assert "sk-CANARY" not in str(info.value)
    assert "attempt 3" in str(info.value)


async def test_non_retryable_transport_error_is_raised_at_once() -> None:
    transport, seen = scripted(httpx.UnsupportedProtocol("ftp"))
    async with client(transport) as http:
        with pytest.raises(TransportError) as info:
            await http.request("GET", URL)
    assert info.value.retryable is False
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "120"}, 30.0),  # capped by retry_after_cap_s
    ],
)
async def test_retry_after_is_honoured_and_capped(headers: dict[str, str], expected: float) -> None:
    sleeps = Sleeps()
    transport, _ = scripted(httpx.Response(429, headers=headers))
    async with client(transport, sleeps) as http:
        response = await http.request("GET", URL)
    assert response.status_code == 200
    assert sleeps.waits == [pytest.approx(expected)]


def test_retry_after_http_date() -> None:
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after(httpx.Headers({"Retry-After": date}), now=1445412480.0) == 10.0
    assert parse_retry_after(httpx.Headers({"Retry-After": date}), now=1445412500.0) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None


async def test_retry_after_http_date_drives_the_wait() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    sleeps = Sleeps()
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    transport, _ = scripted(httpx.Response(503, headers={"Retry-After": when}))
    async with client(transport, sleeps) as http:
        await http.request("GET", URL)
    assert len(sleeps.waits) == 1 and 15.0 < sleeps.waits[0] <= 20.0


async def test_budget_bounds_total_wait() -> None:
    sleeps = Sleeps()
    transport, seen = scripted(*[httpx.Response(429, headers={"Retry-After": "0.6"})] * 5)
    async with client(transport, sleeps, attempts=5, budget_s=1.0) as http:
        response = await http.request("GET", URL)
    assert response.status_code == 429  # gave up: the next wait would pass the budget
    assert sleeps.waits == [pytest.approx(0.6)]
    assert len(seen) == 2
    assert response.extensions["samplemind"] == {"attempts": 2, "retry_wait_s": pytest.approx(0.6)}


async def test_backoff_is_exponential_with_full_jitter() -> None:
    sleeps = Sleeps()
    transport, _ = scripted(*[503] * 6)
    async with client(transport, sleeps, attempts=6, backoff_base_s=1.0, backoff_max_s=4.0) as h:
        await h.request("GET", URL)
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0]
    assert len(sleeps.waits) == 5
    assert all(0.0 <= w <= c for w, c in zip(sleeps.waits, ceilings, strict=True))
    assert len(set(sleeps.waits)) == 5  # jittered, not constant
    no_jitter = RetryConfig(backoff_base_s=1.0, backoff_max_s=4.0, jitter=False)
    assert [backoff_wait(no_jitter, n) for n in range(1, 6)] == ceilings


async def test_single_attempt_config_never_retries() -> None:
    transport, seen = scripted(503, httpx.ConnectError("x"))
    async with client(transport, attempts=1) as http:
        assert (await http.request("GET", URL)).status_code == 503
        with pytest.raises(ConnectError):
            await http.request("GET", URL)
    assert len(seen) == 2


async def test_retries_are_logged_at_debug_without_query(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="samplemind_core.http")
    transport, _ = scripted(503)
    async with client(transport) as http:
        await http.request("GET", URL + "?key=sk-CANARY-9", headers={"x-api-key": "sk-CANARY-9"})
    assert any("retrying GET" in r.getMessage() for r in caplog.records)
    assert all("sk-CANARY" not in r.getMessage() for r in caplog.records)


# -- real sockets --------------------------------------------------------------

OK_BODY = b'{"ok": true, "pad": "' + b"x" * 200 + b'"}'


class RawServer(LoopbackHTTP):
    """An HTTP/1.1 server on 127.0.0.1 whose next replies follow ``modes``.

    Modes: ``ok``, ``close_mid_body`` (FIN after part of the body),
    ``reset_mid_body`` (RST after part of the body), ``close_before_reply``,
    ``hang`` (never answers).
    """

    path = "/v1/x"

    def __init__(self) -> None:
        super().__init__()
        self.modes: list[str] = []
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(reader)
            self.bodies.append(body)
            mode = self.modes.pop(0) if self.modes else "ok"
            if mode == "hang":
                await asyncio.Event().wait()
            if mode == "close_before_reply":
                return
            if mode in ("close_mid_body", "reset_mid_body"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY[:20]
                )
                await writer.drain()
                if mode == "reset_mid_body":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY
            )
            await writer.drain()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    server = RawServer()
    await server.start()
    yield server
    await server.stop()


TRANSPORTS = ["httpx", "aiohttp"]


def real_client(kind: str, **retry: Any) -> HttpClient:
    return HttpClient(
        HttpConfig(transport=kind, retry=RetryConfig(**retry)),  # type: ignore[arg-type]
        sleep=Sleeps(),
    )


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_real_server_round_trip_and_keepalive(kind: str, raw_server: RawServer) -> None:
    async with real_client(kind) as http:
        for _ in range(3):
            response = await http.request("POST", raw_server.url, json={"q": 1})
            assert response.json()["ok"] is True
            assert response.extensions["samplemind"]["attempts"] == 1
    assert raw_server.bodies == [b'{"q":1}'] * 3


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("mode", ["close_mid_body", "reset_mid_body", "close_before_reply"])
async def test_real_server_disconnect_is_retried(
    kind: str, mode: str, raw_server: RawServer
) -> None:
    raw_server.modes = [mode]
    async with real_client(kind) as http:
        response = await http.request("POST", raw_server.url, json={"q": 2})
    assert response.json()["ok"] is True
    assert response.extensions["samplemind"]["attempts"] == 2
    assert raw_server.bodies == [b'{"q":2}'] * 2


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.parametrize("mode", ["close_mid_body", "reset_mid_body", "close_before_reply"])
async def test_real_server_disconnects_exhaust_into_remote_protocol_error(
    kind: str, mode: str, raw_server: RawServer
) -> None:
    raw_server.modes = [mode] * 3
    async with real_client(kind) as http:
        with pytest.raises(RemoteProtocolError) as info:  # POST: aiohttp adds no retry of its own
            await http.request("POST", raw_server.url)
    assert isinstance(info.value.__cause__, httpx.TransportError | OSError) or (
        type(info.value.__cause__).__module__.startswith("aiohttp")
    )
    assert len(raw_server.bodies) == 3


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_real_refused_connection_is_connect_error(kind: str) -> None:
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    async with HttpClient(HttpConfig(transport=kind), sleep=sleeps) as http:  # type: ignore[arg-type]
        with pytest.raises(ConnectError):
            await http.request("GET", f"http://127.0.0.1:{port}/")
    assert len(sleeps.waits) == 2  # three attempts


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_real_read_timeout_is_request_timeout(kind: str, raw_server: RawServer) -> None:
    # HttpConfig's read timeout is per attempt: a timed-out attempt is retried. (The server
    # hangs after reading each request: 0.1 s is as good a bound as any.)
    raw_server.modes = ["hang", "hang"]
    config = HttpConfig(transport=kind, read_timeout_s=0.1, retry=RetryConfig(attempts=2))  # type: ignore[arg-type]
    async with HttpClient(config, sleep=Sleeps()) as http:
        with pytest.raises(RequestTimeout):
            await http.request("GET", raw_server.url)
    assert len(raw_server.bodies) == 2


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_real_request_timeout_is_one_deadline_for_all_attempts(
    kind: str, raw_server: RawServer
) -> None:
    # A per-request timeout bounds the whole call: no retry starts after it expired.
    raw_server.modes = ["hang", "hang", "hang"]
    async with real_client(kind, attempts=3) as http:
        with pytest.raises(RequestTimeout, match=r"did not complete within 0\.2 s"):
            await asyncio.wait_for(http.request("GET", raw_server.url, timeout=0.2), 30)
    assert len(raw_server.bodies) == 1


@pytest.mark.live
async def test_http2_prior_knowledge_against_hypercorn() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    async def app(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send(
            {"type": "http.response.body", "body": b'{"v": "%s"}' % scope["http_version"].encode()}
        )

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                assert asyncio.get_running_loop().time() < deadline, "hypercorn did not start"
                await asyncio.sleep(0.02)
        h2c = build_transport(HttpConfig(http2=True), http1=False)
        async with HttpClient(transport=h2c) as http:
            response = await http.request("GET", f"http://127.0.0.1:{port}/")
        assert response.http_version == "HTTP/2"
        assert response.json() == {"v": "2"}
    finally:
        stop.set()
        await server
