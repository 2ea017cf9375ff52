"""The import graph between ``bench/`` subpackages (and ``reports``, ``studies``), from the AST of
every import, function-level ones included: ``python -m studies.import_graph [ROOT]``.

One line per importer: ``bench.history -> bench.ab_runner, bench.stats, ...``; imports of a
private module of ``samplemind_core`` are shown as ``samplemind_core(private:NAME)``.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

__all__ = ["graph", "main"]


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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1]
    for src, targets in sorted(graph(root).items()):
        print(f"{src:24s} -> {', '.join(sorted(targets))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
