"""The lent read (decision 0800): a stream's only reader reads the upstream in its own task.

On the raw aiohttp transport the manager's producer task lends its per-chunk read to the
feed's only reader (``UpstreamFeed.lend``): each chunk goes socket -> caller with no hop
through the producer task. These tests hold the lent read to everything the producer's own
read guarantees, on real sockets (the emulator server, a real redis-server, and a loopback
server that trickles an SSE body in fragments of random size, so that a read is cut in the
middle of an event): the same chunks as the httpx path (which does not lend), followers that
join mid-stream, the leader cancelled in the middle of a read, the idle timeout, faults after
text, the manager closed mid-read, and thousands of streams cancelled at random.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from fixtures.servers import EmulatorServer, start_emulator, with_fault_header
from samplemind_core import (
    AllProvidersFailedError,
    CacheConfig,
    ChatRequest,
    ClientStateError,
    HttpConfig,
    ProviderConfig,
    ResponseCache,
    RetryConfig,
    Secret,
    Settings,
    StreamConfig,
    StreamInterrupted,
)
from samplemind_core._streaming import UpstreamFeed
from samplemind_core.http import HttpClient
from samplemind_core.manager import AIManager
from samplemind_core.providers import PROVIDER_CLASSES
from tests._helpers import LoopbackHTTP, read_request

pytestmark = [pytest.mark.live]

NAMES = sorted(PROVIDER_CLASSES)
LIVENESS_S = 60


# --------------------------------------------------------------------------- helpers


class Pushes:
    """Which task pushed each chunk into a feed: ``"caller"`` (a lent read) or
    ``"producer"`` (the feed's producer task)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.by: list[str] = []
        push = UpstreamFeed.push

        def probe(feed: UpstreamFeed, text: str) -> None:
            self.by.append("producer" if asyncio.current_task() is feed.task else "caller")
            push(feed, text)

        monkeypatch.setattr(UpstreamFeed, "push", probe)

    def clear(self) -> None:
        self.by.clear()


def busy(http: HttpClient) -> int:
    """Connections of the client's aiohttp pool in use."""
    session = http._session
    assert session is not None, "not on the raw path"
    return len(session.connector._acquired)  # type: ignore[union-attr]


def req(name: str | None, text: str, max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": text}], provider=name, max_tokens=max_tokens
    )


async def read(ai: AIManager, request: ChatRequest, **kw: Any) -> tuple[list[str], Any]:
    async with asyncio.timeout(LIVENESS_S):
        async with ai.stream(request, **kw) as stream:
            chunks = [c.text async for c in stream]
            return chunks, stream.response


async def settle(ai: AIManager, server: Trickle | None = None) -> None:
    """Nothing of the streams is left: no producer task, no feed, no busy connection, and
    no other task in the loop than ``server``'s (the pool's closing callbacks get a few
    passes)."""
    for _ in range(50):
        others = asyncio.all_tasks() - {asyncio.current_task()}
        if server is not None:
            others -= server._tasks
        if not ai._stream_tasks and not ai._feeds and busy(ai.http) == 0 and not others:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(
        f"left: {len(ai._stream_tasks)} producer tasks, {len(ai._feeds)} feeds, "
        f"{busy(ai.http)} busy connections, {len(others)} tasks"
    )


@pytest.fixture
async def cache(redis_server: Any) -> AsyncIterator[ResponseCache]:
    client = Redis.from_url(redis_server.url)
    namespace = "direct-" + uuid.uuid4().hex[:8]
    try:
        yield ResponseCache(client, config=CacheConfig(namespace=namespace))
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def paced() -> Iterator[EmulatorServer]:
    """An emulator at a tenth of real-world pacing: text chunks a few ms apart."""
    server = start_emulator(latency_scale=0.1)
    try:
        yield server
    finally:
        server.stop()


def manager(
    emulator: EmulatorServer, cache: ResponseCache | None, transport: str = "aiohttp", **http: Any
) -> AIManager:
    config = HttpConfig(transport=transport, **http)  # type: ignore[arg-type]
    return AIManager(emulator.settings(Settings(http=config)), cache=cache)


# --------------------------------------------------------------------------- a trickled body


def sse_body(texts: list[str]) -> bytes:
    events: list[dict[str, Any]] = [
        {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": t}}]} for t in texts
    ]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(texts)}})
    body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


def ndjson_body(texts: list[str]) -> bytes:
    lines: list[dict[str, Any]] = [
        {"model": "llama3.2", "message": {"role": "assistant", "content": t}, "done": False}
        for t in texts
    ]
    lines.append({"model": "llama3.2", "done": True, "done_reason": "stop", "eval_count": 60})
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


BODIES = {
    "openai": (sse_body, "text/event-stream"),
    "ollama": (ndjson_body, "application/x-ndjson"),
}


class Trickle(LoopbackHTTP):
    """A loopback HTTP/1.1 server answering every request with one body of ``wire``'s format
    (OpenAI's SSE, Ollama's NDJSON), written in fragments of 1-24 bytes (cut anywhere: inside
    a line, an event, a UTF-8 character) with a short pause between them; ``stall_after``
    bytes, then silence (0: never). ``paced = False`` drops the pauses from the next
    fragment on (still cut anywhere, written one by one): for the rest of a body whose
    pacing no assertion reads any more."""

    def __init__(
        self, texts: list[str], seed: int, stall_after: int = 0, wire: str = "openai"
    ) -> None:
        super().__init__()
        build, self.content_type = BODIES[wire]
        self.body = build(texts)
        self.rng = random.Random(seed)
        self.stall_after = stall_after
        self.paced = True
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            self.requests += 1
            body = self.body
            writer.write(
                f"HTTP/1.1 200 OK\r\ncontent-type: {self.content_type}\r\n".encode()
                + f"content-length: {len(body)}\r\n\r\n".encode()
            )
            at = 0
            while at < len(body):
                if self.stall_after and at >= self.stall_after:
                    await reader.read(1)  # silent until the client leaves
                    return
                n = self.rng.randint(1, 24)
                writer.write(body[at : at + n])
                at += n
                await writer.drain()
                pause = self.rng.choice((0, 0, 0.0005, 0.001))
                await asyncio.sleep(pause if self.paced else 0)


def trickle_settings(url: str, **stream: Any) -> Settings:
    return Settings(
        http=HttpConfig(transport="aiohttp", retry=RetryConfig(attempts=1)),
        providers={
            "openai": ProviderConfig(
                name="openai", base_url=f"{url}/v1", api_key=Secret("sk-direct-0123456789")
            ),
            "ollama": ProviderConfig(name="ollama", base_url=url),
        },
        stream=StreamConfig(**stream),
    )


TEXTS = [f"tok{i:03d}é " for i in range(60)]  # a two-byte character in every chunk


# --------------------------------------------------------------------------- the same chunks


@pytest.mark.parametrize("name", NAMES)
async def test_the_only_reader_reads_in_its_own_task_and_gets_the_producers_chunks(
    name: str, emulator_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every wire format: on aiohttp every chunk is pushed by the caller's task (lent), on
    httpx by the producer task (its body is an async generator: not lent); the chunks, the
    text and the reply are the same."""
    pushes = Pushes(monkeypatch)
    request = req(name, f"describe direct_{name}.wav")
    async with manager(emulator_server, None, "aiohttp") as ai:
        lent, resp = await read(ai, request)
        assert set(pushes.by) == {"caller"} and len(pushes.by) == len(lent) > 1
        await settle(ai)
    pushes.clear()
    async with manager(emulator_server, None, "httpx") as ai:
        produced, resp2 = await read(ai, request)
        assert set(pushes.by) == {"producer"}
    assert lent == produced and resp.text == resp2.text == "".join(lent)
    assert resp.usage == resp2.usage and resp.provider == resp2.provider == name
    assert resp.metadata["stream"] == {"role": "leader", "chunks": len(lent)}


async def test_a_follower_joining_mid_stream_gets_every_chunk_from_the_first(
    paced: EmulatorServer, cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushes = Pushes(monkeypatch)
    request = req("openai", "follow me " + uuid.uuid4().hex)
    calls0 = paced.stats()["calls"].get("openai", 0)
    async with manager(paced, cache) as ai:
        async with asyncio.timeout(LIVENESS_S), ai.stream(request) as leader:
            first = [await leader.__anext__() for _ in range(3)]
            assert pushes.by == ["caller"] * 3
            async with ai.stream(request) as follower:
                assert follower.role == "follower"
                rest, got = await asyncio.gather(
                    _drain(leader), _drain(follower)
                )  # both to the end
            leader_chunks = [c.text for c in first] + rest
            assert got == leader_chunks and "".join(got) == leader.response.text
            assert pushes.by[3:] and set(pushes.by[3:]) == {"producer"}  # read for both
        assert paced.stats()["calls"]["openai"] == calls0 + 1
        await settle(ai)


async def _drain(stream: Any) -> list[str]:
    return [c.text async for c in stream]


# --------------------------------------------------------------------------- leaving mid-read


@pytest.mark.parametrize("wire", sorted(BODIES))
async def test_the_leader_cancelled_mid_read_loses_no_byte_for_its_followers(
    wire: str, cache: ResponseCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body arrives in fragments cut anywhere; the leader reads it directly and is
    cancelled at a random moment in the middle of a read, right after followers joined: the
    producer takes the read back where the leader's cancelled read left it (aiohttp's
    buffer, the SSE parser's partial line): every follower gets the whole text, each chunk
    once, from one upstream call."""
    pushes = Pushes(monkeypatch)
    rng = random.Random(20)
    mid_read = 0
    rounds = 12
    async with (
        Trickle(TEXTS, seed=7, wire=wire) as server,
        AIManager(trickle_settings(server.url), cache=cache) as ai,
    ):
        for r in range(rounds):
            pushes.clear()
            server.paced = True
            request = req(wire, f"leader {r} {uuid.uuid4().hex}")
            seen: list[str] = []
            entered = asyncio.Event()

            async def lead(
                request: ChatRequest = request, seen: list[str] = seen, entered: Any = entered
            ) -> None:
                async with ai.stream(request) as stream:
                    entered.set()
                    async for chunk in stream:
                        seen.append(chunk.text)

            leader = asyncio.create_task(lead())
            async with asyncio.timeout(LIVENESS_S):
                await entered.wait()
                for _ in range(rng.randint(1, 40)):  # a random moment of the stream
                    await asyncio.sleep(rng.choice((0, 0.0003, 0.001)))
            key = next(iter(ai._feeds))
            feed = ai._feeds[key]
            lent = feed._lent
            in_read = lent is not None and lent.busy
            followers = [ai.stream(request) for _ in range(3)]
            for f in followers:
                await f.__aenter__()
            mid_read += in_read and feed._lent is lent and lent.busy
            leader.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leader
            # The cut is behind us (the leader's read cancelled where it was): the rest of the
            # body comes unpaced, still in fragments cut anywhere (it took ~90 % of the round).
            server.paced = False
            async with asyncio.timeout(LIVENESS_S):
                texts = await asyncio.gather(*(_drain(f) for f in followers))
            for f, got in zip(followers, texts, strict=True):
                assert got == TEXTS and f.response.text == "".join(TEXTS)
                await f.aclose()
            assert seen == TEXTS[: len(seen)]
            # The leader read directly (each chunk it got) until the followers came.
            assert pushes.by[: len(seen)] == ["caller"] * len(seen)
            assert set(pushes.by[len(seen) :]) == {"producer"}
        assert server.requests == rounds  # one upstream call per round
        await settle(ai, server)
    assert mid_read >= rounds // 2  # most cancellations landed inside a lent read


async def test_the_last_reader_cancelled_mid_read_frees_the_connection(
    paced: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushes = Pushes(monkeypatch)
    rng = random.Random(3)
    async with manager(paced, None, max_connections=1, retry=RetryConfig(attempts=1)) as ai:
        for i in range(6):  # one connection: a leaked one would block the next stream
            got: list[str] = []

            async def one(i: int = i, got: list[str] = got) -> None:
                async with ai.stream(req("openai", f"alone {i}")) as stream:
                    async for chunk in stream:
                        got.append(chunk.text)

            task = asyncio.create_task(one())
            async with asyncio.timeout(LIVENESS_S):
                want = rng.randint(1, 6)
                while len(got) < want:  # noqa: ASYNC110 (a chunk count, not an event)
                    await asyncio.sleep(0.001)
            assert len(ai._stream_tasks) == 1  # the producer, lending its read
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await settle(ai)
        assert set(pushes.by) == {"caller"}
        chunks, _ = await read(ai, req("openai", "after the cancellations"))
        assert chunks


# --------------------------------------------------------------------------- errors while lent


async def test_the_idle_timeout_while_lent_interrupts_or_falls_back_as_before(
    emulator_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pushes = Pushes(monkeypatch)
    async with manager(emulator_server, None) as ai:
        ai._providers["ollama"] = with_fault_header(ai.provider("ollama"), "stream-stall:30@1")
        with pytest.raises(StreamInterrupted, match="idle_timeout_s") as info:
            await read(ai, req("ollama", "stall after one"), idle_timeout_s=0.3)
        assert info.value.chunks == 1 and pushes.by == ["caller"]
        assert ai.router.health("ollama").consecutive_failures == 1
        await settle(ai)
        # Before any text: the next provider answers, the route says why ollama was left.
        ai._providers["ollama"] = with_fault_header(ai.provider("ollama"), "stream-stall:30@0")
        pushes.clear()
        chunks, resp = await read(ai, req(None, "stall before text"), idle_timeout_s=0.3)
        route = resp.metadata["route"]
        assert route[0]["provider"] == "ollama" and "idle_timeout_s" in route[0]["error"]
        assert resp.provider != "ollama" and "".join(chunks) == resp.text
        assert set(pushes.by) == {"caller"}  # the fallback's stream was lent too
        await settle(ai)


async def test_a_slow_reader_is_not_idle_time(
    emulator_server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle timeout counts only while someone waits for a chunk: a lone reader that takes
    longer than ``idle_timeout_s`` over each chunk (while nobody reads the upstream) gets the
    whole answer, as it did when the producer read ahead."""
    pushes = Pushes(monkeypatch)
    async with manager(emulator_server, None) as ai:
        request = req("ollama", "a slow reader")
        got: list[str] = []
        async with asyncio.timeout(LIVENESS_S), ai.stream(request, idle_timeout_s=0.1) as s:
            async for chunk in s:
                got.append(chunk.text)
                if len(got) <= 3:
                    await asyncio.sleep(0.25)  # the consumer's own work: 2.5x idle_timeout_s
            resp = s.response
        assert "".join(got) == resp.text and len(got) > 3
        assert set(pushes.by) == {"caller"}
        await settle(ai)


async def test_the_callers_own_timeout_while_lent_stays_its_own(
    emulator_server: EmulatorServer,
) -> None:
    """A caller's own deadline (``asyncio.timeout``) in the middle of a lent read is a
    cancellation of the caller: TimeoutError, not the layer's RequestTimeout; the
    connection is freed."""
    async with manager(emulator_server, None) as ai:
        ai._providers["ollama"] = with_fault_header(ai.provider("ollama"), "stream-stall:30@1")
        got: list[str] = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                async with ai.stream(req("ollama", "my own deadline"), idle_timeout_s=20) as s:
                    async for chunk in s:
                        got.append(chunk.text)
        assert len(got) == 1
        await settle(ai)


@pytest.mark.parametrize("spec", ["stream-cut:2", "stream-429@1", "stream-malformed@2"])
async def test_a_fault_after_text_while_lent_interrupts_as_before(
    spec: str,
    emulator_server: EmulatorServer,
    cache: ResponseCache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pushes = Pushes(monkeypatch)
    request = req("ollama", f"fault {spec} {uuid.uuid4().hex}")
    async with manager(emulator_server, cache) as ai:
        ai._providers["ollama"] = with_fault_header(ai.provider("ollama"), spec)
        with pytest.raises(StreamInterrupted) as info:
            await read(ai, request)
        assert info.value.provider == "ollama" and info.value.chunks >= 1
        assert pushes.by and set(pushes.by) == {"caller"}
        assert await cache.get(request) is None  # nothing stored
        await settle(ai)
        # With on_interrupt="restart": the next provider's stream, lent too, restarted.
        pushes.clear()
        request = req(None, f"restart {spec} {uuid.uuid4().hex}")
        async with asyncio.timeout(LIVENESS_S), ai.stream(request, on_interrupt="restart") as s:
            got = [c async for c in s]
            resp = s.response
        starts = [c.index for c in got if c.restarted]
        assert len(starts) == 1 and resp.provider != "ollama"
        assert resp.text == "".join(c.text for c in got[starts[0] :])
        assert set(pushes.by) == {"caller"}
        await settle(ai)


async def test_closing_the_manager_mid_read_fails_the_reader_and_frees_the_connection(
    cache: ResponseCache,
) -> None:
    async with Trickle(TEXTS, seed=1, stall_after=200) as server:
        ai = AIManager(trickle_settings(server.url), cache=cache)
        got: list[str] = []

        async def reader() -> None:
            async with ai.stream(req("openai", "closing " + uuid.uuid4().hex)) as stream:
                async for chunk in stream:
                    got.append(chunk.text)

        task = asyncio.create_task(reader())
        async with asyncio.timeout(LIVENESS_S):
            while not got:  # noqa: ASYNC110 (a chunk count, not an event)
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.02)  # the reader is in a lent read of the silent body
            (feed,) = ai._feeds.values()
            assert feed._lent is not None and feed._lent.busy
            session = ai.http._session
            await ai.aclose()
            with pytest.raises(ClientStateError, match="closed"):
                await task
        assert session is not None and session.closed and not ai._stream_tasks
        for _ in range(50):  # the cache's background lease release, the server's reply
            if asyncio.all_tasks() == {asyncio.current_task()}:
                break
            await asyncio.sleep(0.01)
        assert asyncio.all_tasks() == {asyncio.current_task()}


# --------------------------------------------------------------------------- many at once


@pytest.mark.slow
async def test_thousands_of_streams_cancelled_at_random_leave_nothing_behind(
    paced: EmulatorServer, cache: ResponseCache, redis_server: Any
) -> None:
    """2,000 identical streams and 1,000 distinct ones at once, default settings with a
    real redis-server, a third of the callers cancelled at random moments: the others get
    the whole text; no producer task, feed, busy connection, stream lease or other task is
    left; the identical ones made one upstream call."""
    rng = random.Random(2000)
    tag = uuid.uuid4().hex[:8]
    same = req("openai", f"burst {tag}", max_tokens=24)
    distinct = [req("openai", f"distinct {tag} {i}", max_tokens=12) for i in range(1000)]
    calls0 = paced.stats()["calls"].get("openai", 0)
    async with manager(paced, cache, max_connections=200) as ai:

        async def one(request: ChatRequest) -> str:
            async with ai.stream(request) as stream:
                return "".join([c.text async for c in stream])

        tasks = [asyncio.create_task(one(same)) for _ in range(2000)]
        tasks += [asyncio.create_task(one(r)) for r in distinct]
        victims = rng.sample(range(len(tasks)), len(tasks) // 3)

        async def cancel_later(i: int) -> None:
            await asyncio.sleep(rng.random() * 0.5)
            tasks[i].cancel()

        cancels = [asyncio.create_task(cancel_later(i)) for i in victims]
        async with asyncio.timeout(240):
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*cancels)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(e, asyncio.CancelledError) for e in errors), {
            type(e).__name__ for e in errors
        }
        texts = {r for r in results[:2000] if isinstance(r, str)}
        assert len(texts) == 1 and next(iter(texts))
        assert all(r for r in results[2000:] if isinstance(r, str))
        await settle(ai)
    calls = paced.stats()["calls"]["openai"] - calls0
    done = sum(isinstance(r, str) for r in results[2000:])
    assert 1 + done <= calls <= 1 + 1000  # one call for the 2,000 identical streams
    redis = Redis.from_url(redis_server.url)
    try:
        leases = [
            k async for k in redis.scan_iter(match=f"*{cache.config.namespace}*slease*", count=1000)
        ]
    finally:
        await redis.aclose()
    assert leases == []


async def test_an_empty_chain_still_fails_every_reader(
    emulator_server: EmulatorServer,
) -> None:
    """A chain that fails before any stream is opened never lends: the reader waits on the
    feed as before."""
    async with manager(emulator_server, None) as ai:
        for name in NAMES:
            ai._providers[name] = with_fault_header(ai.provider(name), "stream-error@0")
        with pytest.raises(AllProvidersFailedError):
            await read(ai, req(None, "nobody answers"))
        await settle(ai)


# --------------------------------------------------------------------------- the idle watch


async def test_the_idle_watch_cancels_whoever_reads_and_nobody_between_reads() -> None:
    """``IdleWatch.hand``: the watch cancels the task that holds the read, only that task sees
    ``expired()``, and while nobody holds it (a lent read between two chunks) nothing fires."""
    from samplemind_core._streaming import IdleWatch

    watch = IdleWatch(0.05)
    watch.hand(None)  # nobody reads: two idle periods pass without a cancellation
    await asyncio.sleep(0.15)
    assert not watch.fired

    async def borrower() -> str:
        watch.hand(asyncio.current_task())
        try:
            await asyncio.sleep(LIVENESS_S)  # a read that never gets a byte
        except asyncio.CancelledError:
            return "timeout" if watch.expired() else "cancelled"
        finally:
            watch.hand(None)
        return "read"

    assert await asyncio.wait_for(borrower(), LIVENESS_S) == "timeout"
    assert not watch.expired()  # the producer's task was not the one cancelled
    task = asyncio.create_task(borrower())  # the borrower's own cancellation stays its own
    await asyncio.sleep(0)
    task.cancel()
    assert await task == "cancelled"
    watch.stop()
    watch.hand(asyncio.current_task())  # a stopped watch never re-arms
    await asyncio.sleep(0.1)
    assert not watch.fired
