"""The stream metric definitions (bench/harness/streams.py) on hand-built timelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.harness.streams import SLO, Timeline, percentiles, summarize
from bench.results import Benchmark


def _openai_like() -> Timeline:
    # sent at 10.0; role chunk (empty) at 10.1; text at 10.3, 10.35, 10.45, 10.5;
    # then the usage-only chunk (empty) at 10.9 must not move E2E.
    return Timeline(
        10.0,
        ((10.1, ""), (10.3, "Lo"), (10.35, "-fi"), (10.45, " at"), (10.5, " 92"), (10.9, "")),
    )


def test_ttft_drops_empty_chunks_and_end_ignores_trailing_metadata() -> None:
    t = _openai_like()
    assert t.ttft_s == pytest.approx(0.3)  # not 0.1: the role chunk carries no text
    assert t.ttst_s == pytest.approx(0.05)
    assert t.e2e_s == pytest.approx(0.5)  # not 0.9: the usage chunk is empty
    assert t.itl_s == pytest.approx((0.05, 0.1, 0.05))
    assert t.tokens == 4
    assert t.tpot_s == pytest.approx((0.5 - 0.3) / 3)
    assert t.tokens_per_s == pytest.approx(4 / 0.5)


def test_tpot_uses_the_providers_token_count_when_given() -> None:
    t = Timeline(0.0, ((0.2, "a b c"), (0.6, "d e f")), output_tokens=9)
    assert t.tpot_s == pytest.approx((0.6 - 0.2) / 8)
    assert t.tokens_per_s == pytest.approx(9 / 0.6)


def test_one_token_and_no_text() -> None:
    one = Timeline(0.0, ((0.0, ""), (0.4, "hi")))
    assert (one.ttft_s, one.ttst_s, one.itl_s, one.tpot_s) == (0.4, None, (), None)
    empty = Timeline(0.0, ((0.1, ""),))
    assert (empty.ttft_s, empty.e2e_s, empty.tpot_s, empty.tokens_per_s) == (None,) * 4


@pytest.mark.parametrize(
    "chunks", [((1.0, "a"), (0.5, "b")), ((-1.0, "a"),), ((float("nan"), "a"),)]
)
def test_bad_timelines_are_refused(chunks: tuple[tuple[float, str], ...]) -> None:
    with pytest.raises(ValueError, match="non-decreasing"):
        Timeline(0.0, chunks)


def test_itl_is_pooled_and_tpot_is_per_request() -> None:
    # Request A: 5 tokens 10 ms apart; request B: 2 tokens 100 ms apart.
    a = Timeline(0.0, tuple((0.1 + 0.01 * i, "x") for i in range(5)))
    b = Timeline(0.0, ((0.2, "y"), (0.3, "y")))
    stats = summarize([a, b], duration_s=2.0)
    # ITL pooled: four 10 ms gaps and one 100 ms gap -> each token weighs the same.
    assert sorted(stats.samples["itl"]) == pytest.approx([10, 10, 10, 10, 100])
    assert stats.itl_ms["p50"] == pytest.approx(10.0)
    assert stats.itl_ms["mean"] == pytest.approx(28.0)
    # TPOT per request: 10 ms and 100 ms -> each request weighs the same (mean 55).
    assert sorted(stats.samples["tpot"]) == pytest.approx([10, 100])
    assert stats.tpot_ms["mean"] == pytest.approx(55.0)
    assert stats.ttft_ms["p50"] == pytest.approx(150.0)
    assert stats.ttst_ms["n"] == 2
    assert stats.output_tokens == 7
    assert stats.output_tokens_per_s == pytest.approx(3.5)
    assert stats.good is None and stats.goodput_rps is None


def test_percentiles_are_numpys_linear_ones() -> None:
    values = [0.001 * v for v in (3, 1, 4, 1, 5, 9, 2, 6)]
    got = percentiles(values)
    expected = np.percentile([3, 1, 4, 1, 5, 9, 2, 6], [1, 50, 90, 99])
    assert [got["p1"], got["p50"], got["p90"], got["p99"]] == pytest.approx(list(expected))
    assert (got["n"], got["min"], got["max"]) == (8, pytest.approx(1.0), pytest.approx(9.0))
    assert percentiles([]) == {"n": 0}


def test_goodput_counts_requests_meeting_every_slo() -> None:
    fast = Timeline(0.0, ((0.1, "a"), (0.11, "b"), (0.12, "c")))  # ttft 100, tpot 10
    slow_first = Timeline(0.0, ((2.0, "a"), (2.01, "b")))  # ttft 2000
    slow_tokens = Timeline(0.0, ((0.1, "a"), (0.3, "b")))  # tpot 200
    no_text = Timeline(0.0, ((0.1, ""),))
    slo = SLO.parse("ttft:1000 tpot:50")
    stats = summarize([fast, slow_first, slow_tokens, no_text], duration_s=4.0, slo=slo)
    assert stats.good == 1
    assert stats.goodput_rps == pytest.approx(0.25)
    assert stats.requests == 4 and stats.completed == 3
    assert SLO(e2e_ms=500).met_by(slow_tokens) and not SLO(e2e_ms=250).met_by(slow_tokens)


@pytest.mark.parametrize("spec", ["ttft", "ttft:x", "itl:5", "ttft:-1", "tpot:inf"])
def test_bad_slo_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="SLO"):
        SLO.parse(spec)


def test_summary_dict_carries_percentiles_and_raw_samples() -> None:
    d = summarize([_openai_like()]).as_dict()
    assert d["duration_s"] == pytest.approx(0.9)
    assert d["ttft_ms"]["p50"] == pytest.approx(300.0)
    assert d["samples_ms"]["itl"] == pytest.approx([50.0, 100.0, 50.0])
    assert "samples_ms" not in summarize([_openai_like()]).as_dict(raw=False)


def _benchmark(d: dict[str, Any]) -> Benchmark:
    """A stream benchmark as the results reader gives it (name and extra_info are what count)."""
    return Benchmark(
        path=Path("stream.json"),
        suite="stream",
        name=d["name"],
        fullname=d["name"],
        group="",
        params={},
        param="",
        samples=(1.0,),
        extra_info=d["extra_info"],
        timer="",
    )


def test_headline_lines_name_ttft_itl_and_the_exact_figures() -> None:
    from bench.harness.streams import headline_lines

    replay = {
        "name": "test_stream_cache[mocked-httpx-openai-c10-replay]",
        "extra_info": {
            "ttft_p50_ms": 1.43,
            "ttft_p99_ms": 6.06,
            "itl_p99_ms": 0.0025,
            "ttft_speedup": 395.1,
            "replay_vs_complete_hit": 2.7,
            "chunk_fidelity": 1.0,
            "upstream_calls": 10,
            "distinct_requests": 10,
        },
    }
    burst = {
        "name": "test_stream_single_flight[mocked-httpx-1]",
        "extra_info": {
            "burst": 1,
            "upstream_calls": 1,
            "chunk_fidelity": 1.0,
            "follower_ttft_p50_ms": float("nan"),
            "leader_ttft_ms": 151.0,
        },
    }
    other = {"name": "other", "extra_info": {}}
    lines = headline_lines([_benchmark(d) for d in (replay, burst, other)])
    assert lines == [
        "stream mocked-httpx-openai-c10-replay: TTFT p50 1.43 ms (p99 6.06 ms), 395.1x faster "
        "than upstream, 2.7x a plain cache hit; ITL p99 2.5 µs; chunk fidelity 1.0; upstream "
        "calls 10 for 10 requests",
        "stream single-flight 1: 1 upstream call(s), chunk fidelity 1.0, followers' TTFT p50 - "
        "vs leader 151.00 ms",
    ]
