"""Deadlines of store operations and connection slots, each on one timer per event loop.

Both run on the event loop's clock (``loop.time()``) and never count the
time the loop was busy elsewhere (a burst of thousands of calls) against an
operation: see :class:`_OpTimeouts`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["_OpTimeouts", "_Slots"]


class _Slots:
    """At most ``size`` store operations at once; the others wait in FIFO order.

    Taking a free slot does not await. A waiter gets a slot handed over by
    :meth:`release`, or ``False`` when ``timeout`` of responsive event-loop
    time passes first (the lag measured by ``clock``, see :class:`_OpTimeouts`),
    and in any case after ``10 x timeout`` of wall time. One timer per event
    loop serves every waiter (all share the timeout, so their deadlines are in
    order).
    """

    __slots__ = ("_handle", "_loop", "_waiters", "clock", "free", "size", "timeout")

    def __init__(self, size: int, timeout: float, clock: _OpTimeouts) -> None:
        self.size = self.free = size
        self.timeout = timeout
        self.clock = clock
        # (future, deadline on the responsive clock, deadline on the loop clock)
        self._waiters: deque[tuple[asyncio.Future[bool], float, float]] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def take(self) -> bool:
        """Take a free slot now; False when the caller has to :meth:`wait`."""
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def wait(self) -> bool:
        """Wait for a slot; True when one was handed over, False after ``timeout``."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first wait, or the cache moved to another loop
            if self._handle is not None:
                self._handle.cancel()
            self._loop, self._handle = loop, None
            self._waiters.clear()
        fut: asyncio.Future[bool] = loop.create_future()
        now = loop.time()
        self._waiters.append(
            (fut, self.clock.responsive(now) + self.timeout, now + 10.0 * self.timeout)
        )
        if self._handle is None:
            self._handle = loop.call_at(now + self.timeout / 4, self._expire)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result():
                self.release()  # handed a slot, but cancelled before using it
            raise

    def release(self) -> None:
        """Give the slot to the first live waiter, or back to the free count."""
        waiters = self._waiters
        while waiters:
            fut, _, _ = waiters.popleft()
            if not fut.done():
                fut.set_result(True)
                return
        self.free += 1

    def _expire(self) -> None:
        self._handle = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        responsive = self.clock.responsive(now)
        waiters = self._waiters
        while waiters:
            fut, soft, hard = waiters[0]
            if fut.done():
                waiters.popleft()
            elif soft <= responsive or hard <= now:
                waiters.popleft()
                fut.set_result(False)
            else:
                self._handle = loop.call_at(now + self.timeout / 4, self._expire)
                return


class _OpTimeouts:
    """Per-operation deadlines with one timer per event loop, blind to event-loop lag.

    Each operation only registers and unregisters itself in a dict (no timer
    handle per call, unlike ``asyncio.timeout``); one timer ticks (every
    quarter of the timeout) while any operation is pending.

    A deadline measures the time the event loop was *responsive*: whenever the
    tick fires late, the loop was busy (a burst of thousands of calls), not
    waiting for Redis, and that lag is not counted. An operation is given up
    after ``timeout`` of responsive time, or after ``cap`` of wall time
    whatever the lag (``max(2 s, 8 x timeout)``). The overdue task is
    cancelled one loop iteration later and only if it is still inside its
    operation: a reply that reached the socket before the check wakes its task
    first (the loop runs I/O callbacks before due timers, and task wake-ups
    before later ``call_soon`` callbacks).
    """

    __slots__ = ("_armed_at", "_fired", "_handle", "_lag", "_loop", "_ops", "cap", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.cap = max(2.0, 8.0 * timeout)
        # task -> (deadline on the responsive clock, deadline on the loop clock)
        self._ops: dict[asyncio.Task[Any], tuple[float, float]] = {}
        self._fired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lag = 0.0  # lag seen so far: responsive clock = loop.time() - _lag
        self._armed_at = 0.0

    def enter(self) -> asyncio.Task[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or the cache moved to another loop
            if self._handle is not None:
                self._handle.cancel()
            self._loop, self._handle = loop, None
            self._ops.clear()
            self._fired.clear()
            self._lag = 0.0
        task = asyncio.current_task(loop)
        if task is None:  # pragma: no cover - always inside a task under asyncio
            raise RuntimeError("ResponseCache must be used from an asyncio task")
        now = loop.time()
        self._ops[task] = (now - self._lag + self.timeout, now + self.cap)
        if self._handle is None:
            self._arm(loop, now)
        return task

    def responsive(self, now: float) -> float:
        """``now`` on the responsive clock (loop time minus the lag seen so far)."""
        return now - self._lag if asyncio.get_running_loop() is self._loop else now

    def exit(self, task: asyncio.Task[Any]) -> bool:
        """Unregister ``task``; True when its deadline fired (it was cancelled by us)."""
        self._ops.pop(task, None)
        if task in self._fired:
            self._fired.discard(task)
            return True
        return False

    def _arm(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self._armed_at = at = now + self.timeout / 4
        self._handle = loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._handle = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        self._lag += max(0.0, now - self._armed_at)
        responsive = now - self._lag
        overdue = [t for t, (soft, hard) in self._ops.items() if soft <= responsive or hard <= now]
        if overdue:
            loop.call_soon(self._cancel, overdue, responsive, now)
        if self._ops:
            self._arm(loop, now)

    def _cancel(self, overdue: list[asyncio.Task[Any]], responsive: float, now: float) -> None:
        ops = self._ops
        for task in overdue:
            entry = ops.get(task)
            if entry is not None and (entry[0] <= responsive or entry[1] <= now):
                del ops[task]  # still in the same operation: no reply came
                self._fired.add(task)
                task.cancel()
