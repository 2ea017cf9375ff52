"""Where a figure came from: mocks, the emulator (with its latency scale), or live services.

Every claim and every headline of the report carries one of these labels beside its
number, so a figure measured against in-process mocks is never read as a figure of a real
service. The label is read from the run itself, benchmark by benchmark:

* ``params["world"]`` (``mocked`` / ``live``) where a suite records it (pipeline, load,
  stream), else the client suite's target in its group (``client/emulator-...`` /
  ``client/mock-...``), else the cache backend (``fakeredis`` is a mock; ``redis`` and
  ``cluster`` are real servers), else the manifest's ``mode``;
* ``extra_info["latency_scale"]`` for the emulator's / mock world's latency scale;
* ``extra_info["live_providers"]`` (providers the environment pointed at real services)
  turns "the emulator" into "live services" for those providers;
* hashing and fingerprint benchmarks are pure computation: "in-process, no service";
* ``extra_info["local_model"]`` (the stream suite against a model server the user named,
  bench/harness/local_server.py) is the model that answered and where:
  ``live local model gemma-3-270m-q4_k_m via llama.cpp (llama-cpp-python) at 127.0.0.1:8081``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from .data import Benchmark, Run

__all__ = ["COMPUTE", "benchmark_source", "source_label", "suites_label"]

COMPUTE: Final = "in-process, no service"
_PURE_SUITES: Final = frozenset({"hashing", "fingerprint", "instructions"})


def _scale(b: Benchmark) -> str:
    v = b.extra_info.get("latency_scale")
    return f", latency scale {v:g}" if isinstance(v, int | float) else ""


def benchmark_source(run: Run, b: Benchmark) -> str:
    """The source label of one benchmark (see the module docstring)."""
    if b.suite in _PURE_SUITES:
        return COMPUTE
    local = b.extra_info.get("local_model")
    if isinstance(local, Mapping) and isinstance(local.get("label"), str):
        return str(local["label"])
    if b.suite == "cache":
        backend = str(b.params.get("backend") or b.extra_info.get("backend") or "").lower()
        if backend == "fakeredis":
            return "mocks (in-process fakeredis)"
        if backend:
            return f"live services (local {'Redis Cluster' if 'cluster' in backend else 'redis-server'})"
    world = str(b.params.get("world") or "").lower()
    if not world and b.suite == "client":
        target = b.group.split("/", 1)[-1].lower()
        world = (
            "live"
            if target.startswith("emulator")
            else "mocked"
            if target.startswith("mock")
            else ""
        )
    world = world or run.mode.lower()
    live = b.extra_info.get("live_providers")
    if world == "live" and isinstance(live, list | tuple) and live:
        return f"live services ({', '.join(sorted(str(p) for p in live))})"
    if world == "live":
        return f"the emulator{_scale(b)}"
    if world in ("mocked", "mock"):
        return f"mocks{_scale(b)}"
    return "source not recorded"


def source_label(run: Run, benches: Iterable[Benchmark]) -> str:
    """One label for a set of benchmarks: their distinct sources joined, in a fixed order."""
    seen = sorted({benchmark_source(run, b) for b in benches})
    return " + ".join(seen) if seen else "source not recorded"


def suites_label(run: Run, suites: Iterable[str]) -> str:
    """:func:`source_label` of every benchmark of ``suites`` in ``run``."""
    return source_label(run, [b for s in suites for b in run.suite(s)])
