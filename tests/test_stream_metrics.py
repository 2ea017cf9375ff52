"""The stream metric definitions (bench/harness/streams.py) on hand-built timelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.harness.streams import SLO, Timeline, paired_cost, percentiles, summarize
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


# --------------------------------------------------------------------------- paired cost


def _read(start: float, ttft: float, gaps: list[float]) -> Timeline:
    """A stream sent at ``start``: the role chunk at once, text at ``ttft``, then ``gaps``."""
    at = start + ttft
    chunks = [(start, ""), (at, "t0")]
    for k, gap in enumerate(gaps, 1):
        at += gap
        chunks.append((at, f"t{k}"))
    return Timeline(start, tuple(chunks))


def test_paired_cost_takes_ratios_and_gap_differences_pair_by_pair() -> None:
    # Three pairs with the same upstream draw per pair (TTFT 100, 200, 400 ms; gaps 10 ms);
    # the second read adds 10, 20, 80 ms to TTFT and one gap of +3 ms (a late chunk).
    raw = [_read(0.0, 0.1, [0.01] * 4), _read(1.0, 0.2, [0.01] * 4), _read(2.0, 0.4, [0.01] * 4)]
    layer = [
        _read(10.0, 0.11, [0.01] * 4),
        _read(11.0, 0.22, [0.01, 0.013, 0.007, 0.01]),
        _read(12.0, 0.48, [0.01] * 4),
    ]
    cost = paired_cost(raw, layer)
    assert cost.pairs == 3 and cost.unmatched == 0 and cost.gaps == 12
    assert cost.ttft_ratio_p50 == pytest.approx(1.1)  # ratios 1.1, 1.1, 1.2: the median
    assert cost.ttft_ratio_p99 == pytest.approx(np.percentile([1.1, 1.1, 1.2], 99))
    assert cost.added_ttft_p50_ms == pytest.approx(20.0)
    assert cost.added_ttft_p99_ms == pytest.approx(np.percentile([10.0, 20.0, 80.0], 99))
    diffs = [0.0] * 5 + [3.0, -3.0] + [0.0] * 5  # gap k of layer minus gap k of raw, in ms
    assert cost.added_itl_p50_ms == pytest.approx(0.0, abs=1e-9)
    assert cost.added_itl_p99_ms == pytest.approx(np.percentile(diffs, 99))
    assert cost.added_itl_p1_ms == pytest.approx(np.percentile(diffs, 1))
    # The unpaired figures of the same reads: the ratio of the two TTFT medians.
    s_raw, s_layer = summarize(raw), summarize(layer)
    assert s_layer.ttft_ms["p50"] / s_raw.ttft_ms["p50"] == pytest.approx(220 / 200)
    flat = cost.as_dict()
    assert flat["paired_ttft_ratio_p50"] == cost.ttft_ratio_p50 and flat["paired_gaps"] == 12


def test_paired_cost_pairs_by_position_not_by_sorted_values() -> None:
    # Unpaired, the two sides have the same TTFT distribution (ratio of medians 1.0); paired,
    # each layer read took twice its own raw read's TTFT or half of it.
    raw = [_read(0.0, 0.1, [0.01]), _read(0.0, 0.2, [0.01]), _read(0.0, 0.4, [0.01])]
    layer = [_read(0.0, 0.2, [0.01]), _read(0.0, 0.4, [0.01]), _read(0.0, 0.1, [0.01])]
    assert summarize(layer).ttft_ms["p50"] == summarize(raw).ttft_ms["p50"]
    cost = paired_cost(raw, layer)
    assert cost.ttft_ratio_p50 == pytest.approx(2.0)  # ratios 2, 2, 0.25
    assert cost.added_ttft_p50_ms == pytest.approx(100.0)  # +100, +200, -300 ms


def test_paired_cost_leaves_out_reads_without_text_and_gaps_of_unequal_reads() -> None:
    empty = Timeline(0.0, ((0.1, ""),))
    raw = [_read(0.0, 0.1, [0.01, 0.01]), _read(0.0, 0.1, [0.01, 0.01]), empty]
    layer = [_read(0.0, 0.1, [0.01, 0.02]), _read(0.0, 0.1, [0.01]), _read(0.0, 0.1, [0.01])]
    cost = paired_cost(raw, layer)
    assert cost.pairs == 2 and cost.unmatched == 1 and cost.gaps == 2
    assert cost.added_itl_p50_ms == pytest.approx(5.0)  # diffs 0 and +10 ms
    nothing = paired_cost([], [])
    assert (
        nothing.pairs == 0
        and np.isnan(nothing.ttft_ratio_p50)
        and np.isnan(nothing.added_itl_p99_ms)
    )
    with pytest.raises(ValueError, match="as many first as second"):
        paired_cost(raw, layer[:2])


def test_headline_line_of_the_layer_cost_names_the_cell_and_the_paired_figures() -> None:
    from bench.harness.streams import headline_lines

    paced = {
        "name": "test_stream_layer_cost[live-aiohttp-paced-together-layer]",
        "extra_info": {
            "ttft_ratio_p50": 1.043,
            "added_itl_p50_ms": 0.1,
            "added_itl_p99_ms": 1.25,
            "paired_ttft_ratio_p50": 1.036,
            "paired_added_itl_p99_ms": 19.5,
            "concurrent_streams": 100,
            "cell": "paced",
            "goal_cell": True,
            "latency_scale": 1.0,
        },
    }
    old = {  # a results file from before the cells: no paired figures, no cell
        "name": "test_stream_layer_cost[live-httpx-together-layer]",
        "extra_info": {
            "ttft_ratio_p50": 1.86,
            "added_itl_p99_ms": -10.1,
            "concurrent_streams": 100,
        },
    }
    assert headline_lines([_benchmark(d) for d in (paced, old)]) == [
        "stream layer cost live-aiohttp-paced-together-layer: TTFT p50 1.04x the raw aiohttp "
        "read, added ITL p50 0.10 ms, p99 1.25 ms at 100 streams; paired reads: TTFT ratio p50 "
        "1.04x, added ITL p99 19.50 ms (the goal cell, latency scale 1.0)",
        "stream layer cost live-httpx-together-layer: TTFT p50 1.86x the raw aiohttp read, "
        "added ITL p50 -, p99 -10.10 ms at 100 streams",
    ]


def test_cost_figures_split_the_httpx_cells_ttft_into_the_layers_and_the_transports() -> None:
    # Three reads of each of three requests with the same draw (TTFT 100, 200, 400 ms; gaps
    # 10 ms): raw aiohttp; raw httpx adds 50 % to TTFT; the layer adds 10 % over raw httpx and
    # makes its second gap 2 ms late (the third 2 ms early: the next chunk on time).
    from bench.harness.streams import cost_figures

    ttfts = (0.1, 0.2, 0.4)
    aiohttp_side = [_read(10.0 * k, t, [0.01] * 3) for k, t in enumerate(ttfts)]
    httpx_side = [_read(10.0 * k, 1.5 * t, [0.01] * 3) for k, t in enumerate(ttfts)]
    layer = [_read(10.0 * k, 1.65 * t, [0.01, 0.012, 0.008]) for k, t in enumerate(ttfts)]
    own = cost_figures(httpx_side, layer, "vs_raw_httpx_")
    wire = cost_figures(aiohttp_side, httpx_side, "raw_httpx_vs_raw_aiohttp_")
    whole = cost_figures(aiohttp_side, layer)
    assert own["vs_raw_httpx_ttft_ratio_p50"] == pytest.approx(1.1)
    assert own["vs_raw_httpx_paired_ttft_ratio_p50"] == pytest.approx(1.1)
    assert own["vs_raw_httpx_paired_added_ttft_p50_ms"] == pytest.approx(0.15 * 200)
    assert own["vs_raw_httpx_added_itl_p99_ms"] == pytest.approx(
        np.percentile([10, 12, 8] * 3, 99) - 10.0
    )
    assert own["vs_raw_httpx_paired_added_itl_p99_ms"] == pytest.approx(
        np.percentile([0, 2, -2] * 3, 99)
    )
    assert own["vs_raw_httpx_paired_pairs"] == 3 and own["vs_raw_httpx_paired_gaps"] == 9
    assert wire["raw_httpx_vs_raw_aiohttp_ttft_ratio_p50"] == pytest.approx(1.5)
    assert wire["raw_httpx_vs_raw_aiohttp_added_itl_p99_ms"] == pytest.approx(0.0, abs=1e-9)
    # Unprefixed: the figures the layer-cost entry always had (layer / raw aiohttp) ...
    assert whole["ttft_ratio_p50"] == pytest.approx(1.65)
    assert set(whole) == {
        "ttft_ratio_p50", "ttft_ratio_p99", "added_itl_p50_ms", "added_itl_p99_ms",
        *(f"paired_{name}" for name in paired_cost([], []).__slots__),
    }  # fmt: skip
    # ... and the ratios of percentiles multiply: layer/aiohttp = layer/httpx x httpx/aiohttp.
    for q in ("p50", "p99"):
        assert whole[f"ttft_ratio_{q}"] == pytest.approx(
            own[f"vs_raw_httpx_ttft_ratio_{q}"] * wire[f"raw_httpx_vs_raw_aiohttp_ttft_ratio_{q}"]
        )


def test_cost_figures_of_a_side_without_text_are_nan_not_an_error() -> None:
    from bench.harness.streams import cost_figures

    silent = [Timeline(0.0, ((0.1, ""),))]
    figures = cost_figures(silent, [_read(0.0, 0.1, [0.01])], "x_")
    assert np.isnan(figures["x_ttft_ratio_p50"]) and np.isnan(figures["x_added_itl_p99_ms"])
    assert figures["x_paired_pairs"] == 0
    with pytest.raises(ValueError, match="as many first as second"):
        cost_figures(silent, [])


def test_headline_line_of_an_httpx_cell_names_the_layers_own_cost_and_the_transports() -> None:
    from bench.harness.streams import headline_lines

    cell = {
        "name": "test_stream_layer_cost[live-httpx-paced-alternating-layer]",
        "extra_info": {
            "ttft_ratio_p50": 1.2,
            "added_itl_p50_ms": 0.1,
            "added_itl_p99_ms": -2.5,
            "paired_ttft_ratio_p50": 1.24,
            "paired_added_itl_p99_ms": 60.0,
            "vs_raw_httpx_ttft_ratio_p50": 1.034,
            "vs_raw_httpx_paired_ttft_ratio_p50": 1.041,
            "vs_raw_httpx_added_itl_p99_ms": 0.5,
            "raw_httpx_vs_raw_aiohttp_ttft_ratio_p50": 1.16,
            "raw_httpx_vs_raw_aiohttp_paired_ttft_ratio_p50": 1.19,
            "concurrent_streams": 100,
            "cell": "paced",
            "goal_cell": True,
            "latency_scale": 1.0,
        },
    }
    assert headline_lines([_benchmark(cell)]) == [
        "stream layer cost live-httpx-paced-alternating-layer: TTFT p50 1.20x the raw aiohttp "
        "read, added ITL p50 0.10 ms, p99 -2.50 ms at 100 streams; paired reads: TTFT ratio p50 "
        "1.24x, added ITL p99 60.00 ms; on httpx: the layer's own TTFT p50 1.03x a raw httpx "
        "read (paired 1.04x), added ITL p99 0.50 ms; raw httpx TTFT p50 1.16x raw aiohttp's "
        "(paired 1.19x) (the goal cell, latency scale 1.0)"
    ]
