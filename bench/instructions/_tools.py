"""The tools an instruction count needs, found (or reported missing) before anything runs.

Nothing here is needed at install time: ``valgrind`` and ``setarch`` are looked up on
``PATH`` when ``--instructions`` is asked for, and the client-request shim (a few lines of C
around the macros of ``valgrind/callgrind.h``) is compiled on first use with the system C
compiler into a per-user cache directory, then loaded through :mod:`ctypes`.

Every missing piece raises :class:`ToolMissing`, whose message names what is missing and
the Debian command that installs it; the command line turns it into exit status 2.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "APT_HINT",
    "SHIM_SOURCE",
    "Shim",
    "ToolMissing",
    "Tools",
    "cache_dir",
    "find_jemalloc",
    "find_tools",
    "load_shim",
]

APT_HINT: Final = (
    "install it with `apt-get install -y valgrind gcc` (Debian's valgrind ships callgrind.h)"
)

SHIM_SOURCE: Final = """\
/* samplemind-bench: callgrind client requests, reached through ctypes. */
#include <valgrind/callgrind.h>
int sm_running_on_valgrind(void) { return RUNNING_ON_VALGRIND; }
void sm_start_instrumentation(void) { CALLGRIND_START_INSTRUMENTATION; }
void sm_stop_instrumentation(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void sm_toggle_collect(void) { CALLGRIND_TOGGLE_COLLECT; }
void sm_zero_stats(void) { CALLGRIND_ZERO_STATS; }
void sm_dump_stats_at(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


JEMALLOC_HINT: Final = "install it with `apt-get install -y libjemalloc2`"

_JEMALLOC: Final = "libjemalloc.so.2"
_LIB_DIRS: Final = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)


class ToolMissing(RuntimeError):
    """A tool that ``--instructions`` needs is missing; the message says how to install it."""


@dataclass(frozen=True, slots=True)
class Tools:
    """Where the counting tools are, and the valgrind version (recorded beside each count)."""

    valgrind: str
    setarch: str
    shim: Path
    valgrind_version: str
    allocator: str
    """The malloc the counting process runs on (``LD_PRELOAD``): the path of jemalloc."""


def cache_dir() -> Path:
    """``$SAMPLEMIND_BENCH_CACHE`` or ``$XDG_CACHE_HOME/samplemind-bench`` or ``~/.cache/...``."""
    explicit = os.environ.get("SAMPLEMIND_BENCH_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "samplemind-bench"


def _which(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(f"{name} not found on PATH ({what}): {APT_HINT}")
    return path


def _compiler() -> str:
    name = os.environ.get("CC") or "cc"
    path = shutil.which(name)
    if path is None:
        raise ToolMissing(
            f"no C compiler ({name!r} not on PATH) to build the callgrind client-request shim: "
            f"{APT_HINT}"
        )
    return path


def build_shim(directory: Path | None = None) -> Path:
    """Compile the shim once (keyed by the source and compiler) and return the library's path.

    Concurrent builders are safe: each compiles into a private temporary file and
    renames it into place.
    """
    directory = directory or cache_dir()
    compiler = _compiler()
    digest = hashlib.sha256(f"{SHIM_SOURCE}\0{compiler}".encode()).hexdigest()[:16]
    target = directory / f"callgrind-shim-{digest}.so"
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        src = Path(tmp) / "shim.c"
        src.write_text(SHIM_SOURCE)
        lib = Path(tmp) / "shim.so"
        proc = subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()
            if "callgrind.h" in proc.stderr or "valgrind.h" in proc.stderr:
                raise ToolMissing(
                    f"the header valgrind/callgrind.h is missing ({compiler} says: "
                    f"{detail[0] if detail else 'no output'}): {APT_HINT}"
                )
            raise ToolMissing(
                f"{compiler} could not build the callgrind shim (exit {proc.returncode}): "
                + "\n".join(detail[-5:])
            )
        os.replace(lib, target)
    return target


def find_jemalloc() -> str:
    """The path of Debian's ``libjemalloc.so.2``. Raises ToolMissing.

    Counting processes run on jemalloc instead of glibc malloc: under glibc, whether a
    ``realloc`` grows in place or moves depends on the whole heap history, down to the
    lengths of the paths the process handled, so the same code counted in two checkouts
    differed by up to several percent (docs/measurements/2026-12-01-instruction-counts.md, section 7).
    """
    for directory in _LIB_DIRS:
        path = Path(directory) / _JEMALLOC
        if path.is_file():
            return str(path)
    raise ToolMissing(
        f"{_JEMALLOC} not found in {', '.join(_LIB_DIRS)} (counting processes run on jemalloc, "
        f"whose counts do not depend on the process's heap history): {JEMALLOC_HINT}"
    )


def find_tools() -> Tools:
    """Check valgrind, setarch, jemalloc, the compiler and the header; build the shim.

    Raises ToolMissing."""
    valgrind = _which("valgrind", "Valgrind counts the instructions")
    setarch = _which("setarch", "it turns address-space randomisation off; util-linux ships it")
    allocator = find_jemalloc()
    shim = build_shim()
    proc = subprocess.run(
        [valgrind, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise ToolMissing(f"{valgrind} --version failed (exit {proc.returncode}): {APT_HINT}")
    return Tools(valgrind, setarch, shim, proc.stdout.strip(), allocator)


class Shim:
    """The callgrind client requests (each one is a no-op outside Valgrind)."""

    def __init__(self, path: Path) -> None:
        lib = ctypes.CDLL(str(path))
        self.running_on_valgrind: int = int(lib.sm_running_on_valgrind())
        self.start_instrumentation = lib.sm_start_instrumentation
        self.stop_instrumentation = lib.sm_stop_instrumentation
        self.toggle_collect = lib.sm_toggle_collect
        self.zero_stats = lib.sm_zero_stats
        dump = lib.sm_dump_stats_at
        dump.argtypes = [ctypes.c_char_p]
        self._dump = dump
        for fn in (
            self.start_instrumentation,
            self.stop_instrumentation,
            self.toggle_collect,
            self.zero_stats,
        ):
            fn.argtypes = []
            fn.restype = None

    def dump_stats_at(self, name: str) -> None:
        self._dump(name.encode("utf-8", "replace"))


def load_shim(path: Path | None = None) -> Shim:
    """Load the shim (building it when ``path`` is not given)."""
    return Shim(path or build_shim())
