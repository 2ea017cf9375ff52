"""The harness's options, defined once for the pytest plugin (bench/suites/conftest.py) and the CLI.

Each effective setting remembers where it came from ("default", "--quick",
"command line"), and the pytest header prints them, so a results file can be
traced back to how it was produced.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # pytest is imported by the plugin, not by the CLI (`--help` stays fast)
    import pytest

__all__ = [
    "DEFAULT_STREAM_SLO",
    "QUICK_TIMING",
    "SMOKE_LATENCY_SCALE",
    "BenchOptions",
    "add_cli_options",
    "add_pytest_options",
    "benchmarks_disabled",
    "redact_url",
]

QUICK_TIMING: Final[dict[str, float | int]] = {
    "benchmark_max_time": 0.1,
    "benchmark_min_rounds": 5,
}
"""pytest-benchmark settings ``--quick`` applies unless given on the command line."""

SMOKE_LATENCY_SCALE: Final = 0.1
"""The slowest pacing of a simulated world in a smoke run (benchmarks disabled): a tenth of
real time (:meth:`BenchOptions.latency_scale`). A smoke run checks the machinery, not the
figures; a timed run keeps each benchmark's own scale (decision 0940)."""

DEFAULT_STREAM_SLO: Final = "ttft:1000 tpot:50"
"""The stream SLOs of the load suite's open-loop stream mode (vLLM ``--goodput`` syntax, ms):
TTFT p99 <= 1 s and TPOT <= 50 ms per request, a chat user's patience at real-world pacing."""

_STREAM_SLO_HELP: Final = (
    "SLOs of the load suite's open-loop streams, vLLM --goodput syntax in ms: "
    "'ttft:MS tpot:MS e2el:MS' (any of them); a request is good when it meets every one; "
    "goodput = good requests/s, the knee = the highest offered rate with >= 95 %% good "
    f"(default: '{DEFAULT_STREAM_SLO}'; pytest ini: stream_slo)"
)


def check_stream_slo(spec: str) -> str:
    """``spec`` when it parses as SLOs (:meth:`bench.harness.streams.SLO.parse`), else
    ``argparse.ArgumentTypeError`` with the reason (an argparse ``type=``)."""
    from bench.harness.streams import SLO  # numpy: not for every `--help`

    try:
        SLO.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not spec.split():
        raise argparse.ArgumentTypeError("empty SLO: give at least one of ttft:MS tpot:MS e2el:MS")
    return spec


_FLAGS: Final = (
    (
        "--quick",
        "smaller parameter grids and shorter timings (CI; whole mocked run under 2 minutes)",
    ),
    (
        "--live",
        "benchmark real services too: redis-server, Redis Cluster and the emulator server "
        "(started by fixtures, or the ones named by REDIS_URL / provider base-URL variables)",
    ),
)


def add_pytest_options(parser: pytest.Parser) -> None:
    """Register ``--quick`` and ``--live`` with pytest."""
    group = parser.getgroup("samplemind-bench", "SampleMind benchmark harness")
    for flag, help_text in _FLAGS:
        group.addoption(flag, action="store_true", default=False, help=help_text)
    group.addoption(
        "--stream-slo", default=None, type=check_stream_slo, metavar="SPEC", help=_STREAM_SLO_HELP
    )
    parser.addini("stream_slo", _STREAM_SLO_HELP.replace("%%", "%"), default=None)


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """Register the same ``--quick`` and ``--live`` with an argparse (sub)parser."""
    for flag, help_text in _FLAGS:
        parser.add_argument(flag, action="store_true", default=False, help=help_text)
    parser.add_argument(
        "--stream-slo", default=None, type=check_stream_slo, metavar="SPEC", help=_STREAM_SLO_HELP
    )


def benchmarks_disabled(config: pytest.Config) -> bool:
    """True when benchmark bodies run once as smoke tests: ``--benchmark-disable`` or xdist."""
    if hasattr(config, "workerinput"):  # an xdist worker
        return True
    if config.getoption("dist", "no") not in ("no", None):
        return True
    disabled = bool(config.getoption("benchmark_disable", False))
    return disabled and not config.getoption("benchmark_enable", False)


def redact_url(url: str | None) -> str | None:
    """A URL without its password (``redis://:secret@h:1`` → ``redis://:***@h:1``).

    >>> redact_url("redis://user:pw@127.0.0.1:6379/0")
    'redis://user:***@127.0.0.1:6379/0'
    >>> redact_url("redis://127.0.0.1:6379")
    'redis://127.0.0.1:6379'
    """
    if not url or "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}"


def _has_ini(config: pytest.Config, name: str) -> bool:
    try:
        config.getini(name)
    except ValueError:  # not registered (the plugin was not loaded)
        return False
    return True


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """The effective harness settings of one pytest session."""

    quick: bool
    live: bool
    disabled: bool
    timing: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    stream_slo: str = DEFAULT_STREAM_SLO
    """The open-loop streams' SLOs (``--stream-slo``, ini ``stream_slo``, or the default)."""

    @property
    def small_grid(self) -> bool:
        """Quick runs and smoke runs use the small parameter grids."""
        return self.quick or self.disabled

    @property
    def mode(self) -> str:
        return "live" if self.live else "mocked"

    def latency_scale(self, timed: float) -> float:
        """The world's ``latency_scale`` for a benchmark whose timed runs use ``timed``.

        A timed run (quick or full) gets ``timed`` itself, always. A smoke run gets
        ``min(timed, SMOKE_LATENCY_SCALE)``: a benchmark paced at real-world speed (1.0) runs
        its body at a tenth of it, every assertion and recorded figure included, so that the
        test suite does not sleep through real-world TTFTs and token gaps whose values no
        smoke assertion reads (decision 0940). Faster worlds (a stress cell, a burst at 0.1)
        keep their scale.
        """
        return min(timed, SMOKE_LATENCY_SCALE) if self.disabled else timed

    @classmethod
    def from_config(cls, config: pytest.Config) -> BenchOptions:
        """Read (and, for ``--quick``, adjust) the options; call before pytest-benchmark configures."""
        quick = bool(config.getoption("quick", False))
        live = bool(config.getoption("live", False))
        args = [str(a) for a in config.invocation_params.args]
        timing: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for dest in (
            "benchmark_min_time",
            "benchmark_max_time",
            "benchmark_min_rounds",
            "benchmark_warmup",
        ):
            flag = "--" + dest.replace("_", "-")
            given = any(a == flag or a.startswith(flag + "=") for a in args)
            value = config.getoption(dest, None)
            if given:
                sources[dest] = "command line"
            elif quick and dest in QUICK_TIMING:
                value = QUICK_TIMING[dest]
                setattr(config.option, dest, value)
                sources[dest] = "--quick"
            else:
                sources[dest] = "default"
            timing[dest] = value
        slo = config.getoption("stream_slo", None)
        if slo is not None:
            sources["stream_slo"] = "command line"
        else:
            ini = config.getini("stream_slo") if _has_ini(config, "stream_slo") else None
            if ini:
                try:
                    slo = check_stream_slo(str(ini))
                except argparse.ArgumentTypeError as exc:
                    import pytest

                    raise pytest.UsageError(f"ini option stream_slo: {exc}") from None
                sources["stream_slo"] = "ini"
            else:
                slo, sources["stream_slo"] = DEFAULT_STREAM_SLO, "default"
        return cls(
            quick=quick,
            live=live,
            disabled=benchmarks_disabled(config),
            timing=timing,
            sources=sources,
            stream_slo=str(slo),
        )

    def header(self, redis_url: str | None) -> list[str]:
        """Lines for ``pytest_report_header``."""
        run = (
            f"smoke (each body once, worlds at <= {SMOKE_LATENCY_SCALE:g}x real time)"
            if self.disabled
            else "timed"
        )
        lines = [
            f"samplemind-bench: mode={self.mode} quick={self.quick} run={run} "
            f"grid={'small' if self.small_grid else 'full'}",
            "samplemind-bench timing: "
            + " ".join(
                f"{k.removeprefix('benchmark_')}={v} ({self.sources[k]})"
                for k, v in self.timing.items()
            ),
            f"samplemind-bench streams: slo='{self.stream_slo}' ({self.sources.get('stream_slo', 'default')})",
            f"samplemind-bench services: REDIS_URL={redact_url(redis_url) or '(unset: fixtures start redis-server)'}",
        ]
        return lines
