"""Instructions per call beside wall time, from one results folder (for the report).

::

    python -m bench.instructions.summary DIR            # Markdown: headline figures + table

:func:`instruction_rows` gives one row per counted benchmark (suite, group,
name, instructions per call, median seconds per call); :func:`headline_figures`
picks the figures the report leads with: instructions per cache hit (over
fakeredis, L1 off, and the L1 hit), per routing decision and per pipeline request
(the client-side CPU of one ``AIManager.complete()`` over the in-process mock).
The report builder reads the same rows (``extra_info["instructions"]``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.harness.results import read_manifest, require_complete

__all__ = ["HEADLINES", "headline_figures", "instruction_rows", "main", "markdown"]

HEADLINES: Final = (
    ("instructions per cache hit (fakeredis, msgpack, L1 off)", "cache", "hit-msgpack-l1_off"),
    ("instructions per L1 cache hit (msgpack)", "cache", "hit-msgpack-l1_on"),
    ("instructions per routing decision (chat/speed, healthy)", "router", "chat/speed/healthy"),
    ("instructions per pipeline request (client-side CPU, mock)", "pipeline", "mock-nocache"),
)
"""(label, suite, variant): the first counted benchmark of that suite and variant."""


def instruction_rows(folder: Path) -> list[dict[str, Any]]:
    """Every counted benchmark of a results folder, in file order."""
    manifest = require_complete(read_manifest(folder), folder / "manifest.json")
    rows: list[dict[str, Any]] = []
    for name in manifest["files"]:
        doc = json.loads((folder / name).read_text())
        for bench in doc.get("benchmarks", []):
            info = bench.get("extra_info", {})
            if "instructions" not in info:
                continue
            data = bench.get("stats", {}).get("data") or []
            rows.append(
                {
                    "suite": info.get("suite", name.removesuffix(".json")),
                    "group": bench.get("group"),
                    "name": bench["name"],
                    "variant": info.get("variant"),
                    "instructions": float(info["instructions"]),
                    "median_s": float(statistics.median(data)) if data else None,
                }
            )
    return rows


def headline_figures(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """``{label: instructions per call}`` for :data:`HEADLINES` (``None`` when not counted)."""
    out: dict[str, float | None] = {}
    for label, suite, variant in HEADLINES:
        match = [r for r in rows if r["suite"] == suite and r["variant"] == variant]
        out[label] = match[0]["instructions"] if match else None
    return out


def markdown(rows: Sequence[dict[str, Any]], *, heading: str = "##") -> str:
    """Headline figures, then the table: instructions per call beside median time."""
    lines = [f"{heading} Instructions per call (callgrind)", ""]
    for label, value in headline_figures(rows).items():
        lines.append(f"- {label}: " + ("not counted" if value is None else f"{value:,.0f}"))
    lines += [
        "",
        "| benchmark | instructions/call | median time | instructions/ns |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        t = r["median_s"]
        per_ns = f"{r['instructions'] / (t * 1e9):.2f}" if t else "n/a"
        time_text = f"{t * 1e6:,.2f} µs" if t else "n/a"
        lines.append(f"| {r['name']} | {r['instructions']:,.1f} | {time_text} | {per_ns} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions.summary")
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    try:
        rows = instruction_rows(args.folder)
    except ValueError as exc:
        parser.exit(2, f"{exc}\n")
    if not rows:
        parser.exit(2, f"{args.folder}: no instruction counts (run with --instructions)\n")
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
