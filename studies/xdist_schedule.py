"""Simulate pytest-xdist's schedulers on two workers from the durations of a real run.

Decision 0420 (``docs/decisions/0420-xdist-keeps-load-scheduling.md``) and the measurement
log ``docs/measurements/2026-12-06-test-times-2.md``. Inputs, made once::

    pytest --collect-only -q tests bench | grep :: > order.txt          # and with -m slow,
    pytest --collect-only -q -m valgrind tests bench | grep :: > vg.txt  # -m valgrind, and the
    # servers' markers: -m "not slow and (cluster or postgres or browser or profile or live or redis)"
    pytest -n 2 --durations=80 ... > baseline.txt                       # the run to model
    pytest -n 2 -m "not slow" --durations=0 ... > fast.txt               # durations of the rest

    python -m studies.xdist_schedule --order order.txt --slow slow.txt --valgrind vg.txt \\
        --servers srv.txt --baseline baseline.txt --fast fast.txt --wall 240.9

The tests of ``--baseline`` keep their durations; the others get their ``--fast`` durations
scaled so that the sum is the busy time of the modelled run (``2 x wall - 2 x 10 s of start-up
- 10 s of tail``). Valgrind tests hold one lock (``counting_stage``). ``load`` is xdist's
``LoadScheduling`` (chunks of N/8, refilled below N/4), ``worksteal`` its
``WorkStealingScheduling`` (halves; an idle worker steals half of the longest queue, leaving 2).
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

DURATION = re.compile(r"([0-9.]+)s (call|setup|teardown)\s+(\S+)")


def _ids(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if "::" in line]


def _durations(path: Path) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for line in path.read_text().splitlines():
        m = DURATION.match(line)
        if m:
            out[m.group(3)] += float(m.group(1))
    return out


def simulate(
    items: list[str], dur: dict[str, float], valgrind: set[str], dist: str, workers: int = 2
) -> tuple[float, list[float], float]:
    """(wall, per-worker end times, seconds spent waiting for the counting lock)."""
    queue = list(range(len(items)))
    pending: dict[int, list[int]] = {w: [] for w in range(workers)}

    def send(w: int, k: int) -> None:
        pending[w].extend(queue[:k])
        del queue[:k]

    if dist == "load":
        for w in range(workers):
            send(w, max(len(items) // workers // 4, 2))
    else:
        for i in range(workers):
            send(i, len(queue) // (workers - i))
    clock = [0.0] * workers
    lock_free = waited = 0.0
    while True:
        for w in range(workers):
            if len(pending[w]) >= 2:
                continue
            if dist == "load" and queue:
                low, high = max(2, len(queue) // workers // 4), max(2, len(queue) // workers // 2)
                if len(pending[w]) < low:
                    send(w, high - len(pending[w]))
            elif dist == "worksteal" and not queue:
                other = max(range(workers), key=lambda x: len(pending[x]))
                k = min(len(pending[other]) // 2, max(0, len(pending[other]) - 2))
                if k and other != w:
                    pending[w].extend(pending[other][-k:])
                    del pending[other][-k:]
        busy = [w for w in range(workers) if pending[w]]
        if not busy:
            break
        w = min(busy, key=lambda x: clock[x])
        name = items[pending[w].pop(0)]
        start = clock[w]
        if name in valgrind:
            waited += max(0.0, lock_free - start)
            start = max(start, lock_free)
            lock_free = start + dur[name]
        clock[w] = start + dur[name]
    return max(clock), clock, waited


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("order", "slow", "valgrind", "servers", "baseline", "fast"):
        p.add_argument(f"--{name}", type=Path, required=True)
    p.add_argument("--wall", type=float, required=True, help="wall seconds of the modelled run")
    args = p.parse_args(argv)
    order = _ids(args.order)
    slow, vg, srv = set(_ids(args.slow)), set(_ids(args.valgrind)), set(_ids(args.servers))
    base, fast = _durations(args.baseline), _durations(args.fast)
    busy = 2 * args.wall - 2 * 10 - 10
    rest = [n for n in order if n not in base]
    known = sum(base[n] for n in order if n in base)
    missing = [n for n in rest if n not in fast]
    scale = (busy - known - 0.02 * len(missing)) / sum(fast.get(n, 0.0) for n in rest)
    dur = {n: base[n] if n in base else fast[n] * scale if n in fast else 0.02 for n in order}
    print(f"{len(order)} tests, busy {sum(dur.values()):.1f} s, {len(base)} from the baseline")

    def rank(n: str) -> int:
        return 0 if n in vg else 1 if n in slow else 2 if n in srv else 3

    longest_first = sorted(order, key=rank)
    for label, items, dist in (
        ("load, pytest's order", order, "load"),
        ("worksteal, pytest's order", order, "worksteal"),
        ("load, longest first", longest_first, "load"),
        ("worksteal, longest first", longest_first, "worksteal"),
    ):
        wall, clock, waited = simulate(items, dur, vg, dist)
        ends = " / ".join(f"{c:.1f}" for c in clock)
        print(f"{label:28s} wall {wall:6.1f} s  workers {ends}  lock waits {waited:.1f} s")
    print(f"ideal (busy / 2): {sum(dur.values()) / 2:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
