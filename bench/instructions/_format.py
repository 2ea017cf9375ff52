"""The counts file one counting process writes and the runner reads (no pytest import here)."""

from __future__ import annotations

from typing import Final

__all__ = ["COUNTS_FILE", "COUNTS_FORMAT"]

COUNTS_FILE: Final = "counts.json"
COUNTS_FORMAT: Final = "samplemind-bench-instructions"
