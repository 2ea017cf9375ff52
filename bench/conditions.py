"""What the machine was doing while a suite ran: load, CPU time, steal, CPU frequency.

Separate runs on a shared machine differ by their environment as much as by their code. The
run command (:mod:`bench.harness.run`) takes a :func:`snapshot` before and after each suite's
pytest process and writes :func:`between` of the two into the suite's entry of the manifest
(``runs[i]["conditions"]``); the gate (:mod:`bench.gate.floor`) reads them back with
:func:`from_manifest` to tell whether two runs are comparable at all.

A suite's conditions (``between(before, after)``), every field ``None`` where the kernel does
not report it::

    {"version": 1,
     "wall_s": 41.2,                 # monotonic wall time between the snapshots
     "load_before": 1.31, "load_after": 2.49,   # 1-minute load average (os.getloadavg)
     "cpu_s": 39.0,                  # user+sys CPU of the suite's process tree (RUSAGE_CHILDREN
                                     # delta: the pytest process and the children it waited for)
     "cpu_per_wall": 0.95,           # cpu_s / wall_s: < 1 for a single-threaded suite that
                                     # waited for the CPU (or for I/O)
     "machine_busy": 1.7,            # CPUs busy machine-wide (/proc/stat, non-idle jiffies / s)
     "others_busy": 0.75,            # machine_busy minus this suite's own cpu_per_wall: other
                                     # processes' CPU on this machine during the suite
     "steal": 0.03,                  # fraction of the machine's CPU time stolen by the
                                     # hypervisor (/proc/stat steal delta / all jiffies)
     "cpu_mhz": 2793.4,              # mean current frequency over CPUs at the end
     "cpu_mhz_source": "scaling_cur_freq" | "/proc/cpuinfo" | "unreadable: ..."}

Manifests written before these fields existed have no ``conditions``: :func:`from_manifest`
returns an empty mapping, and readers say :data:`NOT_RECORDED` ("environment not recorded").
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "CONDITIONS_VERSION",
    "NOT_RECORDED",
    "Snapshot",
    "between",
    "cpu_mhz",
    "from_manifest",
    "snapshot",
]

CONDITIONS_VERSION: Final = 1
NOT_RECORDED: Final = "environment not recorded"
"""What a reader says of a run whose manifest has no conditions (written before 2026-12-06)."""

_PROC_STAT: Final = Path("/proc/stat")
_CPU_SYS: Final = Path("/sys/devices/system/cpu")
_PROC_CPUINFO: Final = Path("/proc/cpuinfo")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The machine at one moment; :func:`between` of two snapshots is what happened in between."""

    monotonic: float
    load1: float | None
    children_cpu_s: float
    jiffies: tuple[int, ...] | None
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq steal
    ...), or None where it cannot be read."""


def _read_jiffies(path: Path = _PROC_STAT) -> tuple[int, ...] | None:
    try:
        with path.open() as fh:
            for line in fh:
                if line.startswith("cpu "):
                    return tuple(int(x) for x in line.split()[1:])
    except (OSError, ValueError):
        return None
    return None


def snapshot() -> Snapshot:
    """Load average, the CPU time of this process's waited-for children, /proc/stat, now."""
    try:
        load1: float | None = os.getloadavg()[0]
    except OSError:
        load1 = None
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Snapshot(
        monotonic=time.monotonic(),
        load1=load1,
        children_cpu_s=ru.ru_utime + ru.ru_stime,
        jiffies=_read_jiffies(),
    )


def cpu_mhz(sys_root: Path = _CPU_SYS, cpuinfo: Path = _PROC_CPUINFO) -> tuple[float | None, str]:
    """The mean current CPU frequency in MHz and where it came from.

    ``scaling_cur_freq`` of every CPU (kHz) where cpufreq is exposed; else the ``cpu MHz``
    lines of /proc/cpuinfo (on a VM usually the nominal clock, so a weak signal); else
    ``(None, "unreadable: ...")``.
    """
    values: list[float] = []
    for path in sorted(sys_root.glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        try:
            values.append(int(path.read_text().strip()) / 1000.0)
        except (OSError, ValueError):
            continue
    if values:
        return round(sum(values) / len(values), 1), "scaling_cur_freq"
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith("cpu MHz"):
            try:
                values.append(float(line.split(":", 1)[1]))
            except ValueError:
                continue
    if values:
        return round(sum(values) / len(values), 1), "/proc/cpuinfo"
    return None, "unreadable: no cpufreq scaling_cur_freq and no 'cpu MHz' in /proc/cpuinfo"


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


def between(before: Snapshot, after: Snapshot, *, clock_ticks: int | None = None) -> dict[str, Any]:
    """The conditions of the interval between two snapshots (the module docstring's shape)."""
    wall = max(after.monotonic - before.monotonic, 0.0)
    cpu = max(after.children_cpu_s - before.children_cpu_s, 0.0)
    cpu_per_wall = cpu / wall if wall > 0 else None
    machine_busy = steal = others = None
    if before.jiffies is not None and after.jiffies is not None and wall > 0:
        delta = [a - b for a, b in zip(after.jiffies, before.jiffies, strict=False)]
        # guest and guest_nice (fields 9, 10) are already counted in user and nice
        counted = delta[:8]
        total = sum(counted)
        if total > 0:
            idle = counted[3] + (counted[4] if len(counted) > 4 else 0)
            stolen = counted[7] if len(counted) > 7 else 0
            hz = clock_ticks or os.sysconf("SC_CLK_TCK")
            machine_busy = (total - idle - stolen) / hz / wall
            steal = stolen / total
            if cpu_per_wall is not None:
                others = max(machine_busy - cpu_per_wall, 0.0)
    mhz, source = cpu_mhz()
    return {
        "version": CONDITIONS_VERSION,
        "wall_s": _round(wall),
        "load_before": _round(before.load1, 2),
        "load_after": _round(after.load1, 2),
        "cpu_s": _round(cpu),
        "cpu_per_wall": _round(cpu_per_wall),
        "machine_busy": _round(machine_busy),
        "others_busy": _round(others),
        "steal": _round(steal, 4),
        "cpu_mhz": mhz,
        "cpu_mhz_source": source,
    }


def from_manifest(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each suite's recorded conditions (suite -> conditions); empty when none were recorded.

    Entries that are not objects (a hand-written manifest) are left out, so a reader never
    trips on them; a suite without conditions is simply absent.
    """
    out: dict[str, dict[str, Any]] = {}
    runs = manifest.get("runs")
    if not isinstance(runs, list):
        return out
    for entry in runs:
        if not isinstance(entry, dict):
            continue
        cond = entry.get("conditions")
        suite = entry.get("suite")
        if isinstance(cond, dict) and isinstance(suite, str):
            out[suite] = dict(cond)
    return out
