"""``samplemind-bench profile``: the pipeline workload (:mod:`~bench.profile.workload`) under
memray and py-spy (:mod:`~bench.profile.run`), written as ``DIR/profile.json``."""

from __future__ import annotations

from bench.profile.run import PTRACE_HELP, find_py_spy, leak_verdict, main, speedscope_top

__all__ = ["PTRACE_HELP", "find_py_spy", "leak_verdict", "main", "speedscope_top"]
