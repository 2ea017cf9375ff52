"""The load suite's engine: bursts, Poisson arrivals, the saturation knee and a fault schedule.

Everything here runs inside one already running event loop (the test's), so no
figure includes loop start-up. The pieces are independent of where the calls go:
a :class:`LoadTarget` bundles an :class:`~samplemind_core.manager.AIManager`,
how to empty its cache, how to count the provider calls the world received and
how to inject each fault; bench/suites/test_load.py builds one for the mocked world
(fakeredis + the respx mock) and one for the live world (a real redis-server +
the emulator server).

Figures (all per point):

* throughput achieved (completed calls / wall time), p50/p99 latency;
* hit rate next to the *sequential truth*: the hit rate a one-at-a-time replay of
  the same calls would get (a call is a truth hit when its request was asked
  earlier in the stream; a warm wave's truth is 1.0);
* provider calls paid (counted by the world) and dollars; caller errors;
  the cache's own counters (errors, bypassed, pool_waits, pool_timeouts);
* event-loop lag (a 5 ms ticker's overshoot), CPU seconds and RSS.

Latency of an open-loop call is measured from its *scheduled* arrival, so a
saturated loop shows up as queueing delay (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import resource
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from bench.harness.aggregate import percentile
from fixtures.workloads import WorkloadItem
from samplemind_core.fingerprint import fingerprint

__all__ = [
    "CACHE_COUNTERS",
    "CallRecord",
    "Fault",
    "FaultOutcome",
    "KneeResult",
    "LagProbe",
    "LoadTarget",
    "Point",
    "burst",
    "cycle",
    "fault_schedule",
    "find_knee",
    "gather_rate",
    "interleaved",
    "open_loop",
    "truth_hits",
]

LAG_TICK_S: Final = 0.005
BIN_S: Final = 0.1
"""Width of a hit-rate-over-time bin of the fault schedule."""
CACHE_COUNTERS: Final = (
    "errors",
    "bypassed",
    "pool_waits",
    "pool_timeouts",
    "coalesced",
    "leases",
    "lease_waits",
)
"""Cache counters reported per point (0 when the cache does not have them)."""


def cycle(items: Sequence[WorkloadItem], n: int) -> list[WorkloadItem]:
    """The first ``n`` items of the workload repeated end to end."""
    if not items:
        raise ValueError("empty workload")
    return [items[i % len(items)] for i in range(n)]


def request_keys(items: Sequence[WorkloadItem]) -> list[str]:
    """The cache identity of each request (the cache keys by the request alone)."""
    return [fingerprint(item.request, hasher="sha256") for item in items]


def truth_hits(items: Sequence[WorkloadItem]) -> list[bool]:
    """Per call: was this request asked earlier in the stream (the cache keys by request alone)?

    >>> from fixtures.workloads import generate
    >>> items = generate(50, repeat=0.6, seed=3)
    >>> sum(truth_hits(items)) / 50
    0.6
    """
    seen: set[str] = set()
    out: list[bool] = []
    for key in request_keys(items):
        out.append(key in seen)
        seen.add(key)
    return out


@dataclass(slots=True)
class LoadTarget:
    """What the engine drives and how it looks at the world.

    ``complete(item)`` makes one call; ``reset()`` empties the cache store;
    ``provider_calls()`` counts API calls the providers received (faulted ones included);
    ``cache_counters()`` reads the cache's statistics; ``faults`` maps a fault name to
    ``(start, stop)`` coroutine functions. ``complete_at(item, scheduled)``, when given, is
    called instead of ``complete`` with the call's scheduled arrival (``time.perf_counter()``
    time), so that a target timing its own figures (a stream's TTFT) measures them from the
    arrival, not from when the loop got round to starting the call.
    """

    mode: str
    complete: Callable[[WorkloadItem], Awaitable[Any]]
    reset: Callable[[], Awaitable[None]]
    provider_calls: Callable[[], int]
    cache_counters: Callable[[], dict[str, float]]
    faults: dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = field(
        default_factory=dict
    )
    complete_at: Callable[[WorkloadItem, float], Awaitable[Any]] | None = None


@dataclass(slots=True)
class CallRecord:
    """One call: offsets in seconds from the start of the phase."""

    start_s: float
    end_s: float
    hit: bool = False
    store_hit: bool = False
    """Served from the store (a hit that was not a copy of a concurrent caller's reply)."""
    paid: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    truth_hit: bool = False
    key: str = ""

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s


def _paid_calls(resp: Any) -> int:
    if resp.cached:
        return 0
    route = resp.metadata.get("route", [])
    errors = sum(1 for step in route if step.get("outcome") == "error")
    return int(errors + max(1, resp.attempts))


async def _one(
    target: LoadTarget,
    item: WorkloadItem,
    truth: bool,
    origin: float,
    scheduled: float,
    key: str = "",
) -> CallRecord:
    rec = CallRecord(start_s=scheduled - origin, end_s=0.0, truth_hit=truth, key=key)
    try:
        if target.complete_at is not None:
            resp = await target.complete_at(item, scheduled)
        else:
            resp = await target.complete(item)
    except Exception as exc:  # every exception a caller sees is a figure, not a crash
        rec.error = type(exc).__name__
    except asyncio.CancelledError:
        # Nothing here cancels these calls, so a CancelledError is one leaked from below (the
        # bug this suite guards): a caller error. Were the whole run cancelled, gather() still
        # ends with CancelledError once the calls are done.
        rec.error = "CancelledError"
    else:
        rec.hit = bool(resp.cached)
        rec.store_hit = rec.hit and not resp.metadata.get("coalesced", False)
        rec.paid = _paid_calls(resp)
        rec.cost_usd = float(resp.cost_usd)
    rec.end_s = time.perf_counter() - origin
    return rec


class LagProbe:
    """Event-loop lag: how late a ``LAG_TICK_S`` sleep wakes up, sampled while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(LAG_TICK_S)
            self.samples.append(max(0.0, time.perf_counter() - t0 - LAG_TICK_S))

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def figures(self) -> dict[str, float]:
        if not self.samples:
            return {"loop_lag_p99_ms": 0.0, "loop_lag_max_ms": 0.0}
        return {
            "loop_lag_p99_ms": percentile(self.samples, 99) * 1e3,
            "loop_lag_max_ms": max(self.samples) * 1e3,
        }


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass(slots=True)
class Point:
    """One measured point (a burst wave or an open-loop rate)."""

    calls: list[CallRecord]
    wall_s: float
    provider_calls: int
    cpu_s: float
    counters: dict[str, float]
    lag: dict[str, float]
    rss_mb: float
    offered_per_s: float | None = None

    @property
    def latencies_s(self) -> list[float]:
        return [c.latency_s for c in self.calls]

    @property
    def errors(self) -> int:
        return sum(1 for c in self.calls if c.error is not None)

    @property
    def hit_rate(self) -> float:
        return sum(c.hit for c in self.calls) / max(1, len(self.calls))

    @property
    def truth(self) -> float:
        return sum(c.truth_hit for c in self.calls) / max(1, len(self.calls))

    @property
    def achieved_per_s(self) -> float:
        return len(self.calls) / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_s, 99) * 1e3 if self.calls else math.inf

    def figures(self, prefix: str = "") -> dict[str, Any]:
        lat = self.latencies_s
        out: dict[str, Any] = {
            "calls": len(self.calls),
            "req_per_s": self.achieved_per_s,
            "p50_ms": percentile(lat, 50) * 1e3 if lat else 0.0,
            "p99_ms": self.p99_ms if lat else 0.0,
            "hit_rate_measured": self.hit_rate,
            "truth_hit_rate": self.truth,
            "provider_calls_paid": self.provider_calls,
            "dollars_usd": sum(c.cost_usd for c in self.calls),
            "caller_errors": self.errors,
            "cpu_s": self.cpu_s,
            "cpu_util": self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0,
            "rss_mb": self.rss_mb,
            **{f"cache_{k}": v for k, v in self.counters.items()},
            **self.lag,
        }
        if self.offered_per_s is not None:
            out["offered_per_s"] = self.offered_per_s
        return {f"{prefix}{k}": v for k, v in out.items()}


def _counter_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in CACHE_COUNTERS}


class _Meter:
    """Provider calls, cache counters, CPU and lag around one phase."""

    def __init__(self, target: LoadTarget) -> None:
        self.target = target
        self.probe = LagProbe()

    def __enter__(self) -> _Meter:
        self.calls0 = self.target.provider_calls()
        self.counters0 = self.target.cache_counters()
        self.cpu0 = time.process_time()
        self.probe.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.probe.__exit__()

    def point(self, calls: list[CallRecord], wall_s: float, offered: float | None) -> Point:
        return Point(
            calls=calls,
            wall_s=wall_s,
            provider_calls=self.target.provider_calls() - self.calls0,
            cpu_s=time.process_time() - self.cpu0,
            counters=_counter_delta(self.counters0, self.target.cache_counters()),
            lag=self.probe.figures(),
            rss_mb=_rss_mb(),
            offered_per_s=offered,
        )


async def burst(target: LoadTarget, items: Sequence[WorkloadItem], *, warm: bool) -> Point:
    """All of ``items`` at once (``asyncio.gather``): one closed-loop wave.

    ``warm``: the store already holds every request (a previous wave), so the truth is 1.0.
    """
    truth = [True] * len(items) if warm else truth_hits(items)
    with _Meter(target) as meter:
        origin = time.perf_counter()
        calls = await asyncio.gather(
            *(_one(target, it, t, origin, origin) for it, t in zip(items, truth, strict=True))
        )
        wall = time.perf_counter() - origin
    return meter.point(list(calls), wall, None)


async def gather_rate(n: int, make: Callable[[int], Awaitable[Any]]) -> tuple[float, list[Any]]:
    """``gather`` of ``make(0) .. make(n - 1)``: (calls per second of its wall time, the results)."""
    t0 = time.perf_counter()
    values = await asyncio.gather(*(make(i) for i in range(n)))
    return n / (time.perf_counter() - t0), list(values)


async def interleaved(
    sides: Mapping[str, Callable[[], Awaitable[float]]], rounds: int
) -> dict[str, list[float]]:
    """``rounds`` rounds of every side (each returns its calls/s for one round), side by side.

    The order of the sides is reversed every other round, so neither side always runs
    first (after the other side's garbage, or on a cooler cache). Returns each side's rates.
    """
    names = list(sides)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].append(await sides[name]())
    return rates


async def _arrivals(
    target: LoadTarget,
    items: Sequence[WorkloadItem],
    truth: Sequence[bool],
    rate: float,
    seed: int,
    origin: float,
    stop: Callable[[float], bool],
) -> list[CallRecord]:
    """Poisson arrivals at ``rate``/s until ``stop(t)``; each call takes the next item."""
    rng = random.Random(seed)
    keys = request_keys(items)
    tasks: list[asyncio.Task[CallRecord]] = []
    loop = asyncio.get_running_loop()
    t = rng.expovariate(rate)
    i = 0
    while not stop(t):
        delay = origin + t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        # launch every arrival whose time has come (sleep granularity is coarser than 1/rate)
        now = time.perf_counter() - origin
        while t <= now and not stop(t):
            k = i % len(items)
            tasks.append(
                loop.create_task(_one(target, items[k], truth[k], origin, origin + t, keys[k]))
            )
            i += 1
            t += rng.expovariate(rate)
    return list(await asyncio.gather(*tasks))


async def open_loop(
    target: LoadTarget,
    items: Sequence[WorkloadItem],
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    truth: Sequence[bool] | None = None,
) -> Point:
    """Open-loop Poisson arrivals at ``rate`` per second for ``duration_s`` seconds."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration_s must be > 0")
    truth = list(truth) if truth is not None else truth_hits(items)
    with _Meter(target) as meter:
        origin = time.perf_counter()
        calls = await _arrivals(target, items, truth, rate, seed, origin, lambda t: t >= duration_s)
        wall = max((c.end_s for c in calls), default=duration_s)
    return meter.point(calls, max(wall, duration_s), rate)


P = TypeVar("P")


@dataclass(slots=True)
class KneeResult(Generic[P]):
    """The saturation knee: the highest rate whose point was acceptable (p99 under ``bound_ms``
    by default)."""

    knee_per_s: float
    bound_ms: float
    points: list[tuple[float, P]]

    @property
    def knee_point(self) -> P | None:
        for rate, p in self.points:
            if rate == self.knee_per_s:
                return p
        return None


def acceptable(p: Point, bound_ms: float) -> bool:
    """Under the knee: p99 within the bound, no caller errors, and the offered rate was served."""
    offered = p.offered_per_s or 0.0
    return p.p99_ms <= bound_ms and p.errors == 0 and p.achieved_per_s >= 0.9 * offered


async def find_knee(
    measure: Callable[[float], Awaitable[P]],
    *,
    start_per_s: float,
    bound_ms: float,
    max_doublings: int,
    bisections: int,
    accept: Callable[[P], bool] | None = None,
) -> KneeResult[P]:
    """Double the rate until a point fails ``accept`` (default: :func:`acceptable` with
    ``bound_ms``), then bisect between the last good and the first bad rate ``bisections``
    times. ``knee_per_s`` is 0 when even ``start_per_s`` fails; when no rate failed it is the
    last rate tried (a lower bound of the knee)."""

    def ok(p: P) -> bool:
        if accept is not None:
            return accept(p)
        assert isinstance(p, Point), "find_knee without accept measures Points"
        return acceptable(p, bound_ms)

    points: list[tuple[float, P]] = []
    good, bad = 0.0, math.inf
    rate = start_per_s
    for _ in range(max_doublings + 1):
        p = await measure(rate)
        points.append((rate, p))
        if ok(p):
            good = rate
            rate *= 2
        else:
            bad = rate
            break
    if math.isfinite(bad) and good > 0:
        for _ in range(bisections):
            rate = (good + bad) / 2
            p = await measure(rate)
            points.append((rate, p))
            if ok(p):
                good = rate
            else:
                bad = rate
    points.sort(key=lambda rp: rp[0])
    return KneeResult(knee_per_s=good, bound_ms=bound_ms, points=points)


# --------------------------------------------------------------------------- fault schedule


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault of the schedule: ``name`` must be a key of ``LoadTarget.faults``.

    ``kind``: "cache" (no caller may see an error) or "provider"; the fault starts
    ``at_s`` after the schedule starts and its stop action runs ``hold_s`` later.
    ``loses_data``: the store is empty afterwards (a restart without persistence), so
    from its end the recovery reference counts only requests asked since.
    """

    name: str
    kind: str
    at_s: float
    hold_s: float
    loses_data: bool = False


@dataclass(slots=True)
class FaultOutcome:
    """What one fault cost callers (window: from its start to the next fault's start)."""

    name: str
    kind: str
    start_s: float
    end_s: float
    """When the stop action returned (a restarted server answers PING)."""
    window_end_s: float
    caller_errors: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    extra_provider_calls: int = 0
    recover_s: float | None = None
    resume_hits_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "caller_errors": self.caller_errors,
            "error_types": dict(self.error_types),
            "extra_provider_calls": self.extra_provider_calls,
            "recover_s": self.recover_s,
            "resume_hits_s": self.resume_hits_s,
        }


def reference_hits(calls: Sequence[CallRecord], wipes: Sequence[float]) -> list[bool]:
    """Per call (in ``calls`` order): the sequential truth with the store emptied at each of
    ``wipes`` (seconds): a hit when its key was asked since the last wipe before it started."""
    order = sorted(range(len(calls)), key=lambda i: calls[i].start_s)
    pending = sorted(wipes)
    seen: set[str] = set()
    out = [False] * len(calls)
    for i in order:
        c = calls[i]
        while pending and c.start_s >= pending[0]:
            seen.clear()
            pending.pop(0)
        out[i] = c.key in seen if c.key else c.truth_hit
        seen.add(c.key)
    return out


def _bins(
    calls: Sequence[CallRecord], reference: Sequence[bool], total_s: float
) -> list[dict[str, float]]:
    n = max(1, math.ceil(total_s / BIN_S))
    bins = [{"t": i * BIN_S, "calls": 0, "hits": 0, "truth": 0, "errors": 0} for i in range(n)]
    for c, ref in zip(calls, reference, strict=True):
        b = bins[min(n - 1, int(c.start_s / BIN_S))]
        b["calls"] += 1
        b["hits"] += c.hit
        b["truth"] += ref
        b["errors"] += c.error is not None
    return bins


TAIL_S: Final = 1.5
"""Load keeps arriving this long after the last fault ended (its recovery window)."""
MAX_STRETCH: Final = 3.0
RECOVERED_GAP: Final = 0.10
"""A bin is back to normal when its hit rate is within 10 points of its truth and no call failed."""
MIN_BIN_CALLS: Final = 3


def _recovered_at(bins: Sequence[dict[str, float]], after_s: float) -> float | None:
    for b in bins:
        if b["t"] + 1e-9 < after_s or b["calls"] < MIN_BIN_CALLS:
            continue
        if b["errors"] == 0 and b["hits"] / b["calls"] >= b["truth"] / b["calls"] - RECOVERED_GAP:
            return max(0.0, b["t"] - after_s)
    return None


def analyse_faults(
    calls: Sequence[CallRecord],
    spans: Sequence[tuple[Fault, float, float]],
    total_s: float,
) -> tuple[list[FaultOutcome], list[dict[str, float]]]:
    """Per fault: caller errors, extra provider calls and recovery, plus the time bins.

    Extra provider calls: calls paid in the fault's window beyond the sequential truth (a
    data loss is a cost of its fault), as the replies of the calls *started* in the window
    report them (failed chain steps + the answering provider's HTTP attempts; retries
    inside a provider that finally failed count once). The world's own count of the whole
    schedule is ``Point.provider_calls``. Recovery: against the truth *after* each data loss
    (:func:`reference_hits`), from the end of the fault to the first normal bin.
    """
    wipes = [end for fault, _start, end in spans if fault.loses_data]
    bins = _bins(
        calls, reference_hits(calls, wipes) if wipes else [c.truth_hit for c in calls], total_s
    )
    outcomes: list[FaultOutcome] = []
    ordered = sorted(spans, key=lambda s: s[1])
    for i, (fault, start, end) in enumerate(ordered):
        window_end = ordered[i + 1][1] if i + 1 < len(ordered) else total_s
        out = FaultOutcome(fault.name, fault.kind, start, end, window_end)
        paid = truth_misses = 0
        for c in calls:
            if start <= c.start_s < window_end:
                paid += c.paid
                truth_misses += not c.truth_hit
                if c.error is not None:
                    out.caller_errors += 1
                    out.error_types[c.error] = out.error_types.get(c.error, 0) + 1
        out.extra_provider_calls = paid - truth_misses
        out.recover_s = _recovered_at(bins, end)
        if fault.kind == "cache":
            resumed = [c.start_s for c in calls if c.store_hit and c.start_s >= end]
            out.resume_hits_s = (min(resumed) - end) if resumed else None
        outcomes.append(out)
    return outcomes, bins


async def fault_schedule(
    target: LoadTarget,
    items: Sequence[WorkloadItem],
    faults: Sequence[Fault],
    *,
    rate: float,
    duration_s: float,
    seed: int = 0,
    tail_s: float = TAIL_S,
) -> tuple[Point, list[FaultOutcome], list[dict[str, float]]]:
    """Poisson load at ``rate`` through a cold cache while ``faults`` fire.

    The load runs for ``duration_s``, and on until ``tail_s`` (default :data:`TAIL_S`) after
    the last fault ended (a slow restart delays the faults after it; each fault still gets its
    recovery time), but never longer than ``MAX_STRETCH`` times ``duration_s``.
    """
    truth = truth_hits(items)
    spans: list[tuple[Fault, float, float]] = []
    done_at: list[float] = []

    async def inject(origin: float) -> None:
        # One fault at a time, in order: a fault never starts before the previous one ended
        # (a restart that takes long on a busy machine must not overlap the next fault).
        for fault in sorted(faults, key=lambda f: f.at_s):
            start_action, stop_action = target.faults[fault.name]
            delay = origin + fault.at_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            started = time.perf_counter() - origin
            await start_action()
            await asyncio.sleep(fault.hold_s)
            await stop_action()
            spans.append((fault, started, time.perf_counter() - origin))
        done_at.append(time.perf_counter() - origin)

    def stop(t: float) -> bool:
        if t >= duration_s * MAX_STRETCH:
            return True
        return t >= duration_s and bool(done_at) and t >= done_at[0] + tail_s

    with _Meter(target) as meter:
        origin = time.perf_counter()
        injector = asyncio.create_task(inject(origin))
        calls = await _arrivals(target, items, truth, rate, seed, origin, stop)
        await injector
        wall = max([duration_s, *(c.end_s for c in calls), *(s[2] for s in spans)])
    point = meter.point(calls, wall, rate)
    outcomes, bins = analyse_faults(calls, spans, wall)
    return point, outcomes, bins
