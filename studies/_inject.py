"""The one code-injection helper of the studies: a known amount of work put into one function
of a throw-away checkout, so a study can ask whether a tool sees it (the gate's power, the
instruction gate's detection). Never used on the working tree.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

__all__ = ["MARK", "MAX_ITERATIONS", "inject_work"]

MAX_ITERATIONS: Final = 256
"""The default bound: ``range()`` yields cached small ints up to 256, so the loop allocates
nothing and adds the same instructions on every call (what an instruction count needs)."""

MARK: Final = "# injected by studies._inject"


def inject_work(
    tree: Path,
    module: str,
    function: str,
    iterations: int,
    *,
    max_iterations: int | None = MAX_ITERATIONS,
    setup: str | None = None,
    body: str = "pass",
) -> None:
    """Make ``function`` (``Class.method`` or a module function) in ``tree/module`` run
    ``iterations`` turns of a loop of ``body`` first thing on every call, after its docstring
    (0: the loop's set-up only). ``setup`` is a statement put before the loop; the loop's
    variable is ``_smb_study_i``. ``max_iterations=None`` lifts the bound (wall-time studies).

    Raises ``ValueError`` for iterations out of bounds, a module without ``function``, or a
    name that is not a function.
    """
    if iterations < 0 or (max_iterations is not None and iterations > max_iterations):
        bound = "" if max_iterations is None else f", {max_iterations}"
        raise ValueError(f"iterations must be in [0{bound}], got {iterations}")
    path = tree / module
    text = path.read_text(encoding="utf-8")
    scope: list[ast.stmt] = ast.parse(text).body
    node: ast.FunctionDef | ast.AsyncFunctionDef | None = None
    for part in function.split("."):
        found = [
            n
            for n in scope
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and n.name == part
        ]
        if not found:
            raise ValueError(f"{module} has no {function}")
        nxt = found[0]
        scope = nxt.body
        node = nxt if isinstance(nxt, ast.FunctionDef | ast.AsyncFunctionDef) else None
    if node is None:
        raise ValueError(f"{module}: {function} is not a function")
    stmts = node.body
    has_doc = (
        isinstance(stmts[0], ast.Expr)
        and isinstance(stmts[0].value, ast.Constant)
        and isinstance(stmts[0].value.value, str)
    )
    first = stmts[1] if has_doc and len(stmts) > 1 else stmts[0]
    lines = text.splitlines(keepends=True)
    indent = " " * first.col_offset
    loop = f"{indent}{setup}\n" if setup else ""
    loop += f"{indent}for _smb_study_i in range({iterations}):  {MARK}\n{indent}    {body}\n"
    lines.insert(first.lineno - 1, loop)
    path.write_text("".join(lines), encoding="utf-8")
