"""Instructions per call beside wall time, from one results folder::

    python -m bench.instructions.summary DIR            # Markdown: headline figures + table

The figures themselves (:func:`instruction_rows`, :func:`headline_figures`, :data:`HEADLINES`,
:func:`markdown`) are computed once, in :mod:`bench.figures`, which the report and
``samplemind-bench headline`` use too; this module is the command and re-exports them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bench.figures import HEADLINES, headline_figures, instruction_rows, markdown

__all__ = ["HEADLINES", "headline_figures", "instruction_rows", "main", "markdown"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions.summary")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        rows = instruction_rows(args.folder)
    except ValueError as exc:  # the results reader's ResultsFormatError names the file
        parser.exit(2, f"{exc}\n")
    if not rows:
        parser.exit(2, f"{args.folder}: no instruction counts (run with --instructions)\n")
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
