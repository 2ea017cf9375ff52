"""Collecting the tests imports no report, statistics or database library (decision 0640).

Every xdist worker imports every test module, conftest and plugin, and what they import at
their top level, before it runs a test; scipy, pandas, matplotlib and SQLAlchemy cost about
2 CPU s there. Only the tests that use them import them (inside the test or fixture).

The fast check reads the sources (``ast``): from every test module and conftest under the
``testpaths`` and the plugins they name, it follows the imports that run when a module is
imported (module level, class bodies, ``try``/``if`` blocks; not function bodies, not
``if TYPE_CHECKING:``) through this project's packages, and names the chain that reaches a
heavy library. The slow check collects the fast tier in a real pytest process and reads its
``sys.modules``: what the source check cannot see (an ``importlib.import_module`` call, a
third-party plugin).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("tests", "bench", "reports", "fixtures", "samplemind_core", "conftest")
HEAVY = ("scipy", "pandas", "matplotlib", "sqlalchemy")


def _module_file(root: Path, name: str) -> Path | None:
    """The source file of project module ``name`` under ``root``, or None (not ours)."""
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _eager_imports(tree: ast.Module, name: str, is_package: bool) -> list[str]:
    """Module names imported when module ``name`` (parsed as ``tree``) is imported."""
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue  # runs when called, not at import
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    package = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{node.module}" if node.module else package
                else:
                    base = node.module or ""
                found.append(base)
                found.extend(f"{base}.{alias.name}" for alias in node.names)  # submodules
            elif (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "pytest_plugins" for t in node.targets)
                and isinstance(node.value, ast.List | ast.Tuple)
            ):
                found.extend(
                    e.value
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    visit([s for s in inner if isinstance(s, ast.stmt)])
                    for h in inner:
                        if isinstance(h, ast.ExceptHandler | ast.match_case):
                            visit(h.body)

    visit(tree.body)
    return found


def heavy_chains(root: Path, start: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Each chain of eager imports from a module of ``start`` to a library of ``heavy``."""
    parent: dict[str, str | None] = {}
    queue: deque[str] = deque()
    for name in start:
        parent[name] = None
        queue.append(name)
    chains: list[str] = []
    while queue:
        name = queue.popleft()
        path = _module_file(root, name)
        if path is None:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for imported in _eager_imports(tree, name, path.name == "__init__.py"):
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                mod = ".".join(parts[:i])
                if mod in parent:
                    continue
                parent[mod] = name
                if mod in heavy:
                    chain, at = [mod], name
                    while at is not None:
                        chain.append(at)
                        at = parent[at]
                    chains.append(" <- ".join(chain))
                elif parts[0] in PROJECT or _module_file(root, mod) is not None:
                    queue.append(mod)
    return sorted(chains)


def _collected_modules(root: Path) -> list[str]:
    """The root conftest and every test module and conftest of ``pytest.ini``'s testpaths."""
    names = ["conftest"]
    for top in ("tests", "bench"):
        for path in sorted((root / top).rglob("*.py")):
            if path.name == "conftest.py" or path.name.startswith("test_"):
                rel = path.relative_to(root).with_suffix("")
                names.append(".".join(rel.parts))
    return names


def test_collection_imports_no_heavy_library() -> None:
    start = _collected_modules(ROOT)
    assert "tests.test_report_data" in start and "bench.suites.conftest" in start
    assert heavy_chains(ROOT, start) == []


def test_the_check_follows_eager_imports_and_skips_deferred_ones(tmp_path: Path) -> None:
    pkg = tmp_path / "tests"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "test_eager.py").write_text("from . import helper\n")
    (pkg / "helper.py").write_text("try:\n    import pandas as pd\nexcept ImportError:\n    pass\n")
    (pkg / "test_class.py").write_text("class T:\n    from matplotlib import pyplot\n")
    (pkg / "test_plugin.py").write_text('pytest_plugins = ["tests.plugin"]\n')
    (pkg / "plugin.py").write_text("from scipy.stats import norm\n")
    (pkg / "test_lazy.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import pandas\nelse:\n    import json\n"
        "def test_x():\n    import scipy, matplotlib, sqlalchemy\n"
        "async def test_y():\n    import pandas\n"
    )
    chains = heavy_chains(tmp_path, ["tests.test_lazy"])
    assert chains == []
    chains = heavy_chains(
        tmp_path, ["tests.test_eager", "tests.test_class", "tests.test_plugin", "tests.test_lazy"]
    )
    assert chains == [
        "matplotlib <- tests.test_class",
        "pandas <- tests.helper <- tests.test_eager",
        "scipy <- tests.plugin <- tests.test_plugin",
    ]


_ARGS = ("-p", "no:xdist", "-p", "collection_probe", "-m", "not slow")
_PROBE = """
import json, os, sys

def pytest_collection_finish(session):
    with open(os.environ["LAZYIMP_PROBE_OUT"], "w") as f:
        json.dump({"items": len(session.items), "modules": sorted(sys.modules)}, f)
"""


@pytest.mark.slow
def test_collecting_the_fast_tier_loads_no_heavy_library(tmp_path: Path) -> None:
    """Ground truth: a real ``pytest --collect-only -m "not slow"`` of the testpaths."""
    (tmp_path / "collection_probe.py").write_text(_PROBE)
    out = tmp_path / "modules.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "LAZYIMP_PROBE_OUT": str(out),
    }
    env.pop("PYTEST_XDIST_WORKER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *_ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    seen = json.loads(out.read_text())
    assert seen["items"] > 1000
    assert [m for m in HEAVY if m in seen["modules"]] == []
