"""The report builder's error, in a module of its own so that importing it costs no pandas."""

from __future__ import annotations

from bench.results import ResultsFormatError

__all__ = ["ReportInputError"]

ReportInputError = ResultsFormatError
"""A results file is missing, corrupt, or of a format this builder does not read: the results
reader's own error (one type for every command), ``path`` the offending file, ``problem`` what
is wrong; the message always starts with the path."""
