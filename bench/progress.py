"""Progress lines on stderr for steps that take more than a few seconds (shared by the commands).

A :class:`Progress` says nothing for a step that ends within ``after_s`` (2 s): quick commands
stay quiet. After that it prints, at most every ``every_s`` (5 s), what it is doing, how far it is
and an estimate of what is left::

    gate: comparing benchmarks: 40/131 (12 s, about 27 s left)

and one closing line when it printed anything. ``enabled=False`` (``-q``) silences it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Rate-limited progress of one step of ``total`` items (see the module docstring)."""

    def __init__(
        self,
        what: str,
        total: int,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        after_s: float = 2.0,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.enabled = enabled
        self.stream = stream
        self.after_s = after_s
        self.every_s = every_s
        self.clock = clock
        self.start = clock()
        self.last: float | None = None
        self.lines = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)
        self.lines += 1

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` items are finished (prints when due)."""
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        now = self.clock()
        elapsed = now - self.start
        if elapsed < self.after_s or (self.last is not None and now - self.last < self.every_s):
            return
        self.last = now
        left = ""
        if 0 < done < self.total:
            left = f", about {elapsed / done * (self.total - done):.0f} s left"
        self._print(f"{self.what}: {done}/{self.total} ({elapsed:.0f} s{left})")

    def done(self) -> None:
        """The closing line (only when a progress line was printed)."""
        if self.enabled and self.lines:
            self._print(
                f"{self.what}: {self.total}/{self.total} done in {self.clock() - self.start:.0f} s"
            )
