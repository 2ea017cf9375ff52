"""The raw aiohttp path of streams (``HttpClient.open_stream``, decision 0520).

On the default transport a stream is sent on the client's own ``aiohttp.ClientSession``
without httpx objects; these tests hold it to everything the httpx path guarantees, on
real sockets: the emulator server (``fixtures/servers.py``) and, where a reply must be
scripted byte by byte (a 429 then a 200, a keep-alive connection the server drops, a
gzip body), a small HTTP/1.1 server on a loopback port started in the test.
The mid-stream faults, stalls, abandoned streams and header timeouts of the emulator
run over this path too in ``tests/test_stream_wire.py`` (its ``aiohttp`` cases).
"""

from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from fixtures.mock import world_transport
from fixtures.ports import free_port
from fixtures.servers import EMULATOR_API_KEY, with_fault_header
from fixtures.world import WorldModel
from samplemind_core import (
    AuthenticationError,
    ChatRequest,
    ClientStateError,
    HttpConfig,
    ProviderConfig,
    ProviderServerError,
    RateLimitError,
    RemoteProtocolError,
    RequestTimeout,
    RetryConfig,
    Secret,
    Settings,
    TransportError,
)
from samplemind_core.http import HttpClient, StreamResponse
from samplemind_core.manager import AIManager
from samplemind_core.providers import Provider, ProviderStream, get_provider
from samplemind_core.providers._parse import SSEParser, StreamLimitError, StreamSyntaxError
from tests._helpers import LoopbackHTTP, read_request

KEY = "sk-rawpath-canary-0123456789"
PASSWORD = "hunter2-rawpath"


def openai_at(base: str, key: str = KEY) -> Provider:
    return get_provider(
        "openai", ProviderConfig(name="openai", base_url=f"{base}/v1", api_key=Secret(key))
    )


def request(text: str = "describe kick_01.wav", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


async def collect(stream: ProviderStream) -> list[str]:
    async with stream:
        return [t async for t in stream]


def busy(http: HttpClient) -> int:
    """Connections of the client's aiohttp pool in use (requests and streams share it)."""
    session = http._session
    assert session is not None, "not on the raw path"
    return len(session.connector._acquired)  # type: ignore[union-attr]


def sse(*texts: str) -> bytes:
    """An OpenAI chat-completions stream with ``texts`` as its deltas."""
    events = [
        {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": t}}]} for t in texts
    ]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(texts)}})
    body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    head = {"content-length": str(len(body)), **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"HTTP/1.1 {status} Scripted\r\n{lines}\r\n".encode() + body


def stream_reply(body: bytes, **headers: str) -> bytes:
    return reply(200, body, {"content-type": "text/event-stream", **headers})


Answer = Callable[[int, int, bytes], Awaitable[bytes | None]]
"""``answer(n, k, sent)``: the raw reply to ``sent``, the server's n-th request (1-based),
the k-th on its connection (1-based); ``None`` closes that connection without a reply."""


class Scripted(LoopbackHTTP):
    """A real HTTP/1.1 server on a free loopback port whose replies follow ``answer``."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        on_connection = 0
        while True:
            head, body = await read_request(reader)
            self.requests.append(head + body)
            on_connection += 1
            raw = await self.answer(len(self.requests), on_connection, head + body)
            if raw is None:
                return
            writer.write(raw)
            await writer.drain()


class Sleeps:
    """An injected ``sleep`` that records the client's retry waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# --------------------------------------------------------------------------- which path


@pytest.mark.live
async def test_the_default_client_streams_raw_and_shares_one_pool_with_requests(
    emulator_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No httpx transport call for a stream on the default client; streams and plain
    requests take connections from one aiohttp pool (one ``max_connections``)."""
    from httpx_aiohttp import AiohttpTransport

    through_httpx: list[str] = []
    original = AiohttpTransport.handle_async_request

    async def counted(self: AiohttpTransport, req: httpx.Request) -> httpx.Response:
        through_httpx.append(req.url.path)
        return await original(self, req)

    monkeypatch.setattr(AiohttpTransport, "handle_async_request", counted)
    provider = openai_at(emulator_server.url, EMULATOR_API_KEY)
    held = with_fault_header(provider, "stream-stall:600@1")  # open until closed
    # the plain request below must find the pool full: 0.1 s a wait for a slot and 1 ms
    # back-offs between its three attempts (the defaults' sleeps are not what is tested)
    config = HttpConfig(
        max_connections=2, pool_timeout_s=0.1, retry=RetryConfig(backoff_base_s=0.001)
    )
    async with HttpClient(config) as http, asyncio.timeout(30):
        first = await held.open_stream(http, request("one"))
        second = await held.open_stream(http, request("two"))
        assert isinstance(first.upstream, StreamResponse)
        assert through_httpx == []  # both streams went straight to aiohttp
        assert busy(http) == 2
        with pytest.raises(RequestTimeout):  # the pool is full: a plain request waits for it
            await http.request("GET", emulator_server.url + "/api/tags")
        assert set(through_httpx) == {"/api/tags"}  # its attempts, through httpx-aiohttp
        before = len(through_httpx)
        assert await anext(first)
        await first.aclose()
        await second.aclose()  # unread: the connections are closed, not pooled
        assert busy(http) == 0
        tags = await http.request("GET", emulator_server.url + "/api/tags")
        assert tags.status_code == 200 and len(through_httpx) == before + 1
        assert await collect(await provider.open_stream(http, request("three")))
        # HttpClient.stream keeps its contract (an httpx.Response) on the same pool
        async with http.stream("GET", emulator_server.url + "/api/tags") as response:
            assert isinstance(response, httpx.Response) and response.status_code == 200
        assert len(through_httpx) == before + 2
    assert http._session is None and first.upstream.closed


async def test_an_injected_transport_keeps_the_httpx_path() -> None:
    """respx, MockTransport and the fixtures' world transport see every streamed request."""
    world = WorldModel(seed=3, latency_scale=0.0)
    async with HttpClient(transport=world_transport(world)) as http:
        stream = await openai_at("http://api.test").open_stream(http, request())
        assert http._session is None
        assert stream.http_response is stream.upstream.as_httpx()  # the httpx.Response itself
        assert stream.http_response.request.url.path == "/v1/chat/completions"
        parts = await collect(stream)
    assert len(parts) > 1 and stream.upstream.closed


@pytest.mark.live
async def test_http_response_on_the_raw_path_is_the_head_as_httpx(emulator_server: Any) -> None:
    async with HttpClient() as http, asyncio.timeout(30):
        stream = await openai_at(emulator_server.url, EMULATOR_API_KEY).open_stream(http, request())
        head = stream.http_response
        assert head is stream.http_response  # built once, on first access
        assert isinstance(head, httpx.Response) and head.status_code == 200
        assert head.http_version == "HTTP/1.1" and head.reason_phrase == "OK"
        assert head.headers["content-type"].startswith("text/event-stream")
        assert head.extensions["samplemind"] == {"attempts": 1, "retry_wait_s": 0.0}
        assert head.request.url.path == "/v1/chat/completions" and head.content == b""
        assert await collect(stream)
    assert stream.response.attempts == 1


# --------------------------------------------------------------------------- retries


async def test_retry_after_and_backoff_before_the_first_byte() -> None:
    """429 with Retry-After, then 503 without one (backoff), then the stream: 3 attempts,
    the waits the server asked for, the error bodies read and their connections freed."""

    async def answer(n: int, _: int, __: bytes) -> bytes:
        if n == 1:
            return reply(429, b'{"error": {"message": "slow down"}}', {"retry-after": "0.25"})
        if n == 2:
            return reply(503, b"busy")
        return stream_reply(sse("Hel", "lo"))

    sleeps = Sleeps()
    cfg = HttpConfig(retry=RetryConfig(attempts=3, backoff_base_s=0.1, jitter=False))
    async with Scripted(answer) as server, HttpClient(cfg, sleep=sleeps) as http:
        stream = await openai_at(server.url).open_stream(http, request())
        assert await collect(stream) == ["Hel", "lo"]
        assert busy(http) == 0
    assert sleeps.waits == [0.25, 0.2]  # Retry-After, then 0.1 * 2 ** 1
    assert stream.response.attempts == 3
    assert stream.response.metadata["retry_wait_s"] == pytest.approx(0.45)
    assert len(server.requests) == 3


async def test_statuses_not_retried_and_attempts_that_run_out() -> None:
    answers = {
        "/v1/chat/completions": reply(500, b'{"error": {"message": "boom"}}'),
        "/v2/chat/completions": reply(
            429, b'{"error": {"message": "limit"}}', {"retry-after-ms": "1500"}
        ),
    }

    async def answer(_: int, __: int, sent: bytes) -> bytes:
        return next(v for k, v in answers.items() if k.encode() in sent)

    sleeps = Sleeps()
    cfg = HttpConfig(retry=RetryConfig(attempts=2, retry_after_cap_s=1.0))
    async with Scripted(answer) as server, HttpClient(cfg, sleep=sleeps) as http:
        seen = server.requests
        with pytest.raises(ProviderServerError, match="boom"):  # 500: the router falls back
            await openai_at(server.url).open_stream(http, request())
        assert len(seen) == 1 and sleeps.waits == []
        provider = get_provider(
            "openai",
            ProviderConfig(name="openai", base_url=f"{server.url}/v2", api_key=Secret(KEY)),
        )
        with pytest.raises(RateLimitError, match="limit") as info:
            await provider.open_stream(http, request())
        assert info.value.retry_after == 1.5  # what the server said, for the caller
        assert sleeps.waits == [1.0]  # capped by retry_after_cap_s
        assert len(seen) == 3 and busy(http) == 0


async def test_a_pooled_connection_the_server_dropped_is_retried_on_a_new_one() -> None:
    """The server reads a second request on a kept-alive connection and closes it without a
    reply (its keep-alive ended as the request crossed): the attempt is retried."""

    async def answer(_: int, on_connection: int, __: bytes) -> bytes | None:
        return None if on_connection == 2 else stream_reply(sse("a", "b"))

    async with Scripted(answer) as server, HttpClient(sleep=Sleeps()) as http:
        provider = openai_at(server.url)
        assert await collect(await provider.open_stream(http, request("1"))) == ["a", "b"]
        stream = await provider.open_stream(http, request("2"))  # reuses the pooled one
        assert await collect(stream) == ["a", "b"]
        assert stream.response.attempts == 2 and server.connections == 2
        once = HttpClient(HttpConfig(retry=RetryConfig(attempts=1)))
        async with once:
            await collect(await provider.open_stream(once, request("3")))
            with pytest.raises(RemoteProtocolError, match="ServerDisconnectedError"):
                await provider.open_stream(once, request("4"))
            assert busy(once) == 0


async def test_headers_that_never_come_are_a_request_timeout_per_attempt() -> None:
    async def answer(_: int, __: int, ___: bytes) -> bytes:
        await asyncio.sleep(3600)  # cancelled when the server stops
        raise AssertionError("unreachable")

    sleeps = Sleeps()
    async with Scripted(answer) as server, HttpClient(sleep=sleeps) as http:
        async with asyncio.timeout(30):
            with pytest.raises(RequestTimeout, match=r"no response headers within 0\.1 s") as info:
                await openai_at(server.url).open_stream(http, request(timeout=0.1))
        assert len(server.requests) == 3 and len(sleeps.waits) == 2  # the same retries
        assert "3 attempt(s)" in "".join(info.value.__notes__)
        assert busy(http) == 0


# --------------------------------------------------------------------------- bodies


async def test_gzip_bodies_are_decoded_and_a_corrupt_one_is_a_transport_error() -> None:
    good = gzip.compress(sse("zip", "ped"))

    async def answer(n: int, _: int, __: bytes) -> bytes:
        body = good if n == 1 else good[:20] + b"\x00garbage" + good[28:]
        return stream_reply(body, **{"content-encoding": "gzip"})

    async with Scripted(answer) as server, HttpClient() as http:
        provider = openai_at(server.url)
        assert await collect(await provider.open_stream(http, request())) == ["zip", "ped"]
        stream = await provider.open_stream(http, request())
        with pytest.raises(TransportError):
            await collect(stream)
        assert busy(http) == 0


@pytest.mark.live
async def test_a_stall_past_the_read_timeout_is_a_request_timeout(emulator_server: Any) -> None:
    provider = openai_at(emulator_server.url, EMULATOR_API_KEY)
    stalling = with_fault_header(provider, "stream-stall:600@1")
    async with HttpClient(HttpConfig(read_timeout_s=0.3)) as http, asyncio.timeout(30):
        stream = await stalling.open_stream(http, request())
        got: list[str] = []
        with pytest.raises(RequestTimeout, match="while reading the streamed body"):
            async with stream:
                async for text in stream:
                    got.append(text)
        assert len(got) == 1 and busy(http) == 0
        with pytest.raises(ClientStateError):
            await stream.__anext__()
        assert await collect(await provider.open_stream(http, request()))


# --------------------------------------------------------------------------- SSE, LF only


def test_sse_with_lf_line_ends_splits_like_the_general_parser_at_every_byte() -> None:
    """The parser's split path (no CR in the buffer: what providers send) gives the events
    of the general one, however the body is cut, and keeps its limits and errors."""
    body = (
        b': keep-alive\n\nevent: message_start\ndata: {"a": 1}\n\n'
        b"data: line one\ndata: line two\n\nid: 7\nretry: 10\ndata:no-space\n\n"
        b"data:  two spaces\nevent: named\n\ndata: \xc3\xa9t\xc3\xa9\n\n"
    )
    expected = [
        ("message_start", '{"a": 1}'),
        ("", "line one\nline two"),
        ("", "no-space"),
        ("named", " two spaces"),
        ("", "\u00e9t\u00e9"),
    ]
    assert SSEParser(1024).feed(body) == expected
    assert SSEParser(1024).feed(body.replace(b"\n", b"\r\n")) == expected  # general path
    for cut in range(len(body) + 1):
        p = SSEParser(1024)
        assert p.feed(body[:cut]) + p.feed(body[cut:]) == expected, cut
        assert not p.pending
    p = SSEParser(1024)
    assert [e for i in range(len(body)) for e in p.feed(body[i : i + 1])] == expected
    events, error = SSEParser(32).parse(b"data: ok\n\ndata: " + b"x" * 40 + b"\n\n")
    assert events == [("", "ok")] and isinstance(error, StreamLimitError)
    events, error = SSEParser(64).parse(b"data: ok\n\ndata: \xff\n\n")
    assert events == [("", "ok")] and isinstance(error, StreamSyntaxError)
    events, error = SSEParser(16).parse(b"data: ok\n\n" + b"y" * 17)  # an unended line
    assert events == [("", "ok")] and isinstance(error, StreamLimitError)
    p = SSEParser(20)
    assert p.feed(b"data: 0123456789\n") == []
    with pytest.raises(StreamLimitError, match="event's data"):  # two lines of one event
        p.feed(b"data: 0123456789\n\n")


# --------------------------------------------------------------------------- secrets


async def test_errors_of_the_raw_path_carry_no_secret() -> None:
    """Credentials in the URL (sent as Basic auth), a key in the query, a key echoed by the
    server: none reaches a message."""
    port = free_port()
    texts: list[str] = []
    async with HttpClient(HttpConfig(retry=RetryConfig(attempts=1))) as http:
        base = f"http://user:{PASSWORD}@127.0.0.1:{port}"
        with pytest.raises(TransportError) as info:
            await http.open_stream("POST", f"{base}/v1/chat/completions?key={KEY}", json={})
        texts.append(str(info.value))

        async def answer(_: int, __: int, ___: bytes) -> bytes:
            body = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "x"}}
            return reply(401, orjson.dumps(body), {"content-type": "application/json"})

        async with Scripted(answer) as server:
            with pytest.raises(AuthenticationError) as auth:
                await openai_at(server.url).open_stream(http, request())
            texts.append(str(auth.value))
            sent = server.requests[0].decode()
    assert f"authorization: Bearer {KEY}" in sent.lower().replace("bearer", "Bearer")
    assert all(PASSWORD not in t and KEY not in t for t in texts), texts
    assert "127.0.0.1" in texts[0] and "[REDACTED]" in texts[1]


async def test_a_header_aiohttp_refuses_is_a_transport_error_never_retried() -> None:
    async def answer(_: int, __: int, ___: bytes) -> bytes:
        return stream_reply(sse("x"))

    async with Scripted(answer) as server, HttpClient(sleep=Sleeps()) as http:
        with pytest.raises(TransportError) as info:
            await http.open_stream("POST", server.url + "/s", headers={"x-bad": "a\r\nb"})
        assert not info.value.retryable and not server.requests
        assert isinstance(info.value.__cause__, ValueError) and busy(http) == 0


# --------------------------------------------------------------------------- load


@pytest.mark.live
async def test_keep_alive_limits_of_the_server_cost_nothing(emulator_factory: Any) -> None:
    """A server that ends every connection after one request (``Connection: close``):
    waves of concurrent streams all succeed and leave no connection in use."""
    server = emulator_factory(extra_args=["--keep-alive-max-requests", "1"])
    provider = openai_at(server.url, EMULATOR_API_KEY)
    async with HttpClient(HttpConfig(max_connections=20)) as http, asyncio.timeout(60):
        for wave in range(3):
            streams = await asyncio.gather(
                *(provider.open_stream(http, request(f"w{wave} {i}")) for i in range(30))
            )
            texts = await asyncio.gather(*(collect(s) for s in streams))
            assert all(texts) and busy(http) == 0


@pytest.mark.live
@pytest.mark.slow
async def test_many_streams_cancelled_at_random_leave_a_clean_pool(emulator_factory: Any) -> None:
    """300 streams through ``AIManager.stream`` on the default transport, a pool of 50,
    callers cancelled at random moments (before the headers, between chunks): afterwards
    no connection is in use and the next stream succeeds; the callers' cancellations
    propagate as CancelledError."""
    server = emulator_factory(latency_scale=0.01)
    settings = server.settings(Settings(http=HttpConfig(max_connections=50)))
    rng = random.Random(20)

    async def one(ai: AIManager, i: int) -> int:
        n = 0
        req = request(f"describe loop_{i}.wav", provider="openai", max_tokens=24)
        async with ai.stream(req) as stream:
            async for _ in stream:
                n += 1
        return n

    async with AIManager(settings) as ai:
        assert ai.http._session is None  # opened lazily, by the first stream
        async with asyncio.timeout(120):
            tasks = [asyncio.create_task(one(ai, i)) for i in range(300)]
            for _ in range(100):
                await asyncio.sleep(rng.uniform(0, 0.004))
                rng.choice(tasks).cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        kinds = {type(r).__name__ for r in results}
        assert kinds <= {"int", "CancelledError"} and "CancelledError" in kinds, kinds
        assert sum(isinstance(r, int) for r in results) >= 200
        assert busy(ai.http) == 0
        async with asyncio.timeout(30):
            assert await one(ai, 10**6) > 1


def test_open_stream_of_a_closed_client_says_what_to_do() -> None:
    async def run() -> None:
        http = HttpClient()
        await http.aclose()
        with pytest.raises(ClientStateError, match="create a new HttpClient"):
            await http.open_stream("POST", "http://127.0.0.1:1/x", json={})

    asyncio.run(run())
