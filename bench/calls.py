"""How a benchmark's ``setup()`` result becomes call arguments: one rule for the timed
measurement (``bench/harness/measure.py``) and the counted one (``bench/instructions/_counter.py``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["setup_args"]


def setup_args(prepared: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``setup()`` may return None, a tuple of args, or ``(args, kwargs)`` like pedantic.

    >>> setup_args(None), setup_args(3), setup_args((1, 2)), setup_args(((1,), {"k": 2}))
    (((), {}), ((3,), {}), ((1, 2), {}), ((1,), {'k': 2}))
    """
    if prepared is None:
        return (), {}
    if (
        isinstance(prepared, tuple)
        and len(prepared) == 2
        and isinstance(prepared[0], tuple)
        and isinstance(prepared[1], dict)
    ):
        return prepared[0], prepared[1]
    if isinstance(prepared, tuple):
        return prepared, {}
    return (prepared,), {}
