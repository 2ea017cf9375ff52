"""The wire side of streaming: parsers, ``HttpClient.stream``, ``Provider.open_stream``.

In-process tests answer from the world model (``fixtures.mock.world_transport``:
the same wire formats as the emulator) or from scripted ``httpx.MockTransport``
handlers; the live tests run the real emulator server over both transports and
HTTP/1.1 and h2c.
"""

from __future__ import annotations

import asyncio
import random
import time
import urllib.error
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from fixtures.mock import world_transport
from fixtures.servers import EMULATOR_API_KEY, with_fault_header
from fixtures.wire import FAULT_HEADER, handle
from fixtures.world import StreamFault, WorldModel
from samplemind_core import (
    ChatRequest,
    ClientStateError,
    ConfigError,
    HttpConfig,
    MalformedResponseError,
    ProviderConfig,
    ProviderError,
    ProviderServerError,
    RateLimitError,
    RemoteProtocolError,
    RequestTimeout,
    RetryConfig,
    Secret,
)
from samplemind_core.http import HttpClient, build_transport
from samplemind_core.providers import PROVIDER_CLASSES, Provider, ProviderStream, get_provider
from samplemind_core.providers._parse import NDJSONParser, SSEParser, StreamLimitError

NAMES = sorted(PROVIDER_CLASSES)
STREAMING = NAMES
TOOLS = [
    {
        "name": "tag_sample",
        "description": "Tag a sample",
        "parameters": {
            "type": "object",
            "properties": {"genre": {"type": "string"}, "bpm": {"type": "integer"}},
        },
    }
]


async def _no_sleep(_: float) -> None:
    return None


def provider_at(name: str, base: str) -> Provider:
    url = f"{base}/v1" if name == "openai" else base
    key = None if name == "ollama" else Secret(EMULATOR_API_KEY)
    return get_provider(name, ProviderConfig(name=name, base_url=url, api_key=key))


def request(text: str = "describe kick_01.wav", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


async def collect(stream: ProviderStream) -> list[str]:
    async with stream:
        return [t async for t in stream]


# --------------------------------------------------------------------------- parsers


def test_sse_events_split_across_reads_at_every_byte() -> None:
    body = (
        b': keep-alive\r\n\r\nevent: message_start\r\ndata: {"a": 1}\r\n\r\n'
        b"data: line one\ndata: line two\n\nid: 7\nretry: 10\ndata:no-space\n\n"
        b"event: x\rdata: cr only\r\r"
    )
    expected = [
        ("message_start", '{"a": 1}'),
        ("", "line one\nline two"),
        ("", "no-space"),
        ("x", "cr only"),
    ]
    for cut in range(len(body) + 1):
        p = SSEParser(1024)
        got = p.feed(body[:cut]) + p.feed(body[cut:]) + p.finish()
        assert got == expected, cut
    p = SSEParser(1024)
    got = [e for i in range(len(body)) for e in p.feed(body[i : i + 1])]
    assert got == expected[:-1]
    assert p.finish() == expected[-1:]
    assert not p.pending


def test_sse_event_is_returned_by_the_read_that_completes_it() -> None:
    p = SSEParser(1024)
    assert p.feed(b"data: first\n") == []
    assert p.feed(b"\n") == [("", "first")]
    assert p.feed(b"data: incomplete") == []
    assert p.pending


@pytest.mark.parametrize(
    "chunks",
    [
        [b"data: " + b"x" * 2000],  # a line that never ends
        [b"data: " + b"x" * 600 + b"\n", b"data: " + b"y" * 600 + b"\n"],  # one event's data
        [b"data: " + b"z" * 2000 + b"\n\n"],  # a complete line over the limit
        [b"a" * 700, b"b" * 700],  # growing across reads
    ],
)
def test_sse_limits_are_errors_not_buffers(chunks: list[bytes]) -> None:
    p = SSEParser(1024)
    with pytest.raises(StreamLimitError):
        for c in chunks:
            p.feed(c)


def test_ndjson_lines_split_limits_and_garbage() -> None:
    body = b'{"a": 1}\r\n\n{"b": [1, 2]}\n{"c": "\xc3\xa9"}'
    for cut in range(len(body) + 1):
        p = NDJSONParser(1024)
        got = p.feed(body[:cut]) + p.feed(body[cut:]) + p.finish()
        assert got == [{"a": 1}, {"b": [1, 2]}, {"c": "é"}], cut
    with pytest.raises(StreamLimitError):
        NDJSONParser(1024).feed(b"{" + b" " * 2000)
    with pytest.raises(ValueError, match="not valid JSON"):
        NDJSONParser(1024).feed(b"{nope}\n")
    with pytest.raises(ValueError, match="not a JSON object"):
        NDJSONParser(1024).feed(b"[1]\n")


@pytest.mark.parametrize("bad", [0, 1023, 1 << 31, 2.5, True, "1"])
def test_stream_line_limit_is_checked(bad: Any) -> None:
    with pytest.raises(ConfigError, match="stream_max_line_bytes"):
        HttpConfig(stream_max_line_bytes=bad)


# --------------------------------------------------------------------------- in-process


@pytest.fixture
def world() -> WorldModel:
    return WorldModel(seed=3, latency_scale=0.0)


@pytest.fixture
async def client(world: WorldModel) -> AsyncIterator[HttpClient]:
    async with HttpClient(transport=world_transport(world), sleep=_no_sleep) as http:
        yield http


BASE = "http://emulated.test"


@pytest.mark.parametrize("name", STREAMING)
async def test_stream_text_equals_the_complete_reply(name: str, client: HttpClient) -> None:
    provider = provider_at(name, BASE)
    req = request(max_tokens=300)
    stream = await provider.open_stream(client, req)
    assert stream.provider == name and stream.model == provider.default_model
    with pytest.raises(ClientStateError, match="after the last chunk"):
        _ = stream.response
    parts = await collect(stream)
    whole = await provider.complete(client, req)
    resp = stream.response
    assert len(parts) > 3 and all(parts)
    assert "".join(parts) == resp.text == whole.text
    assert resp.usage == whole.usage and resp.usage.output_tokens > 0
    assert resp.usage.input_tokens == whole.usage.input_tokens > 0
    assert resp.finish_reason == whole.finish_reason
    assert resp.cost_usd == pytest.approx(whole.cost_usd)
    assert resp.provider == name and resp.attempts == 1 and resp.latency_ms > 0
    assert resp.tool_calls == []


@pytest.mark.parametrize("name", STREAMING)
async def test_stream_tool_calls_are_assembled(name: str, client: HttpClient) -> None:
    provider = provider_at(name, BASE)
    req = request("tag kick_01.wav", tools=TOOLS)
    stream = await provider.open_stream(client, req)
    parts = await collect(stream)
    whole = await provider.complete(client, req)
    assert parts == []
    calls = stream.response.tool_calls
    assert calls and [(c.name, c.arguments) for c in calls] == [
        (c.name, c.arguments) for c in whole.tool_calls
    ]
    assert calls[0].name == "tag_sample" and set(calls[0].arguments) == {"genre", "bpm"}


async def test_openai_stream_request_asks_for_usage() -> None:
    seen: list[dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(orjson.loads(req.content))
        body = (
            b'data: {"model":"gpt-x","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
            b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
            b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
            b"data: [DONE]\n\n"
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async with HttpClient(transport=httpx.MockTransport(handler)) as http:
        stream = await provider_at("openai", BASE).open_stream(http, request())
        assert await collect(stream) == ["hi"]
    assert seen[0]["stream"] is True and seen[0]["stream_options"] == {"include_usage": True}
    assert stream.response.model == "gpt-x" and stream.response.usage.total_tokens == 4


# --------------------------------------------------------------------------- HttpClient.stream


async def test_http_stream_retries_before_headers_only() -> None:
    calls = {"n": 0}

    def handler(req: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return httpx.Response(429, headers={"retry-after": "0"}, json={"error": "slow"})
        return httpx.Response(200, content=b"data: x\n\n")

    cfg = HttpConfig(retry=RetryConfig(attempts=3, jitter=False))
    http = HttpClient(cfg, transport=httpx.MockTransport(handler), sleep=_no_sleep)
    async with http, http.stream("POST", BASE + "/s", json={"a": 1}) as response:
        assert response.status_code == 200
        assert response.extensions["samplemind"]["attempts"] == 2
        assert b"".join([c async for c in response.aiter_bytes()]) == b"data: x\n\n"
    assert calls["n"] == 2


async def test_http_stream_error_status_has_its_body_read() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "bad"})

    http = HttpClient(transport=httpx.MockTransport(handler))
    async with http, http.stream("POST", BASE + "/s") as response:
        assert response.status_code == 400 and response.json() == {"error": "bad"}


async def test_http_stream_bad_timeout_is_a_config_error(client: HttpClient) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        async with client.stream("POST", BASE + "/v1/chat/completions", timeout=-1.0):
            pass


async def test_http_stream_headers_timeout_is_request_timeout() -> None:
    async def slow(req: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    cfg = HttpConfig(retry=RetryConfig(attempts=2, jitter=False, backoff_base_s=0.0))
    async with HttpClient(cfg, transport=httpx.MockTransport(slow), sleep=_no_sleep) as http:
        with pytest.raises(RequestTimeout, match="no response headers within"):
            async with asyncio.timeout(20):
                async with http.stream("GET", BASE + "/s", timeout=0.05):
                    pass


# --------------------------------------------------------------------------- live emulator

Transport = Callable[..., HttpClient]  # keywords go to HttpClient (e.g. ``sleep``)
TRANSPORTS: dict[str, Transport] = {
    "aiohttp": lambda **kw: HttpClient(HttpConfig(transport="aiohttp"), **kw),
    "httpx-h1": lambda **kw: HttpClient(HttpConfig(transport="httpx"), **kw),
    "httpx-h2c": lambda **kw: HttpClient(
        HttpConfig(http2=True),
        transport=build_transport(HttpConfig(http2=True), http1=False),
        **kw,
    ),
}


@pytest.mark.live
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("name", STREAMING)
async def test_live_stream_every_provider_and_transport(
    name: str, transport: str, emulator_server: Any
) -> None:
    provider = provider_at(name, emulator_server.url)
    req = request(f"describe snare_{transport}.wav")
    async with TRANSPORTS[transport]() as http:
        async with asyncio.timeout(30):
            stream = await provider.open_stream(http, req)
            if transport == "httpx-h2c":
                assert stream.http_response.http_version == "HTTP/2"
            parts = await collect(stream)
            whole = await provider.complete(http, req)
    assert len(parts) > 1 and "".join(parts) == whole.text == stream.response.text
    assert stream.response.usage == whole.usage
    assert stream.response.cost_usd == pytest.approx(whole.cost_usd)


def faulted(name: str, base: str, fault: str) -> Provider:
    return with_fault_header(provider_at(name, base), fault)


@pytest.mark.live
@pytest.mark.parametrize("name", STREAMING)
async def test_live_429_status_maps_like_complete(name: str, emulator_server: Any) -> None:
    provider = faulted(name, emulator_server.url, "429")
    cfg = HttpConfig(transport="aiohttp", retry=RetryConfig(attempts=1))
    async with HttpClient(cfg) as http:
        with pytest.raises(RateLimitError) as info:
            await provider.open_stream(http, request())
    assert info.value.retry_after is not None and info.value.provider == name


# --------------------------------------------------------------------------- faults


def world_client(world: WorldModel, fault: str | None = None) -> HttpClient:
    transport = world_transport(world)
    if fault is None:
        return HttpClient(transport=transport, sleep=_no_sleep)

    class WithHeader(httpx.AsyncBaseTransport):
        async def handle_async_request(self, req: httpx.Request) -> httpx.Response:
            req.headers[FAULT_HEADER] = fault
            return await transport.handle_async_request(req)

    return HttpClient(transport=WithHeader(), sleep=_no_sleep)


async def read_until_error(stream: ProviderStream) -> tuple[list[str], BaseException | None]:
    parts: list[str] = []
    try:
        async with stream:
            async for text in stream:
                parts.append(text)
    except Exception as exc:  # returned for the assertions
        return parts, exc
    return parts, None


FAULT_ERRORS: dict[str, type[Exception]] = {
    "stream-cut:1": RemoteProtocolError,
    "stream-cut:3": RemoteProtocolError,
    "stream-cut:0": RemoteProtocolError,
    "stream-malformed": MalformedResponseError,
    "stream-malformed@2": MalformedResponseError,
    "stream-error": ProviderServerError,
    "stream-429": RateLimitError,
    "stream-429@0": RateLimitError,
}


def _after(fault: str) -> int:
    if ":" in fault and "@" not in fault:
        return int(fault.rsplit(":", 1)[1])
    return int(fault.rsplit("@", 1)[1]) if "@" in fault else 1


@pytest.mark.parametrize("fault", sorted(FAULT_ERRORS))
@pytest.mark.parametrize("name", NAMES)
async def test_mid_stream_faults_in_process(name: str, fault: str, world: WorldModel) -> None:
    provider = provider_at(name, BASE)
    async with world_client(world, fault) as http:
        stream = await provider.open_stream(http, request())
        parts, error = await read_until_error(stream)
        assert isinstance(error, FAULT_ERRORS[fault]), repr(error)
        assert len(parts) == _after(fault)
        if isinstance(error, ProviderServerError | RateLimitError):
            assert error.provider == name
        with pytest.raises(ClientStateError, match="after the last chunk"):
            _ = stream.response
        with pytest.raises(ClientStateError):  # spent: no spinning on a dead stream
            await stream.__anext__()
        # the same request without the fault streams to the end on the same client
    async with world_client(world) as http:
        assert await collect(await provider.open_stream(http, request()))


@pytest.mark.parametrize("name", NAMES)
async def test_stream_ending_without_terminal_event_is_malformed(name: str) -> None:
    world = WorldModel(seed=3, latency_scale=0.0)
    full = world_transport(world)

    class Truncating(httpx.AsyncBaseTransport):
        async def handle_async_request(self, req: httpx.Request) -> httpx.Response:
            response = await full.handle_async_request(req)
            body = await response.aread()
            cut = body[: len(body) * 2 // 3]
            cut = cut[: cut.rfind(b"\n") + 1]  # end cleanly between lines
            return httpx.Response(200, headers=response.headers, content=cut)

    async with HttpClient(transport=Truncating()) as http:
        parts, error = await read_until_error(
            await provider_at(name, BASE).open_stream(http, request())
        )
    assert parts and isinstance(error, MalformedResponseError)
    assert "terminal event" in str(error) or "JSON" in str(error)


@pytest.mark.parametrize("name", NAMES)
async def test_line_over_the_limit_is_malformed(name: str) -> None:
    huge = b"x" * 5000
    frame = {
        "openai": b"data: " + huge,
        "anthropic": b"event: ping\ndata: " + huge,
        "gemini": b"data: " + huge,
        "ollama": b'{"message": "' + huge,
    }[name]
    ctype = "application/x-ndjson" if name == "ollama" else "text/event-stream"

    async def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": ctype}, content=frame)

    cfg = HttpConfig(stream_max_line_bytes=1024)
    async with HttpClient(cfg, transport=httpx.MockTransport(handler)) as http:
        _, error = await read_until_error(
            await provider_at(name, BASE).open_stream(http, request())
        )
    assert isinstance(error, MalformedResponseError) and "exceeds 1024 bytes" in str(error)


@pytest.mark.parametrize("status", [401, 400, 500, 503])
@pytest.mark.parametrize("name", NAMES)
async def test_error_status_maps_like_complete(name: str, status: int) -> None:
    async def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"message": "nope", "type": "x"}})

    cfg = HttpConfig(retry=RetryConfig(attempts=2, jitter=False))
    provider = provider_at(name, BASE)
    async with HttpClient(cfg, transport=httpx.MockTransport(handler), sleep=_no_sleep) as http:
        with pytest.raises(ProviderError) as streamed:
            await provider.open_stream(http, request())
        with pytest.raises(ProviderError) as whole:
            await provider.complete(http, request())
    assert type(streamed.value) is type(whole.value)
    assert streamed.value.status == whole.value.status == status


async def test_wrong_content_type_is_malformed() -> None:
    async def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": []})

    async with HttpClient(transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(MalformedResponseError, match="text/event-stream"):
            await provider_at("openai", BASE).open_stream(http, request())


def test_bad_stream_fault_specs_are_refused() -> None:
    for bad in ["cut@2", "stall", "stall:-1", "boom", "error:3", "cut:-1", "429@x"]:
        with pytest.raises(ValueError, match="bad stream fault"):
            StreamFault.parse(bad)
    with pytest.raises(ValueError, match="stream_fault_rate"):
        WorldModel(stream_faults=["cut"], stream_fault_rate=1.5)
    reply = handle(
        WorldModel(latency_scale=0.0),
        "POST",
        "/api/chat",
        {},
        {FAULT_HEADER: "stream-nope"},
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',
    )
    assert reply.status == 400 and b"bad stream fault" in reply.body


async def test_world_stream_faults_keep_the_outcome_sequence() -> None:
    plain = WorldModel(seed=5, latency_scale=0.0)
    faulty = WorldModel(seed=5, latency_scale=0.0, stream_faults="cut:1", stream_fault_rate=0.5)
    provider = provider_at("openai", BASE)
    seen = []
    for world in (plain, faulty):
        async with world_client(world) as http:
            outcomes = []
            for i in range(8):
                parts, error = await read_until_error(
                    await provider.open_stream(http, request(f"describe s{i}.wav"))
                )
                outcomes.append(("".join(parts)[:20], type(error).__name__))
            seen.append(outcomes)
    cuts = [o for o in seen[1] if o[1] == "RemoteProtocolError"]
    assert 0 < len(cuts) < 8  # rate 0.5
    for (text0, err0), (text1, _) in zip(*seen, strict=True):
        assert err0 == "NoneType" and text1 == text0[: len(text1)]


# --------------------------------------------------------------------------- live faults


def busy_connections(http: HttpClient) -> int:
    """Connections of the client's pool that are in use (not idle)."""
    transport = http._transport
    pool = getattr(transport, "_pool", None)
    if pool is not None:  # httpx / httpcore
        busy = [c for c in pool.connections if not (c.is_idle() or c.is_closed())]
        return len(busy) + len(pool._requests)
    session = getattr(transport, "client", None)  # httpx_aiohttp
    connector = getattr(session, "connector", None)
    assert connector is not None, f"unknown transport {transport!r}"
    return len(connector._acquired)


@pytest.mark.live
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("stream-cut:2", RemoteProtocolError),
        ("stream-malformed", MalformedResponseError),
        ("stream-error", ProviderServerError),
        ("stream-429", RateLimitError),
    ],
)
@pytest.mark.parametrize("name", NAMES)
async def test_live_mid_stream_faults(
    name: str, fault: str, error: type[Exception], transport: str, emulator_server: Any
) -> None:
    provider = faulted(name, emulator_server.url, fault)
    async with TRANSPORTS[transport]() as http:
        async with asyncio.timeout(30):
            parts, got = await read_until_error(await provider.open_stream(http, request()))
            assert isinstance(got, error), repr(got)
            assert len(parts) == _after(fault.removeprefix("stream-"))
            assert busy_connections(http) == 0
            again = await collect(
                await provider_at(name, emulator_server.url).open_stream(http, request())
            )
    assert again


@pytest.mark.live
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
@pytest.mark.parametrize("name", NAMES)
async def test_live_first_chunks_arrive_during_a_stall(
    name: str, transport: str, emulator_server: Any
) -> None:
    """No chunk is held back: the 3 chunks before a 600 s stall all arrive (bound: 30 s)."""
    provider = faulted(name, emulator_server.url, "stream-stall:600@3")
    async with TRANSPORTS[transport]() as http:
        stream = await provider.open_stream(http, request())
        async with stream:
            async with asyncio.timeout(30):  # liveness: the stall is 20x longer
                first = [await anext(stream) for _ in range(3)]
            assert all(first)
            # the 4th is behind the stall (without it, it would come within a millisecond or
            # so: the session's emulator has latency 0)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await anext(stream)
        assert busy_connections(http) == 0  # the cancelled read's connection was freed
        async with asyncio.timeout(30):
            assert await collect(
                await provider_at(name, emulator_server.url).open_stream(http, request())
            )


@pytest.mark.live
@pytest.mark.parametrize("name", NAMES)
async def test_live_429_mid_stream_costs_little_cpu(name: str, emulator_server: Any) -> None:
    """A spin detector: a failed stream (429 mid-stream) uses far less than a second of CPU."""
    provider = faulted(name, emulator_server.url, "stream-429")
    async with HttpClient(HttpConfig(transport="aiohttp")) as http:
        await collect(await provider_at(name, emulator_server.url).open_stream(http, request()))
        cpu = time.process_time()
        async with asyncio.timeout(30):
            for _ in range(5):
                stream = await provider.open_stream(http, request())
                _, error = await read_until_error(stream)
                assert isinstance(error, RateLimitError)
                for _ in range(100):  # a caller that keeps asking gets an error, at once
                    with pytest.raises(ClientStateError):
                        await stream.__anext__()
        used = time.process_time() - cpu
    assert used < 1.0, f"5 failed streams used {used:.3f} s of CPU"


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_live_abandoned_streams_free_their_connections(
    transport: str, emulator_factory: Any
) -> None:
    """120 streams, each left at a random point (break, error, cancellation), on a pool of
    20: afterwards no connection is in use and a new stream succeeds."""
    server = emulator_factory(latency_scale=0.01)
    rng = random.Random(7)
    providers = [provider_at(n, server.url) for n in NAMES]
    build = TRANSPORTS[transport]
    http = build()
    http = HttpClient(
        HttpConfig(
            http2=http.config.http2,
            transport=http.config.transport,
            max_connections=20,
            max_keepalive_connections=20,
            pool_timeout_s=20.0,
        ),
        transport=None
        if transport != "httpx-h2c"
        else build_transport(
            HttpConfig(http2=True, max_connections=20, max_keepalive_connections=20),
            http1=False,
        ),
    )

    async def one(i: int) -> str:
        provider = providers[i % len(providers)]
        how = rng.choice(["break", "raise", "cancel", "end", "before-read"])
        stop_after = rng.randint(0, 8)
        stream = await provider.open_stream(http, request(f"describe loop_{i}.wav"))
        async with stream:
            if how == "before-read":
                return how
            n = 0
            async for _ in stream:
                n += 1
                if n > stop_after and how == "break":
                    break
                if n > stop_after and how == "raise":
                    raise KeyError("caller error")
        return how

    async with http:
        async with asyncio.timeout(120):
            tasks = [asyncio.create_task(one(i)) for i in range(120)]
            await asyncio.sleep(0)
            for _ in range(30):  # cancel some callers at random moments
                await asyncio.sleep(rng.uniform(0, 0.01))
                rng.choice(tasks).cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        kinds = {type(r).__name__ if isinstance(r, BaseException) else r for r in results}
        assert {"CancelledError", "KeyError", "break", "end"} <= kinds, kinds
        assert not [r for r in results if isinstance(r, Exception) and not isinstance(r, KeyError)]
        assert busy_connections(http) == 0
        async with asyncio.timeout(30):
            assert await collect(await providers[0].open_stream(http, request()))


@pytest.mark.live
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_emulator_stream_fault_flags_and_configure(emulator_factory: Any) -> None:
    server = emulator_factory(stream_faults=["cut:2", "429@1"], stream_fault_rate=1.0)
    assert server.stats()["world"]["stream_faults"] == ["cut:2", "429@1"]
    provider = provider_at("openai", server.url)
    errors = set()
    async with HttpClient(HttpConfig(transport="aiohttp")) as http, asyncio.timeout(30):
        for i in range(12):
            parts, error = await read_until_error(
                await provider.open_stream(http, request(f"describe {i}.wav"))
            )
            assert error is not None and len(parts) in (1, 2)
            errors.add(type(error))
        assert errors == {RemoteProtocolError, RateLimitError}
        server.configure(stream_faults=["stall:0.01"])
        assert await collect(await provider.open_stream(http, request()))
        server.configure(stream_faults=[])
        assert await collect(await provider.open_stream(http, request()))
    with pytest.raises(urllib.error.HTTPError) as info:
        server.configure(stream_faults=["cut:x"])
    assert info.value.code == 400


def test_emulator_main_refuses_a_bad_stream_fault(capsys: pytest.CaptureFixture[str]) -> None:
    from fixtures.emulator import main

    assert main(["--port", "0", "--stream-fault", "cut@1"]) == 2
    assert "bad stream fault" in capsys.readouterr().err


# --------------------------------------------------------------------------- respx


@pytest.mark.parametrize("name", NAMES)
async def test_stream_through_respx_routes(name: str, mock_providers: Any) -> None:
    """The respx-mocked APIs (httpx's own transport) stream like the emulator."""
    settings = mock_providers.settings
    provider = get_provider(name, settings.provider(name))
    if provider.NEEDS_KEY:
        provider = get_provider(
            name, ProviderConfig(name=name, base_url=provider.base_url, api_key=Secret("sk-x"))
        )
    async with HttpClient(settings.http, sleep=_no_sleep) as http:
        stream = await provider.open_stream(http, request())
        parts = await collect(stream)
        assert len(parts) > 1 and "".join(parts) == stream.response.text
        faulty = await with_fault_header(provider, "stream-429").open_stream(http, request("again"))
        got, error = await read_until_error(faulty)
    assert len(got) == 1 and isinstance(error, RateLimitError)
    assert mock_providers.calls[name] == 2


@pytest.mark.live
async def test_cancelled_requests_leave_no_orphan_in_httpx_pool(emulator_server: Any) -> None:
    """httpcore 1.0.9 keeps a connection created for a request cancelled before it connected
    (encode/httpcore#1093): the client drops it, so the pool keeps its slots."""
    cfg = HttpConfig(transport="httpx", max_connections=2, pool_timeout_s=5.0)
    provider = provider_at("openai", emulator_server.url)
    async with HttpClient(cfg) as http:
        for _ in range(5):
            tasks = [
                asyncio.create_task(provider.open_stream(http, request(f"{i}"))) for i in range(4)
            ]
            await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool = http._transport._pool  # type: ignore[union-attr]
            assert [c for c in pool.connections if "CONNECTING" in repr(c)] == []
        async with asyncio.timeout(30):
            assert await collect(await provider.open_stream(http, request()))


@pytest.mark.live
@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_live_headers_timeout_then_the_pool_still_works(
    transport: str, emulator_server: Any
) -> None:
    """The emulator stalls 1 s before the headers (fault ``timeout``): a 0.1 s headers bound
    gives RequestTimeout after the client's retries, and the pool is left clean."""
    provider = faulted("anthropic", emulator_server.url, "timeout")
    waits: list[float] = []

    async def back_off(delay: float) -> None:  # counted, not slept: no assertion reads them
        waits.append(delay)

    async with TRANSPORTS[transport](sleep=back_off) as http:
        async with asyncio.timeout(30):
            with pytest.raises(RequestTimeout):
                await provider.open_stream(http, request(timeout=0.1))
        assert len(waits) == 2  # three attempts: the default retries, each timed out
        assert busy_connections(http) == 0
        plain = provider_at("anthropic", emulator_server.url)
        async with asyncio.timeout(30):
            assert await collect(await plain.open_stream(http, request(timeout=5.0)))


def test_sse_garbage_is_a_syntax_error_and_unknown_fields_are_ignored() -> None:
    from samplemind_core.providers._parse import StreamSyntaxError

    p = SSEParser(1024)
    assert p.feed(b"nonsense-field: 1\ndata\n\n") == [("", "")]
    with pytest.raises(StreamSyntaxError, match="UTF-8"):
        p.feed(b"data: \xff\xfe\n\n")


@pytest.mark.parametrize("name", NAMES)
async def test_garbage_event_is_malformed_after_the_text_before_it(name: str) -> None:
    world = WorldModel(seed=3, latency_scale=0.0)
    full = world_transport(world)

    class Garbage(httpx.AsyncBaseTransport):
        async def handle_async_request(self, req: httpx.Request) -> httpx.Response:
            response = await full.handle_async_request(req)
            body = await response.aread()
            sep = {"ollama": b"\n", "gemini": b"\r\n\r\n"}.get(name, b"\n\n")
            frames = body.split(sep)
            junk = b"{not json" if name == "ollama" else b"data: {not json"
            glued = sep.join([*frames[:4], junk, *frames[4:]])  # one read: text, then junk
            return httpx.Response(200, headers=response.headers, content=glued)

    async with HttpClient(transport=Garbage()) as http:
        parts, error = await read_until_error(
            await provider_at(name, BASE).open_stream(http, request())
        )
    assert parts and isinstance(error, MalformedResponseError)


async def test_openai_done_without_a_finish_reason_is_a_cut_reply() -> None:
    """llama.cpp's server ends an interrupted request with ``[DONE]`` and no finish_reason:
    the reply is cut, so it is malformed (the layer then falls back or interrupts, and never
    stores it), after the text it had given."""

    def handler(req: httpx.Request) -> httpx.Response:
        body = (
            b'data: {"model":"gemma","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
            b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
            b"data: [DONE]\n\n"
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async with HttpClient(transport=httpx.MockTransport(handler)) as http:
        stream = await provider_at("openai", BASE).open_stream(http, request())
        parts, error = await read_until_error(stream)
    assert parts == ["hi"]
    assert isinstance(error, MalformedResponseError) and "finish_reason" in str(error)
