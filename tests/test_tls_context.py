"""One TLS context per kind of transport and process (decision 0563), verifying as before.

The shared context is httpx's ``verify=True`` without the environment (certifi's bundle,
hostname checks): every transport of a kind holds the same one, the kinds never share one
(httpcore sets the ALPN list on it), and a real TLS server on loopback whose certificate a
throw-away CA signed is refused through it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fixtures.redis import _write_tls_files
from samplemind_core import HttpConfig, TransportError
from samplemind_core.http import HttpClient, _tls_context, build_transport

KINDS = {
    "aiohttp": HttpConfig(transport="aiohttp"),
    "h1": HttpConfig(transport="httpx"),
    "h2": HttpConfig(transport="httpx", http2=True),
}


def _context_of(transport: object) -> ssl.SSLContext:
    aiohttp_ctx = getattr(transport, "ssl_context", None)
    if isinstance(aiohttp_ctx, ssl.SSLContext):
        return aiohttp_ctx
    return transport._pool._ssl_context  # type: ignore[attr-defined,no-any-return]


def test_each_kind_has_one_context_that_verifies_like_httpx_default() -> None:
    contexts = {}
    for kind, config in KINDS.items():
        first, second = _context_of(build_transport(config)), _context_of(build_transport(config))
        assert first is second is _tls_context(kind)
        assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
        assert first.cert_store_stats()["x509_ca"] > 50  # certifi's bundle is loaded
        contexts[kind] = first
    assert len({id(c) for c in contexts.values()}) == 3  # ALPN lists never mix
    h2c = build_transport(HttpConfig(transport="httpx", http2=True), http1=False)
    assert _context_of(h2c) is contexts["h2"]


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[str]:
    """``https://127.0.0.1:PORT`` answering every request with 200 (throw-away CA)."""
    _write_tls_files(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client refused our certificate: nothing to answer
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("kind", ["aiohttp", "h1"])
async def test_a_certificate_of_an_unknown_ca_is_refused(tls_server: str, kind: str) -> None:
    config = KINDS[kind]
    async with HttpClient(config) as http:
        with pytest.raises(TransportError) as info:  # mapped into our tree, the cause kept
            await asyncio.wait_for(http.request("GET", tls_server, timeout=10), 30)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(repr(exc))
        exc = exc.__cause__ or exc.__context__
    assert any("CERTIFICATE_VERIFY_FAILED" in text for text in chain), chain
