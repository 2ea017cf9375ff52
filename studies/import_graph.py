"""The import graph between ``bench/`` subpackages (and ``reports``, ``studies``), from the AST of
every import, function-level ones included: ``python -m studies.import_graph [ROOT]``.

One line per importer: ``bench.history -> bench.ab_runner, bench.stats, ...``; imports of a
private module of ``samplemind_core`` are shown as ``samplemind_core(private:NAME)``. The last
line names every cycle (:func:`cycles`: units that import each other, directly or through
others) or says there is none; ``tests/test_import_graph.py`` holds the checkout to none.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

__all__ = ["cycles", "graph", "main"]


def _unit(parts: tuple[str, ...]) -> str:
    if parts[0] != "bench":
        return parts[0]
    return "bench." + parts[1].removesuffix(".py") if len(parts) > 1 else "bench"


def _target(name: str) -> str | None:
    p = name.split(".")
    if p[0] == "bench" and len(p) > 1:
        return "bench." + p[1]
    if p[0] in ("reports", "fixtures", "studies"):
        return p[0]
    private = [x for x in p[1:] if x.startswith("_") and x != "__init__"]
    if p[0] == "samplemind_core" and private:
        return "samplemind_core(private:" + ".".join(p[1:]) + ")"
    return None


def graph(root: Path) -> dict[str, set[str]]:
    """``{importer: {imported, ...}}`` between the units of the checkout at ``root``."""
    edges: dict[str, set[str]] = defaultdict(set)
    files = [f for d in ("bench", "reports", "studies") for f in sorted((root / d).rglob("*.py"))]
    for f in files:
        parts = f.relative_to(root).parts
        src, mod = _unit(parts), ".".join(parts).removesuffix(".py").split(".")
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = mod[: -node.level] if node.level else []
                module = [node.module] if node.module else []
                if node.module in (None, "bench"):
                    names = [".".join([*base, *module, a.name]) for a in node.names]
                else:
                    names = [".".join([*base, *module])]
            for name in names:
                tgt = _target(name)
                if tgt is not None and tgt != src:
                    edges[src].add(tgt)
    return dict(edges)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``edges``: each group of units that reach one another through
    imports (a strongly connected component of two or more units), sorted, smallest unit first.

    >>> cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    [['a', 'b', 'c']]
    >>> cycles({"a": {"b"}, "b": set()})
    []
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(unit: str) -> None:  # Tarjan's algorithm; the graph has a dozen units
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        on_stack.add(unit)
        for nxt in sorted(edges.get(unit, ())):
            if nxt not in index:
                visit(nxt)
                low[unit] = min(low[unit], low[nxt])
            elif nxt in on_stack:
                low[unit] = min(low[unit], index[nxt])
        if low[unit] == index[unit]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == unit:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for unit in sorted({*edges, *(t for ts in edges.values() for t in ts)}):
        if unit not in index:
            visit(unit)
    return sorted(found)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1]
    edges = graph(root)
    for src, targets in sorted(edges.items()):
        print(f"{src:24s} -> {', '.join(sorted(targets))}")
    found = cycles(edges)
    for group in found:
        print("cycle: " + " <-> ".join(group))
    if not found:
        print("no import cycle between these units")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
