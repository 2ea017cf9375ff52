"""The layer-cost test's schedules (``bench.suites.stream_engine.paired_rounds``): which read
starts when, and that the reads come back paired (raw ``k`` and layer ``k`` read one request)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.harness.streams import Timeline
from bench.suites import stream_engine
from bench.suites.stream_engine import StreamRead, paired_rounds
from samplemind_core import ChatRequest


def _req(tag: str) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": tag}], provider="openai")


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Replace both reads by ones that log (side, request) when they start, then yield once."""
    log: list[tuple[str, str]] = []

    def fake(side: str) -> Any:
        async def read(*args: Any, **_: Any) -> StreamRead:
            request: ChatRequest = args[-1]
            tag = str(request.messages[0]["content"])
            log.append((side, tag))
            await asyncio.sleep(0)
            return StreamRead(Timeline(0.0, ((0.1, tag),)), (f"{side}:{tag}",), None)

        return read

    monkeypatch.setattr(stream_engine, "raw_openai_stream", fake("raw"))
    monkeypatch.setattr(stream_engine, "timed_stream", fake("layer"))
    return log


async def _run(schedule: str, rounds: int = 2, n: int = 4) -> tuple[list[str], list[str]]:
    raw, layer = await paired_rounds(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        lambda r: [_req(f"r{r}-{i}") for i in range(n)],
        rounds=rounds,
        schedule=schedule,
    )
    return [x.chunks[0] for x in raw], [x.chunks[0] for x in layer]


async def test_together_starts_each_pair_side_by_side_first_side_alternating(
    started: list[tuple[str, str]],
) -> None:
    raw, layer = await _run("together")
    assert started[:8] == [
        ("raw", "r0-0"), ("layer", "r0-0"), ("layer", "r0-1"), ("raw", "r0-1"),
        ("raw", "r0-2"), ("layer", "r0-2"), ("layer", "r0-3"), ("raw", "r0-3"),
    ]  # fmt: skip
    assert raw == [f"raw:r{r}-{i}" for r in range(2) for i in range(4)]
    assert layer == [f"layer:r{r}-{i}" for r in range(2) for i in range(4)]


async def test_alternating_runs_each_side_alone_first_side_alternating_by_round(
    started: list[tuple[str, str]],
) -> None:
    raw, layer = await _run("alternating")
    sides = [side for side, _ in started]
    assert sides == ["raw"] * 4 + ["layer"] * 4 + ["layer"] * 4 + ["raw"] * 4
    assert raw == [f"raw:r{r}-{i}" for r in range(2) for i in range(4)]
    assert layer == [f"layer:r{r}-{i}" for r in range(2) for i in range(4)]


async def test_together_waves_starts_every_raw_read_first(started: list[tuple[str, str]]) -> None:
    raw, layer = await _run("together_waves", rounds=1)
    assert [side for side, _ in started] == ["raw"] * 4 + ["layer"] * 4
    assert raw == [f"raw:r0-{i}" for i in range(4)] and len(layer) == 4


async def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'zigzag'"):
        await _run("zigzag")


async def test_second_replaces_the_layer_read(started: list[tuple[str, str]]) -> None:
    async def again(request: ChatRequest) -> StreamRead:
        tag = str(request.messages[0]["content"])
        return StreamRead(Timeline(0.0, ((0.1, tag),)), (f"again:{tag}",), None)

    _raw, second = await paired_rounds(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        lambda r: [_req(f"r{r}-{i}") for i in range(2)],
        rounds=1,
        schedule="together",
        second=again,
    )
    assert [x.chunks[0] for x in second] == ["again:r0-0", "again:r0-1"]
    assert [side for side, _ in started] == ["raw", "raw"]  # no layer read started
