"""pytest side of ``--instructions``: deselect what is not counted, count what is.

Registered by ``bench/conftest.py`` when pytest gets ``--instructions=DIR`` (which
``samplemind-bench run --instructions`` passes to a suite process it starts under
callgrind). Then:

* only the benchmarks named by :data:`bench.instructions._select.RULES` run;
  the others are deselected (their wall time comes from the ordinary run);
* in each counted benchmark, ``benchmark(fn, ...)`` (pytest-benchmark) and
  ``await abenchmark(fn, ...)`` count ``fn`` with :class:`~bench.instructions._counter.Counter`
  instead of timing it, and return its result, so the test's assertions still run;
* every count is written to ``DIR/counts.json`` (after each benchmark, so a crash
  keeps the ones before it), keyed by the benchmark's ``fullname``, which is how
  pytest-benchmark names the same benchmark in the wall-time results file.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import pytest

from bench.instructions._counter import Count, Counter
from bench.instructions._format import COUNTS_FILE, COUNTS_FORMAT
from bench.instructions._select import Rule, rule_for
from bench.instructions._tools import Shim

__all__ = ["COUNTS_FILE", "COUNTS_FORMAT", "InstructionsPlugin", "add_pytest_options", "configure"]

_RULE: Final = pytest.StashKey[Rule]()


def add_pytest_options(parser: pytest.Parser) -> None:
    """Register ``--instructions=DIR`` and ``--instructions-shim=PATH`` with pytest."""
    group = parser.getgroup("samplemind-bench")
    group.addoption(
        "--instructions",
        metavar="DIR",
        default=None,
        help="count instructions of the CPU-bound benchmarks into DIR/counts.json; the process "
        "must run under callgrind: use `samplemind-bench run --instructions`",
    )
    group.addoption(
        "--instructions-inject",
        metavar="FRACTIONS",
        default=None,
        help="study only: count each benchmark once per comma-separated FRACTION, with "
        "pure-Python work of FRACTION x its count in --instructions-inject-base added to "
        "every call (0: the empty wrapper); counts are keyed '<fullname>@<FRACTION>'",
    )
    group.addoption(
        "--instructions-inject-base",
        metavar="FILE",
        default=None,
        help="study only: JSON {benchmark fullname: instructions per call} that sizes the work",
    )
    group.addoption(
        "--instructions-keep-dumps",
        action="store_true",
        default=False,
        help="keep each benchmark's callgrind dump in DIR (for callgrind_annotate)",
    )
    group.addoption(
        "--instructions-shim",
        metavar="PATH",
        default=None,
        help="the callgrind client-request library (default: build or reuse the cached one)",
    )


def configure(config: pytest.Config) -> None:
    """Register the plugin when ``--instructions`` was given (call from ``pytest_configure``)."""
    directory = config.getoption("instructions", None)
    if not directory:
        return
    from bench.instructions._tools import ToolMissing, load_shim

    shim_path = config.getoption("instructions_shim", None)
    try:
        shim = load_shim(Path(shim_path) if shim_path else None)
    except (ToolMissing, OSError) as exc:
        raise pytest.UsageError(f"--instructions: {exc}") from None
    if not shim.running_on_valgrind:
        raise pytest.UsageError(
            "--instructions counts only inside valgrind --tool=callgrind: "
            "run `samplemind-bench run --instructions` instead"
        )
    _deterministic()
    plugin = InstructionsPlugin(
        shim, Path(directory), keep_dumps=bool(config.getoption("instructions_keep_dumps"))
    )
    levels = config.getoption("instructions_inject", None)
    if levels is not None:
        base = config.getoption("instructions_inject_base", None)
        try:
            fractions = [float(x) for x in str(levels).split(",")]
        except ValueError:
            fractions = []
        if not base or not fractions or min(fractions) < 0:
            raise pytest.UsageError(
                "--instructions-inject needs FRACTIONS >= 0 and --instructions-inject-base"
            )
        plugin.inject = (fractions, json.loads(Path(base).read_text()))
    config.pluginmanager.register(plugin, "samplemind-instructions")


def _deterministic() -> None:
    """Take the counting process's history off the clock and off the entropy pool.

    A count depends on the state the process is in (the allocator's free lists,
    dict sizes, what was cached) and on the values it handles, so neither may
    depend on the wall clock or on randomness. Hence, in a counting process: every counted benchmark is
    *disabled* for wall time once its body is counted (a test's time-budgeted
    extras, such as the fingerprint suite's ``timeit`` split, then run once, as in a
    smoke run, instead of as often as a time budget allows); ``random`` is seeded;
    ``uuid.uuid4`` (the cache benchmarks' namespaces) draws from a seeded
    generator instead of ``os.urandom``; and the wall clock stands still
    (:func:`_freeze_wall_clock`).
    """
    random.seed(0)
    rng = random.Random(0x5A3D)

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    uuid.uuid4 = uuid4
    _freeze_wall_clock()


FROZEN_WALL_CLOCK: Final = 1_800_000_000.0
"""The counting process's ``time.time()`` (2027-01-15 08:00 UTC): a constant, so no
count depends on the date (a float's repr and parse cost depend on its digits)."""


def _frozen_time() -> float:
    return FROZEN_WALL_CLOCK


def _freeze_wall_clock() -> None:
    """Stop the wall clock in this process: ``time.time`` and the cache's seam return a constant.

    The cache stamps ``created_at`` through :data:`samplemind_core._cache.envelope.wall_clock`
    (JSON writes and parses a float's repr, whose cost depends on its digits, so the
    JSON codec counts moved with the time of day), and fakeredis reads ``time.time()`` on
    every command for its expiry. Monotonic clocks (the cache's TTL clock, asyncio's
    timers) keep running: only their differences matter, and no counted body waits on
    the wall clock.
    """
    from samplemind_core._cache import envelope

    time.time = _frozen_time
    envelope.wall_clock = _frozen_time


_PAD_BYTES: Final = bytes(1 << 22)
_PAD_CALIBRATION: Final = 1 << 20


def _pad(n: int) -> int:
    """Injected work for the detection study: scan ``n`` bytes (linear, a fraction of an
    instruction per byte, so small bodies can get small fractions; the call itself is in
    level 0 too)."""
    return _PAD_BYTES.count(1, 0, min(n, len(_PAD_BYTES)))


def _padded(fn: Callable[..., Any], n: int) -> Callable[..., Any]:
    def padded(*args: Any, **kwargs: Any) -> Any:
        _pad(n)
        return fn(*args, **kwargs)

    return padded


def _apadded(fn: Callable[..., Awaitable[Any]], n: int) -> Callable[..., Awaitable[Any]]:
    async def padded(*args: Any, **kwargs: Any) -> Any:
        _pad(n)
        return await fn(*args, **kwargs)

    return padded


def _suite_of(item: pytest.Item) -> str:
    return Path(str(item.path)).stem.removeprefix("test_")


class InstructionsPlugin:
    """Counts the qualifying benchmarks of one pytest session."""

    def __init__(self, shim: Shim, directory: Path, *, keep_dumps: bool = False) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.counter = Counter(shim, directory, keep_dumps=keep_dumps)
        self.counts: dict[str, dict[str, Any]] = {}
        self.deselected: dict[str, str] = {}
        self.inject: tuple[list[float], dict[str, float]] | None = None
        self._pad_unit: float | None = None

    # -- selection -------------------------------------------------------------------------

    def pytest_report_header(self) -> list[str]:
        return [
            f"samplemind-bench instructions: counting CPU-bound benchmarks under callgrind "
            f"into {self.directory / COUNTS_FILE}"
        ]

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            callspec = getattr(item, "callspec", None)
            params = dict(callspec.params) if callspec is not None else {}
            name = getattr(item, "originalname", item.name)
            rule = rule_for(_suite_of(item), name, params)
            if rule is None:
                dropped.append(item)
                self.deselected[item.nodeid] = "not CPU-bound: wall time only"
            else:
                item.stash[_RULE] = rule
                keep.append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep

    # -- counting --------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        rule = item.stash.get(_RULE, None)
        if rule is None:
            return
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        callspec = getattr(item, "callspec", None)
        params = dict(callspec.params) if callspec is not None else {}
        calls = rule.calls(params)
        if "abenchmark" in funcargs:
            self._install_async(item, funcargs["abenchmark"], calls)
        elif "benchmark" in funcargs:
            self._install_sync(item, funcargs["benchmark"], calls)
        else:
            raise pytest.UsageError(f"{item.nodeid}: counted, but uses no benchmark fixture")

    def _pads(self, item: pytest.Item) -> list[tuple[str, int | None]]:
        """``[(key suffix, iterations of _pad)]``: one plain count, or one per injected level."""
        if self.inject is None:
            return [("", None)]
        levels, bases = self.inject
        if item.nodeid not in bases:
            raise pytest.UsageError(f"--instructions-inject-base has no count for {item.nodeid}")
        if self._pad_unit is None:  # instructions per byte scanned, net of the call
            full, _ = self.counter.count_sync(_pad, (_PAD_CALIBRATION,), {}, 20)
            empty, _ = self.counter.count_sync(_pad, (0,), {}, 20)
            self._pad_unit = (full.per_call - empty.per_call) / _PAD_CALIBRATION
        base = float(bases[item.nodeid])
        return [(f"@{level}", round(level * base / self._pad_unit)) for level in levels]

    def _install_sync(self, item: pytest.Item, bf: Any, calls: int) -> None:
        if not hasattr(bf, "_raw"):
            raise RuntimeError("this pytest-benchmark lacks BenchmarkFixture._raw")
        pads = self._pads(item)

        def counting_raw(fn: Any, *args: Any, **kwargs: Any) -> Any:
            result = None
            for suffix, pad in pads:
                body = fn if pad is None else _padded(fn, pad)
                count, result = self.counter.count_sync(body, args, kwargs, calls)
                self._record(item, bf, count, suffix)
            return result

        bf._raw = counting_raw
        bf.disabled = True  # no wall-clock work in this process: see _deterministic()

    def _install_async(self, item: pytest.Item, ab: Any, calls: int) -> None:
        pads = self._pads(item)

        async def counting(fn: Any, *, setup: Any, concurrency: int) -> Any:
            result = None
            for suffix, pad in pads:
                body = fn if pad is None else _apadded(fn, pad)
                count, result = await self.counter.count_async(
                    body, setup=setup, concurrency=concurrency, calls=calls
                )
                self._record(item, ab, count, suffix)
            return result

        ab.counter = counting
        ab.disabled = True

    def _record(self, item: pytest.Item, bf: Any, count: Count, suffix: str = "") -> None:
        self.counts[item.nodeid + suffix] = {
            "group": bf.group,
            "extra_info": dict(bf.extra_info),
            **count.as_extra_info(),
        }
        self._write()

    def _write(self) -> None:
        data = {"format": COUNTS_FORMAT, "version": 1, "counts": self.counts}
        tmp = self.directory / (COUNTS_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(self.directory / COUNTS_FILE)

    def pytest_sessionfinish(self) -> None:
        self._write()
