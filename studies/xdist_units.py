"""Simulate ``pytest -n 2`` with xdist's ``load`` and with the units of ``tests/conftest.py``
(decision 0580) on the per-test durations of one real run, shared counted runs included.

Inputs, made once (docs/measurements/2026-12-06-slow-tests.md)::

    pytest --collect-only -q -p no:cacheprovider tests bench | grep :: > order.txt
    PYTEST_CPU_OUT=/tmp/run.cpu pytest -p studies.pytest_cpu -n 2 -q -p no:cacheprovider
    python -m studies.xdist_units --order order.txt /tmp/run.cpu.gw0 /tmp/run.cpu.gw1

The model: each test takes its measured wall time. A shared counted run (``counted_pair``,
``counted_headlines``) is made by whichever of its readers starts first, holding the user's
one counting lock; it costs what its maker took in the measured run beyond the cheapest of its
other readers. A reader that starts while the other worker is still making it waits, idle.
Since record 0740 ``test_baseline_ref_counts_both_sides`` reads ``counted_pair`` (one
``gate --baseline-ref`` run makes it); :data:`LOCKED` lists tests that count on their own.
``load`` is xdist's ``LoadScheduling`` as in :mod:`studies.xdist_schedule`; ``units`` is
``loadscope`` over :func:`tests.conftest.schedule_unit` (units by size, largest first; a
worker gets the next unit when it has two tests or fewer left).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tests.conftest import schedule_unit

GATE = "tests/gate/test_instructions_cli.py::"
INSTR = "tests/test_instructions.py::"
SHARED: dict[str, tuple[str, ...]] = {
    "counted_pair": (
        GATE + "test_aa_of_two_fresh_processes_passes",
        GATE + "test_two_percent_more_instructions_in_one_benchmark_fails_and_is_named",
        GATE + "test_wall_time_stays_the_looser_guard",
        GATE + "test_missing_spread_is_not_a_pass",
        GATE + "test_counts_on_one_side_only_get_a_clear_message",
        INSTR + "test_counts_do_not_depend_on_the_checkout_path",
        GATE + "test_baseline_ref_counts_both_sides",
    ),
    "counted_headlines": (
        INSTR + "test_run_instructions_end_to_end",
        INSTR + "test_report_shows_counts_beside_time_from_a_real_run",
    ),
}
LOCKED: tuple[str, ...] = ()
"""Tests that hold the counting lock for their whole duration (their own counts, no shared run)."""


def read_durations(paths: list[Path]) -> dict[str, float]:
    dur: dict[str, float] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            wall, _cpu, nodeid = line.split("\t")
            dur[nodeid] = float(wall)
    return dur


def fixture_costs(dur: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(cost of each shared run, each test's own duration without it)."""
    own = dict(dur)
    cost = {}
    for name, readers in SHARED.items():
        seen = [r for r in readers if r in dur]
        cheapest = min(dur[r] for r in seen)
        cost[name] = max(dur[r] for r in seen) - cheapest
        maker = max(seen, key=lambda r: dur[r])
        own[maker] = cheapest
    return cost, own


def simulate(
    order: list[str],
    dur: dict[str, float],
    dist: str,
    unit: Callable[[str], str] = schedule_unit,
    workers: int = 2,
) -> tuple[float, list[float], float]:
    """(wall, per-worker end times, idle seconds waiting for a shared run or the lock)."""
    cost, own = fixture_costs(dur)
    items = [n for n in order if n in dur]
    pending: dict[int, list[str]] = {w: [] for w in range(workers)}
    if dist == "load":
        queue = list(items)

        def refill(w: int) -> None:
            low, high = max(2, len(queue) // workers // 4), max(2, len(queue) // workers // 2)
            if queue and len(pending[w]) < low:
                take = high - len(pending[w])
                pending[w].extend(queue[:take])
                del queue[:take]

        for w in range(workers):
            take = max(len(items) // workers // 4, 2)
            pending[w].extend(queue[:take])
            del queue[:take]
    else:
        groups: dict[str, list[str]] = {}
        for n in items:
            groups.setdefault(unit(n), []).append(n)
        units = sorted(groups.values(), key=lambda g: -len(g))  # stable: collection order

        def refill(w: int) -> None:
            while units and len(pending[w]) <= 2:
                pending[w].extend(units.pop(0))

        for w in range(workers):
            if units:
                pending[w].extend(units.pop(0))
    clock = [0.0] * workers
    lock_free = idle = 0.0
    done: dict[str, float] = {}
    while True:
        for w in range(workers):
            refill(w)
        busy = [w for w in range(workers) if pending[w]]
        if not busy:
            break
        w = min(busy, key=lambda x: clock[x])
        name = pending[w].pop(0)
        start = clock[w]
        for fixture, readers in SHARED.items():
            if name not in readers:
                continue
            if fixture not in done:  # this test makes it, under the counting lock
                begin = max(start, lock_free)
                idle += begin - start
                done[fixture] = lock_free = start = begin + cost[fixture]
            else:  # made, or being made by the other worker: wait for it
                idle += max(0.0, done[fixture] - start)
                start = max(start, done[fixture])
        if name in LOCKED:
            idle += max(0.0, lock_free - start)
            start = max(start, lock_free)
            lock_free = start + own[name]
        clock[w] = start + own[name]
    return max(clock), clock, idle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--order", type=Path, required=True, help="pytest --collect-only -q output")
    p.add_argument("durations", type=Path, nargs="+", help="studies.pytest_cpu files")
    args = p.parse_args(argv)
    order = [x.strip() for x in args.order.read_text().splitlines() if "::" in x]
    dur = read_durations(args.durations)
    missing = [n for n in order if n not in dur]
    print(f"{len(order)} tests collected, {len(dur)} timed, {len(missing)} without a time")
    print(f"busy {sum(dur.values()):.1f} s; ideal (busy / 2) {sum(dur.values()) / 2:.1f} s")
    for dist in ("load", "units"):
        wall, clock, idle = simulate(order, dur, dist)
        ends = " / ".join(f"{c:.1f}" for c in clock)
        print(f"{dist:6s} wall {wall:6.1f} s  workers {ends}  idle waits {idle:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
