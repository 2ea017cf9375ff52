"""The layer-cost test's raw httpx read (``bench.suites.stream_engine``): a plain
``httpx.AsyncClient`` set up as the layer's httpx transport, reading an OpenAI SSE stream
with the raw aiohttp read's parsing (decision 0860)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from bench.suites.stream_engine import raw_httpx_client, raw_httpx_stream, stream_request
from samplemind_core import HttpConfig, ProviderConfig, Secret
from samplemind_core.http import build_transport
from samplemind_core.providers import get_provider


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _delta(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


BODY = (
    _event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    + b": keep-alive\n\n"
    + _event(_delta("Warm"))
    + _event(_delta(" pads"))
    + _event(_delta(", 92 BPM"))
    + _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    + _event({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
    + b"data: [DONE]"  # the last line without its newline
)


@pytest.mark.parametrize("size", [len(BODY), 7, 1], ids=["whole", "7-byte-pieces", "bytewise"])
async def test_raw_httpx_read_parses_lines_split_anywhere_across_chunks(size: int) -> None:
    seen: list[httpx.Request] = []

    async def pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(BODY), size):
            yield BODY[at : at + size]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=pieces(), headers={"content-type": "text/event-stream"})

    provider = get_provider(
        "openai",
        ProviderConfig(name="openai", base_url="http://emulator.test/v1", api_key=Secret("sk-t")),
    )
    request = stream_request("openai", "t1")
    ticks = iter(range(100))
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        read = await raw_httpx_stream(client, provider, request, clock=lambda: float(next(ticks)))
    # The chunks with choices, empty ones kept in the timeline (TTFT drops them), not in chunks
    assert read.chunks == ("Warm", " pads", ", 92 BPM")
    assert [text for _, text in read.timeline.chunks] == ["", "Warm", " pads", ", 92 BPM", ""]
    assert read.timeline.output_tokens == 3 and read.http_version == "HTTP/1.1"
    assert read.timeline.ttft_s == 2.0  # clock 0 at the send, 1 the role chunk, 2 the first text
    # The request the layer's adapter builds, as the raw aiohttp read sends it
    method, url, headers, body = provider.build_stream_request(request, provider.default_model)
    (sent,) = seen
    assert (sent.method, str(sent.url)) == (method, url)
    assert orjson.loads(sent.content) == body and body["stream"] is True
    assert all(sent.headers[k] == v for k, v in headers.items())


async def test_raw_httpx_read_raises_on_an_error_status() -> None:
    provider = get_provider(
        "openai",
        ProviderConfig(name="openai", base_url="http://emulator.test/v1", api_key=Secret("sk-t")),
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(429, json={"error": "slow down"}))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.HTTPStatusError, match="429"):
            await raw_httpx_stream(client, provider, stream_request("openai", "t2"))


def _pool_settings(pool: Any) -> tuple[Any, ...]:
    return (
        pool._max_connections,
        pool._max_keepalive_connections,
        pool._keepalive_expiry,
        pool._http1,
        pool._http2,
    )


@pytest.mark.parametrize(
    "config",
    [
        HttpConfig(transport="httpx"),
        HttpConfig(transport="httpx", http2=True, max_connections=20, max_keepalive_connections=5),
    ],
    ids=["default", "http2-small-pool"],
)
async def test_raw_httpx_client_has_the_layers_httpx_pool_settings(config: HttpConfig) -> None:
    layer = build_transport(config)
    async with raw_httpx_client(config) as client:
        raw = client._transport
        assert isinstance(raw, httpx.AsyncHTTPTransport)
        assert _pool_settings(raw._pool) == _pool_settings(layer._pool)  # type: ignore[attr-defined]
        assert client.timeout == httpx.Timeout(
            connect=config.connect_timeout_s,
            read=config.read_timeout_s,
            write=config.write_timeout_s,
            pool=config.pool_timeout_s,
        )
        assert client.trust_env is False
    await layer.aclose()
