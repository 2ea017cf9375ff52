"""The report builder: results folders → charts, ``index.html``, ``summary.md``, ``data.csv``.

Entry point: :func:`reports.build.main` (``samplemind-bench report RESULTS_DIR... --out DIR``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportInputError"]


def __getattr__(name: str) -> Any:
    """``ReportInputError`` (the results reader's error), imported when first asked for: the
    reader imports ``samplemind_core``, which ``report --help`` need not pay for."""
    if name == "ReportInputError":
        from ._errors import ReportInputError

        return ReportInputError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
