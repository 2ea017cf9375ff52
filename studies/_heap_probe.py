"""pytest plugin of the bimodal study: the heap's state at each pytest hook.

Loaded with ``-p studies._heap_probe``; at every hook below it records
``sys.getallocatedblocks()`` and the addresses of three fresh objects (a pymalloc block,
a 700-byte and a 9,000-byte bytes object, the last two from the C allocator), and writes
the timeline to ``$SAMPLEMIND_STUDY_HEAP_OUT`` at exit. Two processes whose timelines are
equal up to a hook ran on the same heap up to there.
"""

from __future__ import annotations

import os
import sys
from typing import Any

_rows: list[str] = []


def _mark(what: str) -> None:
    _rows.append(
        f"{what} {sys.getallocatedblocks()}:{id(object()):x}:{id(bytes(700)):x}:{id(bytes(9000)):x}"
    )


_AUDITED = (
    "import",
    "open",
    "subprocess.Popen",
    "os.scandir",
    "os.listdir",
    "os.mkdir",
    "os.remove",
)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in _AUDITED and len(_rows) < 200_000:
        first = str(args[0])[-60:] if args else ""
        _mark(f"audit {event} {first}".replace(" ", "_"))


if os.environ.get("SAMPLEMIND_STUDY_HEAP_AUDIT"):
    sys.addaudithook(_audit)


def pytest_addoption(parser: Any) -> None:
    _mark("addoption")


def pytest_plugin_registered(plugin: Any, manager: Any) -> None:
    _mark("registered " + str(getattr(plugin, "__name__", type(plugin).__name__)))


def pytest_configure(config: Any) -> None:
    _mark("configure")


def pytest_sessionstart(session: Any) -> None:
    _mark("sessionstart")


def pytest_collectstart(collector: Any) -> None:
    _mark("collectstart " + collector.name)


def pytest_collection_finish(session: Any) -> None:
    _mark("collected")


def pytest_runtest_setup(item: Any) -> None:
    _mark("setup " + item.name)


def pytest_runtest_call(item: Any) -> None:
    _mark("call " + item.name)


def pytest_runtest_teardown(item: Any) -> None:
    _mark("teardown " + item.name)


def pytest_unconfigure(config: Any) -> None:
    _mark("unconfigure")
    out = os.environ.get("SAMPLEMIND_STUDY_HEAP_OUT")
    if out:
        with open(out, "w") as fh:
            fh.write(f"pid {os.getpid()}\n" + "\n".join(_rows) + "\n")
