"""Environment fingerprints: can two benchmark results be compared at all?

Timings from another CPU model, core count, Python version or dependency version are not
evidence about the code. :func:`differences` lists what differs, in words a reviewer can act on.

>>> a = {"cpu": "EPYC", "cores": 2, "python": "3.11.7", "packages": {"orjson": "3.10"}}
>>> b = {"cpu": "EPYC", "cores": 4, "python": "3.11.7", "packages": {"orjson": "3.11"}}
>>> differences(a, b)
['cores: baseline 2, candidate 4', 'package orjson: baseline 3.10, candidate 3.11']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DEFAULT_IGNORED_PACKAGES", "FIELDS", "differences", "from_machine_info"]

FIELDS: tuple[str, ...] = ("cpu", "cores", "python")
"""Top-level environment fields that must match."""

DEFAULT_IGNORED_PACKAGES: frozenset[str] = frozenset({"samplemind-core", "samplemind_core"})
"""The code under test itself: its version changing is the point of the comparison."""


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def differences(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    *,
    fields: Iterable[str] = FIELDS,
    ignore_packages: Iterable[str] = DEFAULT_IGNORED_PACKAGES,
) -> list[str]:
    """Human-readable differences between two environment fingerprints (empty: comparable).

    A field missing on both sides is not a difference; missing on one side is. Packages are
    compared by normalised name over the union of both sides, except ``ignore_packages``.
    """
    out: list[str] = []
    for field in fields:
        b, c = baseline.get(field), candidate.get(field)
        if b is None and c is None:
            continue
        if str(b) != str(c):
            out.append(f"{field}: baseline {b}, candidate {c}")
    ignored = {_norm(p) for p in ignore_packages}
    b_pk = {_norm(k): str(v) for k, v in dict(baseline.get("packages") or {}).items()}
    c_pk = {_norm(k): str(v) for k, v in dict(candidate.get("packages") or {}).items()}
    for name in sorted((b_pk.keys() | c_pk.keys()) - ignored):
        bv, cv = b_pk.get(name, "(absent)"), c_pk.get(name, "(absent)")
        if bv != cv:
            out.append(f"package {name}: baseline {bv}, candidate {cv}")
    return out


def from_machine_info(machine_info: Mapping[str, Any]) -> dict[str, Any]:
    """Map a plain pytest-benchmark ``machine_info`` block onto the manifest's environment shape."""
    cpu = machine_info.get("cpu") or {}
    cpu_name = cpu.get("brand_raw") if isinstance(cpu, Mapping) else None
    cores = cpu.get("count") if isinstance(cpu, Mapping) else None
    env: dict[str, Any] = {
        "cpu": cpu_name or machine_info.get("processor") or None,
        "cores": cores,
        "python": machine_info.get("python_version"),
        "platform": machine_info.get("system"),
        "packages": {},
    }
    return env
