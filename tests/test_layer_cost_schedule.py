"""The layer-cost test's schedules (``bench.suites.stream_engine.paired_rounds``): which read
starts when, and that the reads come back paired (raw ``k`` and layer ``k`` read one request)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.harness.streams import Timeline
from bench.suites import stream_engine
from bench.suites.stream_engine import StreamRead, paired_rounds, side_rounds
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


def _logging_side(name: str, log: list[tuple[str, str]]) -> stream_engine.Reader:
    async def read(request: ChatRequest) -> StreamRead:
        tag = str(request.messages[0]["content"])
        log.append((name, tag))
        await asyncio.sleep(0)
        return StreamRead(Timeline(0.0, ((0.1, tag),)), (f"{name}:{tag}",), None)

    return read


async def _sides(schedule: str, rounds: int = 2, n: int = 4) -> list[str]:
    log: list[tuple[str, str]] = []
    names = ("raw_aiohttp", "raw_httpx", "layer")
    out = await side_rounds(
        [_logging_side(name, log) for name in names],
        lambda r: [_req(f"r{r}-{i}") for i in range(n)],
        rounds=rounds,
        schedule=schedule,
    )
    for name, reads in zip(names, out, strict=True):  # each side's reads in request order
        assert [x.chunks[0] for x in reads] == [
            f"{name}:r{r}-{i}" for r in range(rounds) for i in range(n)
        ]
    return [f"{side}@{tag}" for side, tag in log]  # the reads in the order they started


def _first_share(order: list[list[str]], a: str, b: str) -> float:
    """Share of the orders in which side ``a`` starts before side ``b``."""
    return sum(o.index(a) < o.index(b) for o in order) / len(order)


async def test_three_sides_together_start_each_requests_reads_side_by_side_order_reversed() -> None:
    started = await _sides("together")
    assert started[:6] == [
        "raw_aiohttp@r0-0", "raw_httpx@r0-0", "layer@r0-0",
        "layer@r0-1", "raw_httpx@r0-1", "raw_aiohttp@r0-1",
    ]  # fmt: skip
    per_request = [[s.split("@")[0] for s in started[3 * k : 3 * k + 3]] for k in range(8)]
    for a, b in (("raw_aiohttp", "layer"), ("raw_httpx", "layer"), ("raw_aiohttp", "raw_httpx")):
        assert _first_share(per_request, a, b) == 0.5  # every pair of sides: first half the time


async def test_three_sides_alternating_run_one_side_alone_at_a_time_order_reversed_by_round() -> (
    None
):
    started = await _sides("alternating")
    sides = [s.split("@")[0] for s in started]
    assert sides == (
        ["raw_aiohttp"] * 4 + ["raw_httpx"] * 4 + ["layer"] * 4
        + ["layer"] * 4 + ["raw_httpx"] * 4 + ["raw_aiohttp"] * 4
    )  # fmt: skip


async def test_three_sides_together_waves_start_wave_after_wave() -> None:
    started = await _sides("together_waves", rounds=1)
    assert [s.split("@")[0] for s in started] == (
        ["raw_aiohttp"] * 4 + ["raw_httpx"] * 4 + ["layer"] * 4
    )


async def test_side_rounds_needs_a_side_and_a_known_schedule() -> None:
    with pytest.raises(ValueError, match="at least one side"):
        await side_rounds([], lambda r: [_req("x")], rounds=1, schedule="together")
    with pytest.raises(ValueError, match="unknown schedule 'zigzag'"):
        await side_rounds([_logging_side("a", [])], lambda r: [], rounds=1, schedule="zigzag")


async def test_phase_rounds_run_each_comparison_alone_on_its_own_requests() -> None:
    log: list[tuple[str, str]] = []
    aio, hx, lay = (_logging_side(name, log) for name in ("raw_aiohttp", "raw_httpx", "layer"))
    got = await stream_engine.phase_rounds(
        {"layer": [aio, lay], "own": [hx, lay], "wire": [aio, hx]},
        lambda phase, r: [_req(f"{phase}-r{r}-{i}") for i in range(2)],
        rounds=2,
        schedule="together",
    )
    # One phase at a time (never two phases' reads in flight together), reversed by round
    phases = [tag.split("-")[0] for _, tag in log]
    assert (
        phases
        == ["layer"] * 4 + ["own"] * 4 + ["wire"] * 4 + ["wire"] * 4 + ["own"] * 4 + ["layer"] * 4
    )
    # Within a phase: the pair's reads side by side, the first side alternating by request
    assert log[:4] == [
        ("raw_aiohttp", "layer-r0-0"), ("layer", "layer-r0-0"),
        ("layer", "layer-r0-1"), ("raw_aiohttp", "layer-r0-1"),
    ]  # fmt: skip
    # Per phase one list per side, pair k of both sides on one request, rounds in order
    assert [x.chunks[0] for x in got["own"][0]] == [
        f"raw_httpx:own-r{r}-{i}" for r in range(2) for i in range(2)
    ]
    assert [x.chunks[0] for x in got["own"][1]] == [
        f"layer:own-r{r}-{i}" for r in range(2) for i in range(2)
    ]
    assert [x.chunks[0] for x in got["wire"][1]] == [
        f"raw_httpx:wire-r{r}-{i}" for r in range(2) for i in range(2)
    ]
