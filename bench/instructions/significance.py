"""The instruction gate's decision: a change counts when it beats the tolerance *and* the A/A spread.

Instruction counts are nearly deterministic, but not exactly (see
docs/decisions.md, issue 13): the same code counted in fresh processes differs by
a small, benchmark-specific amount. The A/A spread of a benchmark,
``(max - min) / median`` of its counts over several fresh processes of the same
code (:func:`aa_spread`, measured by ``python -m studies.instructions_study aa``),
is that noise. :func:`decide` calls a change

* ``regression`` when it is ``+tolerance`` or more and above ``safety x spread``;
* ``improvement`` when it is ``-tolerance`` or less and beyond ``safety x spread``;
* ``inconclusive`` when it reaches the tolerance but is within ``safety x spread``
  (this benchmark is too noisy to gate at this tolerance: widen it or fix the noise);
* ``unchanged`` when it is smaller than the tolerance.

The tolerance is the smallest change that counts: with the default 1 %, a change of
exactly 1 % is a regression (when the spread allows), so a gate at 1 % sees 1 % steps.

``safety`` (default 2) covers that a new pair of processes can land outside the
range that a handful of A/A processes happened to show. With several counts per
side (repeated processes), the medians are compared and the spread of each side
also counts as noise.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "DEFAULT_SAFETY",
    "DEFAULT_TOLERANCE",
    "InstructionVerdict",
    "aa_spread",
    "decide",
    "load_spreads",
]

DEFAULT_TOLERANCE: Final = 0.01
DEFAULT_SAFETY: Final = 2.0

Verdict = Literal["regression", "improvement", "inconclusive", "unchanged"]


def aa_spread(counts: Sequence[float]) -> float:
    """``(max - min) / median`` of counts of the same code (0.0 for a single count).

    >>> aa_spread([1000, 1001, 1000])
    0.001
    """
    if not counts:
        raise ValueError("no counts")
    if any(c <= 0 for c in counts):
        raise ValueError(f"instruction counts must be positive, got {list(counts)}")
    return (max(counts) - min(counts)) / statistics.median(counts)


@dataclass(frozen=True, slots=True)
class InstructionVerdict:
    """One benchmark's decision; ``change`` = candidate / baseline - 1 (medians)."""

    baseline: float
    candidate: float
    change: float
    noise: float
    margin: float
    tolerance: float
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    spread: float | None,
    tolerance: float = DEFAULT_TOLERANCE,
    safety: float = DEFAULT_SAFETY,
) -> InstructionVerdict:
    """Decide one benchmark from its counts per call (one or more fresh processes per side).

    ``spread`` is the benchmark's measured A/A spread (``None`` when it was never
    measured: then only the spreads seen within ``baseline`` and ``candidate``
    count, which is zero for single counts, so measure it).
    """
    if tolerance <= 0 or safety <= 0:
        raise ValueError("tolerance and safety must be > 0")
    if spread is not None and spread < 0:
        raise ValueError(f"spread must be >= 0, got {spread}")
    base = statistics.median(baseline) if baseline else 0.0
    cand = statistics.median(candidate) if candidate else 0.0
    if base <= 0 or cand <= 0:
        raise ValueError("baseline and candidate need at least one positive count each")
    noise = max(
        spread or 0.0,
        aa_spread(baseline) if len(baseline) > 1 else 0.0,
        aa_spread(candidate) if len(candidate) > 1 else 0.0,
    )
    change = cand / base - 1.0
    margin = safety * noise
    verdict: Verdict
    if abs(change) < tolerance and not math.isclose(abs(change), tolerance, rel_tol=1e-9):
        verdict = "unchanged"
    elif abs(change) <= margin:
        verdict = "inconclusive"
    else:
        verdict = "regression" if change > 0 else "improvement"
    return InstructionVerdict(base, cand, change, noise, margin, tolerance, verdict)


def load_spreads(path: Path) -> dict[str, float]:
    """``{benchmark fullname: spread}`` from an A/A spreads file (``study aa --out``).

    Raises :class:`ValueError` naming ``path`` when the file is missing, unreadable, not
    JSON, not an A/A study file, or holds a spread that is not a finite number >= 0.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: A/A spreads file not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, Mapping) or data.get("format") != "samplemind-bench-instructions-aa":
        raise ValueError(f"{path}: not an instruction A/A study file")
    rows = data.get("benchmarks")
    if not isinstance(rows, Mapping):
        raise ValueError(f"{path}: 'benchmarks' must be an object")
    out: dict[str, float] = {}
    for name, row in rows.items():
        spread = row.get("spread") if isinstance(row, Mapping) else None
        if (
            not isinstance(spread, int | float)
            or isinstance(spread, bool)
            or not math.isfinite(spread)
            or spread < 0
        ):
            raise ValueError(f"{path}: benchmark {name!r}: 'spread' must be a number >= 0")
        out[str(name)] = float(spread)
    return out
