"""Helpers shared by the test modules."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import inspect
import io
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

__all__ = [
    "LoopbackHTTP",
    "read_request",
    "require_module",
    "run_args",
    "run_main",
    "unrendered_charts",
    "until",
]


def require_module(name: str, reason: str) -> None:
    """Skip the calling test module when ``name`` is not installed, without importing it.

    ``pytest.importorskip`` at module level imports the package at collection, in every xdist
    worker, even when no test of the module is selected (SQLAlchemy: about 0.3 CPU s);
    ``find_spec`` only looks for it (decision 0640).
    """
    if importlib.util.find_spec(name) is None:
        import pytest

        pytest.skip(f"could not import {name!r}: {reason}", allow_module_level=True)


def _figure_digest(figure: Any) -> bytes:
    """What a figure shows, as text: each axes' title, labels, scales and plotted data."""
    from matplotlib.patches import Rectangle

    parts: list[object] = [figure.get_suptitle() if hasattr(figure, "get_suptitle") else ""]
    for ax in figure.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale()]
        parts += [ax.get_yscale(), [t.get_text() for t in ax.texts]]
        parts += [line.get_xydata().tolist() for line in ax.lines]
        parts += [
            (p.get_x(), p.get_y(), p.get_width(), p.get_height())
            for p in ax.patches
            if isinstance(p, Rectangle)
        ]
        parts += [c.get_offsets().tolist() for c in ax.collections]
    return repr(parts).encode()


def unrendered_charts(monkeypatch: Any) -> None:
    """Make ``build_report`` (and so ``samplemind-bench report``) skip drawing its charts'
    images: each ``charts/NAME.png`` and ``.svg`` holds a text digest of what the figure
    shows (titles, labels, plotted data) instead of a rendering, and the figure is closed.

    For tests that read a report's text, data and chart list, not its images: rendering is
    about two thirds of a report's CPU (decision 0980). ``tests/test_report_golden.py`` and
    ``tests/test_report_browser.py`` check the real images.
    """
    import matplotlib.pyplot as plt

    import reports.charts

    def save_digest(chart: Any, out: Path) -> tuple[Path, Path]:
        try:
            out.mkdir(parents=True, exist_ok=True)
            png, svg = out / f"{chart.name}.png", out / f"{chart.name}.svg"
            digest = _figure_digest(chart.figure)
            png.write_bytes(digest)
            svg.write_bytes(digest)
        finally:
            plt.close(chart.figure)
        return png, svg

    monkeypatch.setattr(reports.charts, "save_chart", save_digest)


async def until(
    check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 20.0, interval_s: float = 0.005
) -> None:
    """Poll ``check()`` (plain or async) every ``interval_s`` until it is truthy.

    Fails with ``TimeoutError`` after ``timeout_s``: a bounded poll, never a fixed wait.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval_s)


@contextlib.contextmanager
def _process_state(cwd: Path | None, env: Mapping[str, str] | None) -> Iterator[None]:
    """Run the body in ``cwd`` with exactly ``env`` as ``os.environ``; restore both after."""
    old_cwd = Path.cwd()
    old_env = dict(os.environ)
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def run_main(
    main: Callable[[list[str]], int | None],
    args: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    prog: str = "main",
) -> subprocess.CompletedProcess[str]:
    """Call a console script's ``main(argv)`` in this process, as a subprocess would run it.

    The result has the exit code (``SystemExit`` included, as the interpreter maps it), the
    text written to ``sys.stdout`` and ``sys.stderr``, and the arguments; ``cwd`` and ``env``
    (the whole environment, like ``subprocess.run(env=...)``) hold during the call only. An
    exception other than ``SystemExit`` propagates: the test fails with its traceback, where
    the script would have printed one. Tests use this instead of one interpreter per case and
    keep one real-subprocess smoke test per command.
    """
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with (
        _process_state(cwd, env),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code: object = main(argv)
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
    if code is None:
        returncode = 0
    elif isinstance(code, int):
        returncode = code
    else:  # SystemExit("message"): the interpreter prints it and exits 1
        err.write(f"{code}\n")
        returncode = 1
    return subprocess.CompletedProcess([prog, *argv], returncode, out.getvalue(), err.getvalue())


def run_args(out: Path, suites: Sequence[str], *, instructions: bool = False) -> argparse.Namespace:
    """The parsed arguments of ``samplemind-bench run --quick -q --suite SUITES --out OUT``, for
    calling :func:`bench.harness.run.run` in-process."""
    return argparse.Namespace(
        suites=list(suites),
        instructions=instructions,
        out=out,
        live=False,
        quick=True,
        verbose=False,
        quiet=True,
        pytest_args=[],
    )


class LoopbackHTTP:
    """A real HTTP/1.1 server on a free loopback port for a test; a subclass implements
    :meth:`handle` (one connection, from its first request to its end).

    ``start()`` / ``stop()`` or ``async with``; :attr:`url` is ``http://127.0.0.1:PORT``
    followed by the class's ``path``. On stop every connection's task is cancelled and
    awaited; a client that leaves (a cut or incomplete read) ends its connection quietly.
    """

    path = ""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The next request on a connection: its head (through the blank line) and its body
    (``content-length`` bytes); ``asyncio.IncompleteReadError`` when the client left."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length) if length else b""
