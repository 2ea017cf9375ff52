"""The stream-clumps study's arithmetic (studies/stream_clumps.py) on hand-built probes.

Where each text chunk's bytes reached the reader (``Probe.sock``, from the logged
``feed_data`` calls: an SSE event split over two feeds counts at the second, metadata and
empty events are not text chunks), and the per-gap differences split into the part already
in the bytes' arrival and the part added after it (``_analyse``).
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import orjson
import pytest

from studies import stream_clumps
from studies.stream_clumps import FEEDS, Probe, _analyse


def _event(text: str | None) -> bytes:
    delta = {} if text is None else {"content": text}
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": delta}]}) + b"\n\n"


def _probe(side: str, feeds: list[tuple[float, bytes]], recv: list[float]) -> Probe:
    reader = object()  # any hashable key stands for the response's StreamReader
    FEEDS[reader] = feeds
    return Probe(
        side, start=0.0, reader=reader, recv=recv, texts=[f"t{i}" for i in range(len(recv))]
    )


def test_sock_times_come_from_the_feed_that_completes_each_text_event() -> None:
    role = _event("")  # OpenAI's role chunk: empty content, not a text chunk
    a, b, c = _event("Hel"), _event("lo"), _event(" you")
    usage = b'data: {"choices":[],"usage":{"completion_tokens":3}}\n\ndata: [DONE]\n\n'
    probe = _probe(
        "raw",
        [(1.0, role + a[:10]), (2.0, a[10:]), (3.0, b + c[:5]), (4.0, c[5:] + usage)],
        [2.1, 3.1, 4.1],
    )
    try:
        assert probe.sock() == [2.0, 3.0, 4.0]
    finally:
        FEEDS.clear()


def test_analyse_splits_a_late_chunk_into_arrival_and_hand_over() -> None:
    events = [_event(t) for t in ("a", "b", "c")]
    # raw: bytes at 0, 30, 60 ms, each at the caller 1 ms later
    raw = _probe("raw", [(0.030 * i, e) for i, e in enumerate(events)], [0.001, 0.031, 0.061])
    # the twin: chunk 1's bytes 20 ms late (arrival), chunk 2 handed over 10 ms late
    twin = _probe(
        "layer",
        [(0.0, events[0]), (0.050, events[1]), (0.060, events[2])],
        [0.001, 0.051, 0.071],
    )
    twin.pushes = [0.0005, 0.0505, 0.0605]
    try:
        got = _analyse([(raw, twin)])
    finally:
        FEEDS.clear()
    assert got["pairs"] == 1 and got["pairs_skipped"] == 0
    # gaps: raw 30, 30 ms; twin 50, 20 ms -> +20, -10 ms
    assert got["per_gap_diff_recv_ms"]["p99"] == pytest.approx(19.7, abs=0.01)
    assert got["per_gap_diff_recv_ms"]["p1"] == pytest.approx(-9.7, abs=0.01)
    # in the bytes' arrival: +20, -20 ms; after it: 0, +10 ms
    assert got["per_gap_diff_sock_ms"]["p1"] == pytest.approx(-19.6, abs=0.01)
    assert got["per_gap_diff_after_sock_ms"]["p99"] == pytest.approx(9.9, abs=0.01)
    assert got["second_read_sock_to_recv_ms"]["p99"] == pytest.approx(10.8, abs=0.01)
    assert got["second_read_sock_to_push_ms"]["p50"] == pytest.approx(0.5, abs=1e-6)


def test_analyse_skips_pairs_whose_texts_differ() -> None:
    events = [_event("a"), _event("b")]
    one = _probe("raw", [(0.0, events[0]), (0.03, events[1])], [0.001, 0.031])
    other = _probe("layer", [(0.0, events[0])], [0.001])
    try:
        assert _analyse([(one, other)])["pairs_skipped"] == 1
    finally:
        FEEDS.clear()


def test_probes_are_installed_and_removed() -> None:
    before = aiohttp.streams.StreamReader.feed_data
    undo = stream_clumps._install()
    try:
        assert aiohttp.streams.StreamReader.feed_data is not before
    finally:
        undo()
    assert aiohttp.streams.StreamReader.feed_data is before


def test_bad_reads_are_refused() -> None:
    with pytest.raises(SystemExit, match="raw, layer, raw\\^, direct or hop"):
        asyncio.run(stream_clumps._run(argparse.Namespace(reads="raw,remote")))
    with pytest.raises(SystemExit):
        stream_clumps.main(["--reads", "raw,raw"])
    with pytest.raises(SystemExit):  # raw^ waits for a layer read's request
        stream_clumps.main(["--reads", "raw,raw^"])


@pytest.mark.live
@pytest.mark.redis
def test_the_study_times_every_chunk_of_real_reads(capsys: pytest.CaptureFixture[str]) -> None:
    """One short round against the real emulator and a redis-server: every read of every kind
    is timed at each probe point, in order (bytes fed, then parsed, then at the caller)."""
    argv = ["--rounds", "1", "--warmup", "0", "--streams", "3", "--scale", "0.02"]
    argv += ["--reads", "raw,raw^,layer,direct,hop", "--max-connections", "20"]
    assert stream_clumps.main(argv) == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["text_chunks"] > 0 and out["loop"]["ticks"] > 0
    for name, c in out["comparisons"].items():
        assert c["pairs"] == 3 and c["pairs_skipped"] == 0, name
        assert c["first_read_sock_to_recv_ms"]["p1"] >= 0, name  # fed before it was read
        assert c["second_read_sock_to_recv_ms"]["p1"] >= 0, name
    layer = out["comparisons"]["layer vs raw"]
    assert layer["second_read_sock_to_push_ms"]["p1"] >= 0
    assert layer["second_read_push_to_recv_ms"]["p1"] >= 0
    assert out["comparisons"]["layer vs raw^"]["start_offset_ms"]["p50"] < 0  # raw^ waits for it
    # with Redis: the lookup and the claim (one script on one server: decision 0880),
    # the producer, the send
    stages = layer["second_read_time_to_send_ms"]
    assert set(stages) == {"start_to_opened", "opened_to_producer", "producer_to_sent"}
    assert all(v["p1"] >= 0 for v in stages.values())
    assert out["comparisons"]["direct vs raw"]["second_read_time_to_send_ms"] is None
    hop = out["comparisons"]["hop vs raw"]  # the layer, its read never lent
    assert hop["second_read_push_to_recv_ms"]["p1"] >= 0 and hop["pairs"] == 3
    assert out["transport_pauses"] == 0  # a few small SSE events never fill a reader
    assert set(out["cpu_s"]) == {"client", "emulator", "redis"}
    assert FEEDS  # the probes saw the bytes (the next run starts afresh)
    FEEDS.clear()
