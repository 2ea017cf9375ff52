"""The report builder's error, in a module of its own so that importing it costs no pandas."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ReportInputError"]


class ReportInputError(ValueError):
    """A results file is missing, corrupt, or of a format this builder does not read.

    The message always starts with the path of the offending file.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
