"""The report builder: results folders → charts, ``index.html``, ``summary.md``, ``data.csv``.

Entry point: :func:`reports.build.main` (``samplemind-bench report RESULTS_DIR... --out DIR``).
"""

from ._errors import ReportInputError

__all__ = ["ReportInputError"]
