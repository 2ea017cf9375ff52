"""Helpers shared by the test modules."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["until"]


async def until(
    check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 20.0, interval_s: float = 0.005
) -> None:
    """Poll ``check()`` (plain or async) every ``interval_s`` until it is truthy.

    Fails with ``TimeoutError`` after ``timeout_s``: a bounded poll, never a fixed wait.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval_s)
