"""Count the instructions of a benchmark body under callgrind, from inside the benchmark process.

The process runs under ``valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no``
(see :mod:`bench.instructions.runner`), so start-up and collection run uninstrumented.
At the first count, :class:`Counter` collects garbage, freezes what survives
(``gc.freeze()``: later collections only scan what the benchmarks created) and
switches instrumentation on for the rest of the process (switching it off and on
again per benchmark would flush callgrind's translations every time, which costs
more than running pytest's own code instrumented between benchmarks). For one
benchmark it then:

1. collects garbage and disables the cyclic GC (restored afterwards);
2. makes one call and :func:`warmup_calls` more, uncounted (first-call costs,
   lazy caches, the interpreter's specialisation of hot bytecode);
3. zeroes the counters, switches collection on around the body (the whole loop of
   ``calls`` calls, or each call alone when a ``setup`` runs before every call, so
   the setup is not counted) and dumps the counters to a file named by the trigger;
4. reads the dump's ``totals:`` line, subtracts the cost of the client requests
   themselves (measured once per process with nothing between two toggles) for
   each collected region, and divides by the call count.

A count is exact for the code that ran; what varies between processes is what
the code does (see docs/measurements/2026-12-01-instruction-counts.md).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.calls import setup_args
from bench.instructions._tools import Shim

__all__ = ["Count", "Counter", "DumpError", "read_dump_total", "warmup_calls"]


def warmup_calls(calls: int) -> int:
    """Uncounted calls before a count of ``calls``: a quarter of them, at least 4."""
    return max(4, calls // 4)


class DumpError(RuntimeError):
    """A callgrind dump was not written or cannot be read."""


@dataclass(frozen=True, slots=True)
class Count:
    """One benchmark's count: ``per_call`` = (``total`` - ``regions`` x ``overhead``) / ``calls``."""

    per_call: float
    total: int
    calls: int
    regions: int
    overhead: int
    warmup: int

    def as_extra_info(self) -> dict[str, Any]:
        """The ``extra_info`` keys a results file carries for this count."""
        return {
            "instructions": round(self.per_call, 3),
            "instructions_calls": self.calls,
            "instructions_total": self.total,
            "instructions_regions": self.regions,
            "instructions_overhead": self.overhead,
            "instructions_warmup": self.warmup,
        }


def read_dump_total(path: Path, trigger: str) -> int:
    """The ``totals:`` (or ``summary:``) of a callgrind dump written for ``trigger``."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise DumpError(f"cannot read callgrind dump {path}: {exc}") from None
    total: int | None = None
    seen_trigger = False
    for line in text.splitlines():
        if line.startswith("desc: Trigger:"):
            seen_trigger = line.rstrip().endswith(f"Client Request: {trigger}")
        elif line.startswith(("totals:", "summary:")):
            total = int(line.split(":", 1)[1].split()[0])
            if line.startswith("totals:"):
                break
    if not seen_trigger:
        raise DumpError(f"{path} is not the dump of {trigger!r}")
    if total is None:
        raise DumpError(f"{path} has no totals line")
    return total


class Counter:
    """Counts benchmark bodies in this process; dumps land in ``dump_dir`` (``callgrind.<pid>.N``)."""

    def __init__(self, shim: Shim, dump_dir: Path, *, keep_dumps: bool = False):
        self.shim = shim
        self.dump_dir = dump_dir
        self.keep_dumps = keep_dumps
        self._seq = 0
        self._overhead: int | None = None
        self._instrumenting = False

    def _instrument(self) -> None:
        """Switch instrumentation on once, after freezing the start-up heap."""
        if not self._instrumenting:
            gc.collect()
            gc.freeze()
            self.shim.start_instrumentation()
            self._instrumenting = True

    # -- dumps -----------------------------------------------------------------------------

    def _dump(self) -> int:
        """Dump the counters under a fresh trigger name and return their total."""
        self._seq += 1
        trigger = f"samplemind-{os.getpid()}-{self._seq}"
        self.shim.dump_stats_at(trigger)
        prefix = f"callgrind.{os.getpid()}."
        parts = [p for p in self.dump_dir.glob(prefix + "*") if p.name[len(prefix) :].isdigit()]
        if not parts:
            raise DumpError(
                f"callgrind wrote no dump into {self.dump_dir} (is the process running under "
                f"valgrind --tool=callgrind --callgrind-out-file={self.dump_dir}/callgrind.%p?)"
            )
        latest = max(parts, key=lambda p: int(p.name[len(prefix) :]))
        total = read_dump_total(latest, trigger)
        if not self.keep_dumps:
            latest.unlink(missing_ok=True)
        return total

    @property
    def overhead(self) -> int:
        """Instructions counted between two collection toggles with nothing in between."""
        if self._overhead is None:
            shim = self.shim
            self._instrument()
            toggle = shim.toggle_collect
            costs = []
            for _ in range(3):
                shim.zero_stats()
                toggle()
                toggle()
                costs.append(self._dump())
            self._overhead = min(costs)
        return self._overhead

    def _finish(self, total: int, calls: int, regions: int, warmup: int) -> Count:
        overhead = self.overhead
        return Count(
            per_call=max(0, total - regions * overhead) / calls,
            total=total,
            calls=calls,
            regions=regions,
            overhead=overhead,
            warmup=warmup,
        )

    # -- bodies ----------------------------------------------------------------------------

    def count_sync(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], calls: int
    ) -> tuple[Count, Any]:
        """Count ``fn(*args, **kwargs)`` called ``calls`` times in one loop → (count, last result)."""
        if calls < 1:
            raise ValueError(f"calls must be >= 1, got {calls}")
        _ = self.overhead
        shim, toggle = self.shim, self.shim.toggle_collect
        gc_was_enabled = gc.isenabled()
        self._instrument()
        gc.collect()
        gc.disable()
        try:
            result = fn(*args, **kwargs)
            warmup = warmup_calls(calls)
            for _ in range(warmup):
                fn(*args, **kwargs)
            loop = range(calls)
            shim.zero_stats()
            toggle()
            for _ in loop:
                result = fn(*args, **kwargs)
            toggle()
            total = self._dump()
        finally:
            if gc_was_enabled:
                gc.enable()
        return self._finish(total, calls, 1, warmup), result

    async def count_async(
        self,
        fn: Callable[..., Awaitable[Any]],
        *,
        setup: Callable[[], Any] | None,
        concurrency: int,
        calls: int,
    ) -> tuple[Count, Any]:
        """Count ``await fn(*setup())``: one region around the loop, or per call with a setup.

        With ``concurrency=N`` one region is N concurrent calls (``asyncio.gather``);
        ``calls`` is rounded up to whole batches.
        """
        if calls < 1 or concurrency < 1:
            raise ValueError(f"calls and concurrency must be >= 1, got {calls}, {concurrency}")
        _ = self.overhead
        shim, toggle = self.shim, self.shim.toggle_collect

        async def args_of() -> tuple[tuple[Any, ...], dict[str, Any]]:
            if setup is None:
                return (), {}
            prepared = setup()
            if inspect.isawaitable(prepared):
                prepared = await prepared
            return setup_args(prepared)

        async def one_batch(collect: bool) -> Any:
            prepared = [await args_of() for _ in range(concurrency)]
            if collect:
                toggle()
            if concurrency == 1:
                a, k = prepared[0]
                out = await fn(*a, **k)
            else:
                out = (await asyncio.gather(*(fn(*a, **k) for a, k in prepared)))[-1]
            if collect:
                toggle()
            return out

        gc_was_enabled = gc.isenabled()
        self._instrument()
        gc.collect()
        gc.disable()
        try:
            result = await one_batch(False)
            warmup = warmup_calls(calls)
            for _ in range(math.ceil(warmup / concurrency)):
                await one_batch(False)
            batches = math.ceil(calls / concurrency)
            shim.zero_stats()
            if setup is None and concurrency == 1:
                regions = 1
                toggle()
                for _ in range(batches):
                    result = await fn()
                toggle()
            else:
                regions = batches
                for _ in range(batches):
                    result = await one_batch(True)
            total = self._dump()
        finally:
            if gc_was_enabled:
                gc.enable()
        return self._finish(total, batches * concurrency, regions, warmup), result
