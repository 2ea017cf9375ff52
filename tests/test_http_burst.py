"""The HTTP client under bursts (issue 23, item 2): no lock-up, bounded calls, a clean pool.

* a burst of 1,000 ``AIManager.complete()`` calls against the real emulator on both
  transports (httpx's own pool used to leave 100 connections in CONNECTING and answer
  none within minutes);
* a per-request timeout bounds the whole call, pool wait and connect included (a
  listener whose accept queue is full: connects hang, as behind a SYN-dropping server);
* a connection that cannot be established leaves the pool; a request that leaves while
  queued leaves no connection behind (encode/httpcore#1093); no gate slot outlives its
  response;
* :class:`~samplemind_core._pool_guard.PoolGate` alone: FIFO, bounded wait, no lost slot.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest

from samplemind_core import (
    AIManager,
    ChatRequest,
    HttpConfig,
    RequestTimeout,
    RetryConfig,
    Settings,
    TransportError,
)
from samplemind_core._pool_guard import (
    CoalescingBackend,
    CoalescingStream,
    GuardedHTTPTransport,
    GuardedPool,
    PoolGate,
)
from samplemind_core.http import HttpClient, build_transport

TRANSPORTS = ["httpx", "aiohttp"]
LIVENESS_S = 60.0  # a hang fails the test instead of blocking the run


def pool_state(http: HttpClient) -> dict[str, int]:
    """What the httpx pool holds now (empty dict for another transport)."""
    transport: Any = http._transport
    if not isinstance(transport, GuardedHTTPTransport):
        return {}
    conns = transport.pool.connections
    return {
        "connections": len(conns),
        "connecting": sum("CONNECTING" in repr(c) for c in conns),
        "busy": sum(not c.is_idle() for c in conns),
        "slots_held": transport.gate.in_use,
        "queued": transport.gate.waiting,
        "pool_requests": len(transport.pool._requests),
    }


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A URL whose TCP connects hang: a listener with a full accept queue that never accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))  # takes the only queue place
    try:
        yield f"http://127.0.0.1:{port}/v1/x"
    finally:
        filler.close()
        listener.close()


# -- the reported lock-up, against the real emulator -----------------------------------


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_a_burst_of_1000_calls_is_answered_and_leaves_nothing_behind(
    kind: str, emulator_server: Any
) -> None:
    import dataclasses

    settings = dataclasses.replace(
        emulator_server.settings(),
        http=HttpConfig(transport=kind, pool_timeout_s=120.0),  # type: ignore[arg-type]
    )
    n = 1000
    async with AIManager(settings) as ai:

        async def one(i: int) -> Any:
            request = ChatRequest(messages=[{"role": "user", "content": f"burst {i}"}])
            return await ai.complete(request)

        results = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True), LIVENESS_S
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        assert {r.provider for r in results} == {"ollama"}  # no fallback: nothing failed
        state = pool_state(ai.http)
        if kind == "httpx":
            assert state["connecting"] == 0
            assert state["slots_held"] == state["queued"] == state["pool_requests"] == 0
            assert 0 < state["connections"] <= 50  # the keep-alive limit counts idle ones
        # One more call after the burst, with a short whole-call timeout, is answered.
        late = ChatRequest(messages=[{"role": "user", "content": "after"}], timeout=5.0)
        reply = await asyncio.wait_for(ai.complete(late), LIVENESS_S)
        assert reply.provider == "ollama" and reply.text


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_faults_with_healthy_fallbacks_answer_and_leave_a_clean_pool(
    kind: str, emulator_server: Any, emulator_factory: Any
) -> None:
    import dataclasses

    # A "timeout" fault here is a slow reply (the stall is shorter than the call's 5 s): 0.25 s
    # holds its connection as the default 1 s did, for a quarter of the wave's wait.
    faulty = emulator_factory(
        fault_rate=0.3, faults=["disconnect", "malformed", "timeout"], stall_s=0.25
    )
    base = emulator_server.settings().with_provider("ollama", base_url=faulty.url)
    settings = dataclasses.replace(base, http=HttpConfig(transport=kind))  # type: ignore[arg-type]
    n = 300
    async with AIManager(settings) as ai:

        async def one(i: int) -> Any:
            request = ChatRequest(messages=[{"role": "user", "content": f"f {i}"}], timeout=5.0)
            return await ai.complete(request)

        for _wave in range(2):
            results = await asyncio.wait_for(
                asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True), LIVENESS_S
            )
            answered = [r for r in results if not isinstance(r, BaseException)]
            assert len(answered) >= 0.99 * n, [r for r in results if isinstance(r, BaseException)][
                :3
            ]
            state = pool_state(ai.http)
            if kind == "httpx":
                assert state["connecting"] == state["slots_held"] == state["queued"] == 0
                assert state["pool_requests"] == 0


@pytest.mark.live
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_callers_cancelled_at_random_leave_a_clean_pool(emulator_server: Any) -> None:
    import random

    rng = random.Random(23)
    config = HttpConfig(transport="httpx", max_connections=20, max_keepalive_connections=10)
    url = emulator_server.url + "/api/chat"
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "stream": False}
    async with HttpClient(config) as http:

        async def one() -> str:
            try:
                await asyncio.wait_for(
                    http.request("POST", url, json=body), rng.uniform(0.001, 3.0)
                )
            except (TimeoutError, TransportError):
                return "cancelled"
            return "answered"

        warm = [http.request("POST", url, json=body, timeout=10.0) for _ in range(20)]
        await asyncio.wait_for(asyncio.gather(*warm), LIVENESS_S)  # connections open
        outcomes = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(300))), LIVENESS_S)
        assert "cancelled" in outcomes and "answered" in outcomes  # a real mix
        state = pool_state(http)
        # No request left in the pool, no connection left busy without one (httpcore's
        # own clean-up of a cancelled request or response can be cut short).
        assert state["busy"] == 0
        assert state["connecting"] == state["slots_held"] == state["queued"] == 0
        assert state["pool_requests"] == 0
        response = await asyncio.wait_for(http.request("POST", url, json=body, timeout=10.0), 30)
        assert response.status_code == 200
        assert pool_state(http)["connections"] <= 10


# -- the whole-call timeout -----------------------------------------------------------


@pytest.mark.live
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_request_timeout_bounds_pool_wait_and_connect(kind: str, blackhole: str) -> None:
    # Phase timeouts far beyond the liveness bound: only the whole-call deadline can end
    # these calls in time. One connection: the second and third wait for the pool.
    config = HttpConfig(
        transport=kind,  # type: ignore[arg-type]
        connect_timeout_s=600.0,
        pool_timeout_s=600.0,
        max_connections=1,
        max_keepalive_connections=1,
    )
    async with HttpClient(config) as http:
        calls = [http.request("GET", blackhole, timeout=0.15) for _ in range(3)]
        outcomes = await asyncio.wait_for(
            asyncio.gather(*calls, return_exceptions=True), LIVENESS_S
        )
        for outcome in outcomes:
            assert isinstance(outcome, RequestTimeout), outcome
            assert "did not complete within 0.15 s" in str(outcome)
        if kind == "httpx":
            assert pool_state(http) == {
                "connections": 0,
                "connecting": 0,
                "busy": 0,
                "slots_held": 0,
                "queued": 0,
                "pool_requests": 0,
            }


@pytest.mark.live
async def test_caller_cancellation_propagates_and_frees_the_slot(blackhole: str) -> None:
    config = HttpConfig(transport="httpx", max_connections=1, connect_timeout_s=600.0)
    async with HttpClient(config) as http:
        tasks = [
            asyncio.create_task(http.request("GET", blackhole, timeout=30.0)) for _ in range(2)
        ]
        await asyncio.sleep(0.05)  # one is connecting, the other waits for the slot
        for task in tasks:
            task.cancel()
        for task in tasks:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, LIVENESS_S)
        assert pool_state(http)["slots_held"] == 0
        assert pool_state(http)["connections"] == 0


# -- a connection that cannot be established leaves the pool ---------------------------


@pytest.mark.live
async def test_a_connect_that_times_out_leaves_the_pool(blackhole: str) -> None:
    config = HttpConfig(
        transport="httpx", connect_timeout_s=0.1, max_connections=2, retry=RetryConfig(attempts=1)
    )
    async with HttpClient(config) as http:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(http.request("GET", blackhole) for _ in range(4)), return_exceptions=True
            ),
            LIVENESS_S,
        )
        assert all(isinstance(o, RequestTimeout) for o in outcomes), outcomes
        assert pool_state(http)["connections"] == 0
        assert pool_state(http)["slots_held"] == 0


@pytest.mark.live
async def test_a_refused_connect_leaves_the_pool_and_the_pool_still_serves(
    emulator_server: Any,
) -> None:
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/"
    config = HttpConfig(transport="httpx", max_connections=1, retry=RetryConfig(attempts=1))
    async with HttpClient(config) as http:
        for _ in range(3):
            with pytest.raises(TransportError):
                await asyncio.wait_for(http.request("GET", refused), LIVENESS_S)
        assert pool_state(http)["connections"] == 0
        response = await asyncio.wait_for(http.request("GET", emulator_server.url + "/"), 30)
        assert response.status_code == 200


@pytest.mark.live
async def test_a_request_leaving_while_queued_in_the_pool_leaves_no_orphan(
    blackhole: str, emulator_server: Any
) -> None:
    # The upstream sequence (encode/httpcore#1093), inside the pool itself: a gate wider
    # than the pool lets the second request queue in httpcore. The first is cancelled in
    # its connect; its cleanup creates a connection for the second, which is cancelled
    # before connecting. Plain httpcore keeps that connection in CONNECTING for ever.
    transport = GuardedHTTPTransport(
        gate_size=2, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
    )
    assert transport.pool_guarded and isinstance(transport.pool, GuardedPool)
    async with HttpClient(transport=transport) as http:
        tasks = [asyncio.create_task(http.request("GET", blackhole)) for _ in range(2)]
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert transport.pool.connections == []
        assert transport.gate.in_use == 0
        ok = await asyncio.wait_for(
            http.request("GET", emulator_server.url + "/", timeout=10.0), LIVENESS_S
        )
        assert ok.status_code == 200


# -- slots follow responses, streamed ones included ------------------------------------


@pytest.mark.live
async def test_a_streamed_response_holds_its_slot_until_closed(emulator_server: Any) -> None:
    transport = build_transport(HttpConfig(transport="httpx", max_connections=1))
    assert isinstance(transport, GuardedHTTPTransport)
    try:
        request = httpx.Request(
            "GET", emulator_server.url + "/", extensions={"timeout": {"pool": 0.2}}
        )
        response = await transport.handle_async_request(request)
        assert transport.gate.in_use == 1
        # The only slot is taken: another request times out on the pool wait.
        with pytest.raises(httpx.PoolTimeout):
            await transport.handle_async_request(
                httpx.Request(
                    "GET", emulator_server.url + "/", extensions={"timeout": {"pool": 0.05}}
                )
            )
        chunks = [chunk async for chunk in response.aiter_raw()]
        assert b"".join(chunks) == b"Ollama is running"
        await response.aclose()
        await response.aclose()  # idempotent: the slot is given back once
        assert transport.gate.in_use == 0
    finally:
        await transport.aclose()


# -- the gate alone ---------------------------------------------------------------------


async def test_gate_is_fifo_and_bounds_the_wait() -> None:
    gate = PoolGate(1)
    assert await gate.acquire(None) == 0.0
    order: list[int] = []

    async def waiter(i: int) -> None:
        await gate.acquire(None)
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert gate.waiting == 3
    with pytest.raises(TimeoutError):
        await gate.acquire(0.01)
    for _ in range(3):
        gate.release()
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*tasks), LIVENESS_S)
    assert order == [0, 1, 2]
    gate.release()
    assert gate.in_use == 0 and gate.waiting == 0
    with pytest.raises(RuntimeError, match="released more often"):
        gate.release()


async def test_gate_passes_on_a_slot_granted_to_a_leaving_waiter() -> None:
    gate = PoolGate(1)
    await gate.acquire(None)
    first = asyncio.create_task(gate.acquire(None))
    second = asyncio.create_task(gate.acquire(None))
    await asyncio.sleep(0)
    gate.release()  # granted to ``first`` ...
    first.cancel()  # ... which leaves before it runs: the slot must go to ``second``
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, LIVENESS_S)
    assert gate.in_use == 1
    gate.release()
    assert gate.in_use == 0


def test_gate_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        PoolGate(0)


def test_built_httpx_transport_is_guarded_with_the_configured_limits() -> None:
    transport = build_transport(HttpConfig(transport="httpx", max_connections=7))
    assert isinstance(transport, GuardedHTTPTransport)
    assert transport.gate.size == 7 and transport.pool_guarded
    assert Settings().http.pool_timeout_s > 0


# -- one send per HTTP/1.1 request ---------------------------------------------------------


class _RecordingStream(httpcore.AsyncNetworkStream):
    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.calls.append(("write", buffer))

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        self.calls.append(("read", b""))
        return b"HTTP/1.1 200 OK\r\n"

    async def aclose(self) -> None:
        self.calls.append(("close", b""))


async def test_coalescing_stream_sends_a_request_in_one_write_before_reading() -> None:
    inner = _RecordingStream()
    stream = CoalescingStream(inner)
    await stream.write(b"POST / HTTP/1.1\r\n\r\n")
    await stream.write(b"")
    await stream.write(b'{"q": 1}')
    assert inner.calls == []
    await stream.read(4096)
    assert inner.calls == [("write", b'POST / HTTP/1.1\r\n\r\n{"q": 1}'), ("read", b"")]
    big = b"x" * (64 * 1024)
    await stream.write(big)  # a large body is not held back
    assert inner.calls[-1] == ("write", big)
    await stream.write(b"unsent")
    await stream.aclose()  # a closed connection drops what it held
    assert inner.calls[-1] == ("close", b"")


def test_coalescing_applies_to_http1_pools_only() -> None:
    h1 = build_transport(HttpConfig(transport="httpx"))
    h2 = build_transport(HttpConfig(http2=True))
    assert isinstance(h1, GuardedHTTPTransport) and isinstance(h2, GuardedHTTPTransport)
    assert isinstance(h1.pool._network_backend, CoalescingBackend)
    assert not isinstance(h2.pool._network_backend, CoalescingBackend)
