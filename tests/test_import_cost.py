"""Importing the public surface must not drag in optional or harness-only packages.

Only module presence is checked (in a fresh interpreter); import *time* is a
benchmark concern, never a unit-test assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("aiohttp", "httpx_aiohttp", "redis.asyncio.cluster", "pandas", "matplotlib")
# redis >= 5's package __init__ imports redis.asyncio, which imports its cluster module:
# once anything imports redis, redis.asyncio.cluster is loaded. So the cluster rule can
# only hold for ``import samplemind_core`` (which must not import redis at all).
OPTIONAL = ("aiohttp", "httpx_aiohttp", "pandas", "matplotlib")

_PROBE = """
import json, sys
{stmt}
print(json.dumps([m for m in {forbidden!r} if m in sys.modules]))
"""


def _loaded(stmt: str, forbidden: tuple[str, ...] = FORBIDDEN) -> list[str]:
    code = _PROBE.format(stmt=stmt, forbidden=forbidden)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    result: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_import_package_loads_no_optional_modules() -> None:
    assert _loaded("import samplemind_core", (*FORBIDDEN, "redis", "httpx")) == []


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_import_public_names_loads_no_optional_modules() -> None:
    stmt = "from samplemind_core import AIManager, ResponseCache, Router, fingerprint"
    assert _loaded(stmt, OPTIONAL) == []


def test_import_router_and_manager_loads_no_redis_or_optional_modules() -> None:
    stmt = "from samplemind_core import AIManager, Router, Task, Priority"
    assert _loaded(stmt, (*FORBIDDEN, "redis", "aiolimiter")) == []


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_building_a_manager_loads_no_optional_modules() -> None:
    stmt = (
        "from samplemind_core import AIManager, Settings\n"
        "AIManager(Settings(redis_url='redis://127.0.0.1:1/0'))"
    )
    assert _loaded(stmt, OPTIONAL) == []


def test_the_probe_can_fail() -> None:
    # The check is real: a statement that does import a forbidden module is seen.
    assert _loaded("import redis.asyncio.cluster") == ["redis.asyncio.cluster"]


def test_router_and_its_pricing_catalog_load_no_httpx() -> None:
    # The router plans with the pricing catalog, never through the provider adapters.
    stmt = (
        "from samplemind_core import ChatRequest, Settings\n"
        "from samplemind_core.router import ModelCatalog, Router\n"
        "r = Router(catalog=ModelCatalog.from_settings(Settings()))\n"
        "req = ChatRequest(messages=[{'role': 'user', 'content': 'hi'}])\n"
        "assert r.plan('chat', 'speed', req) and Router().plan('tools', 'cost', req)"
    )
    assert _loaded(stmt, (*FORBIDDEN, "httpx", "redis", "samplemind_core.providers")) == []
