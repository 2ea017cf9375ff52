"""pytest glue of the benchmark suites: options, header, live/smoke selection, ``abenchmark``.

* ``--quick``: small parameter grids and short timings; ``--live``: real
  services too (see bench/harness/options.py). Effective settings are printed in the
  pytest header.
* Benchmarks never run under xdist or ``--benchmark-disable``: every body then
  runs exactly once as a smoke test, on the small grid, live parameters
  included (they carry the ``live``/``redis``/``cluster`` markers, so CI
  exercises them).
* A timed run without ``--live`` skips the live parameters with a reason.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.harness.fixture import AsyncBenchmark
from bench.harness.local_server import named_providers
from bench.harness.options import BenchOptions, add_pytest_options, redact_url
from bench.instructions import plugin as instructions
from samplemind_core import Settings

BENCH_OPTIONS_KEY = pytest.StashKey[BenchOptions]()
"""Where the session's :class:`BenchOptions` live (``config.stash``)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)
    instructions.add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    # Runs before pytest-benchmark's (trylast) pytest_configure reads its options,
    # so --quick's shorter timings reach pytest-benchmark's session.
    config.stash[BENCH_OPTIONS_KEY] = BenchOptions.from_config(config)
    instructions.configure(config)  # --instructions=DIR: count, do not time (under callgrind)


def bench_options(config: pytest.Config) -> BenchOptions:
    """The session's harness options."""
    return config.stash[BENCH_OPTIONS_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    env = Settings.from_env()
    return [*bench_options(config).header(env.redis_url), local_server_line(env)]


def local_server_line(env: Settings) -> str:
    """The header line saying which local model server ``test_stream_local`` will ask."""
    named = [
        f"{name}={redact_url(env.provider(name).base_url)} (model: "
        f"{env.provider(name).default_model or 'asked of the server'})"
        for name in named_providers(env)
    ]
    return "samplemind-bench local model server: " + (
        ", ".join(named) or "none named (Ollama's default address is tried)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    opts = bench_options(config)
    if opts.live or opts.disabled:
        return
    skip = pytest.mark.skip(
        reason="live benchmark (real redis-server/cluster/emulator): run with --live"
    )
    for item in items:
        if item.get_closest_marker("live") and "bench" in item.nodeid.split("/", 1)[0]:
            item.add_marker(skip)


@pytest.fixture
def bench_opts(request: pytest.FixtureRequest) -> BenchOptions:
    """The harness options (quick, live, disabled, small_grid)."""
    return bench_options(request.config)


@pytest.fixture
def abenchmark(benchmark: BenchmarkFixture, request: pytest.FixtureRequest) -> AsyncBenchmark:
    """Async benchmarks: ``await abenchmark(coro_fn, setup=..., concurrency=N)``."""
    return AsyncBenchmark(benchmark, disabled=bench_options(request.config).disabled)
