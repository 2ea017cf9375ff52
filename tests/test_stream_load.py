"""The load suite's open-loop stream mode: SLO option, goodput points, the knee, the headline.

The mode itself runs in bench/suites/test_load.py (``test_load_stream_knee``,
``test_load_stream_faults``; their smoke runs check it end to end against the mock and the
emulator); these are the pieces on hand-built data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.cli import main
from bench.harness.options import DEFAULT_STREAM_SLO, check_stream_slo
from bench.harness.run import _pytest_command
from bench.harness.streams import SLO, Timeline, goodput_line, summarize
from bench.suites import load_engine
from bench.suites.stream_engine import GENERATOR_LAG_MS, GoodputPoint, StreamRead


def test_stream_slo_default_and_bad_specs_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert SLO.parse(DEFAULT_STREAM_SLO) == SLO(ttft_ms=1000.0, tpot_ms=50.0)
    assert check_stream_slo("ttft:500 e2el:4000") == "ttft:500 e2el:4000"
    for bad, reason in (
        ("ttft:soon", "not a number"),
        ("tbt:5", "expected NAME:MS"),
        ("", "empty"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["run", "--stream-slo", bad, "--out", str(tmp_path / "r")])
        assert exc.value.code == 2
        assert "--stream-slo" in (err := capsys.readouterr().err) and reason in err, err
    assert not (tmp_path / "r").exists()


def test_stream_slo_reaches_each_suites_pytest_and_the_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(quick=True, live=False, pytest_args=[], stream_slo="ttft:800")
    assert "--stream-slo=ttft:800" in _pytest_command("load", Path("/tmp/x"), args)
    args.stream_slo = None
    assert not any(a.startswith("--stream-slo") for a in _pytest_command("load", Path("/x"), args))
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--stream-slo" in capsys.readouterr().out


def _read(start: float, ttft: float, gap: float, n: int, lag: float = 0.0) -> StreamRead:
    chunks = tuple((start + ttft + i * gap, f"t{i}") for i in range(n))
    return StreamRead(Timeline(start, chunks), tuple(t for _, t in chunks), None, lag)


def _point(reads: list[StreamRead], errors: list[str]) -> GoodputPoint:
    calls = [load_engine.CallRecord(0.0, 1.0) for _ in reads]
    calls += [load_engine.CallRecord(0.0, 1.0, error=e) for e in errors]
    point = load_engine.Point(calls, 2.0, len(calls), 0.1, {}, {}, 0.0, 10.0)
    slo = SLO(ttft_ms=1000.0, tpot_ms=50.0)
    stats = summarize([r.timeline for r in reads], duration_s=2.0, slo=slo)
    return GoodputPoint(10.0, 2.0, point, reads, stats, slo)


def test_a_goodput_point_counts_interruptions_apart_and_judges_the_share() -> None:
    good = [_read(0.0, 0.4, 0.02, 10) for _ in range(18)]  # TTFT 400 ms, TPOT 20 ms
    slow = _read(0.0, 1.2, 0.02, 10)  # TTFT over the 1 s SLO
    p = _point([*good, slow], ["StreamInterrupted"])
    assert p.requests == 20 and p.stats.good == 18
    assert p.good_share == pytest.approx(0.9) and p.stats.goodput_rps == pytest.approx(9.0)
    assert p.stream_interrupted == 1 and p.other_errors == 0
    assert not p.acceptable  # 90 % < 95 %
    p = _point([*good, *good[:1]], [])
    assert p.good_share == 1.0 and p.acceptable
    p = _point(good, ["ReadTimeout"])  # 18 of 19 good = 94.7 %, and an error that is not allowed
    assert p.other_errors == 1 and not p.acceptable
    assert _point([*good, *good], ["RateLimitError"]).error_types == {"RateLimitError": 1}
    assert not _point([*good, *good], ["RateLimitError"]).acceptable  # 97 % good, but an error


def test_late_arrivals_are_the_generators_limit_not_a_knee() -> None:
    lag = (GENERATOR_LAG_MS + 50) / 1e3
    p = _point([_read(0.0, 0.4, 0.02, 10, lag=lag) for _ in range(20)], [])
    assert p.good_share == 1.0 and p.generator_limited and not p.acceptable
    assert p.figures()["launch_lag_p50_ms"] == pytest.approx(GENERATOR_LAG_MS + 50)
    # a moment the loop was blocked delays a few arrivals: not the generator's limit
    few = [_read(0.0, 0.4, 0.02, 10, lag=lag if i < 3 else 0.001) for i in range(20)]
    p = _point(few, [])
    assert not p.generator_limited and p.acceptable
    assert p.figures()["launch_lag_p99_ms"] == pytest.approx(GENERATOR_LAG_MS + 50)


async def test_the_knee_search_takes_the_stream_criterion() -> None:
    def at(rate: float) -> GoodputPoint:
        ttft = 0.4 if rate <= 30 else 1.5  # breaks above 30/s
        return _point([_read(0.0, ttft, 0.02, 10) for _ in range(20)], [])

    async def measure(rate: float) -> GoodputPoint:
        return at(rate)

    knee = await load_engine.find_knee(
        measure,
        start_per_s=10,
        bound_ms=1000,
        max_doublings=3,
        bisections=2,
        accept=lambda p: p.acceptable,
    )
    assert [r for r, _ in knee.points] == [10, 20, 30, 35, 40]
    assert knee.knee_per_s == 30


def test_the_headline_says_no_knee_and_counts_interruptions() -> None:
    x = {
        "mode": "mocked",
        "slo": "ttft:1000 tpot:50",
        "stream_knee_per_s": 40.0,
        "generator_limit_per_s": None,
        "curve_offered_per_s": [10.0, 20.0, 40.0],
        "curve_good_share": [1.0, 0.98, 0.96],
        "stream_interrupted": 0,
        "other_errors": 0,
    }
    line = goodput_line(x)
    assert line is not None and "no knee up to 40 streams/s" in line and "40/s 96%" in line
    faults = {
        "mode": "live",
        "slo": "ttft:1000 tpot:50",
        "offered_per_s": 20.0,
        "requests": 51,
        "good_share": 0.88,
        "stream_interrupted": 6,
        "other_errors": 0,
        "faults": [{"name": "stream_cut_after_2_chunks", "spec": "cut:2", "caller_errors": 1}],
    }
    line = goodput_line(faults)
    assert line is not None and "6 StreamInterrupted, 0 other errors of 51" in line
    assert goodput_line({"knee_per_s": 10.0}) is None  # the load suite's own knee: not a stream


class _Config:
    """What ``BenchOptions.from_config`` reads of a pytest config (in-process stand-in)."""

    def __init__(self, slo: str | None = None, ini: str | None = None) -> None:
        self.options = {"stream_slo": slo, "quick": False, "live": False}
        self.ini = ini
        self.option = argparse.Namespace()
        self.invocation_params = argparse.Namespace(args=())

    def getoption(self, name: str, default: object = None) -> object:
        return self.options.get(name, default)

    def getini(self, name: str) -> object:
        assert name == "stream_slo"
        return self.ini


@pytest.mark.parametrize(
    ("slo", "ini", "expected", "source"),
    [
        (None, None, DEFAULT_STREAM_SLO, "default"),
        (None, "tpot:40", "tpot:40", "ini"),
        ("ttft:500", "tpot:40", "ttft:500", "command line"),
    ],
)
def test_the_slo_comes_from_the_command_line_the_ini_or_the_default(
    slo: str | None, ini: str | None, expected: str, source: str
) -> None:
    from bench.harness.options import BenchOptions

    opts = BenchOptions.from_config(_Config(slo, ini))  # type: ignore[arg-type]
    assert opts.stream_slo == expected and opts.sources["stream_slo"] == source
    assert f"slo='{expected}' ({source})" in "\n".join(opts.header(None))


def test_a_bad_ini_slo_is_a_usage_error() -> None:
    from bench.harness.options import BenchOptions

    with pytest.raises(pytest.UsageError, match="ini option stream_slo: bad SLO 'tpot:x'"):
        BenchOptions.from_config(_Config(None, "tpot:x"))  # type: ignore[arg-type]
