"""Headless Chromium driven over the DevTools protocol: the one driver of the browser tests (the
report page, `test_report_browser.py`; the trend page, `test_history_page.py`).

:func:`open_page` starts ``chromium --headless`` on a free DevTools port (its own profile folder),
opens one page and yields a :class:`Page` whose ``evaluate`` runs JavaScript in it and returns
the value; console errors, uncaught exceptions and error log entries are collected from before
navigation into ``Page.errors``. Chromium is stopped (its whole process group) on every way out.
Without chromium the test is skipped, and fails under ``CI`` (CI must run the browser tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from base64 import b64decode
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

__all__ = ["Page", "open_page"]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _need_chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium); CI must run it")
        pytest.skip("chromium is not installed: apt-get install chromium")
    return CHROMIUM


class Page:
    """One page over a DevTools websocket: commands with ids, events kept in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def _receive(self, deadline: float, during: str) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"devtools connection closed during {during}: {msg.type}")
        data: dict[str, Any] = json.loads(msg.data)
        if "method" in data:
            self.events.append(data)
        return data

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_str(json.dumps({"id": my_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + 60
        while True:
            data = await self._receive(deadline, method)
            if data.get("id") == my_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})

    async def wait_event(self, name: str) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            for e in self.events:
                if e["method"] == name:
                    return e
            await self._receive(deadline, f"waiting for {name}")

    async def evaluate(self, expression: str) -> Any:
        """The value of ``expression`` (JSON-serialisable); a thrown exception fails loudly."""
        res = await self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression!r:.80} threw: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def screenshot(self, selector: str | None = None) -> bytes:
        """A PNG of the element ``selector`` (its bounding box), or of the whole page."""
        if selector is None:
            metrics = await self.call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"]}
        else:
            clip = await self.evaluate(
                f"(function(){{var r=document.querySelector({json.dumps(selector)})"
                ".getBoundingClientRect();return {x:r.left+window.scrollX,y:r.top+window.scrollY,"
                "width:r.width,height:r.height};})()"
            )
        shot = await self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
        )
        return b64decode(shot["data"])

    @property
    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(f"uncaught: {p['exceptionDetails'].get('text')}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(f"console.{p['type']}: {p.get('args')}")
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out


@asynccontextmanager
async def open_page(html_file: Path, tmp: Path, *, width: int = 1400) -> AsyncIterator[Page]:
    """``html_file`` loaded (``load`` fired) in a fresh headless Chromium; see the module doc."""
    url = html_file.resolve().as_uri()  # noqa: ASYNC240 - a path computation
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any await
        [
            _need_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={tmp / 'chromium-profile'}",
            f"--window-size={width},1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        ws_url = None
        deadline = time.monotonic() + 60
        while ws_url is None and time.monotonic() < deadline:
            line = await asyncio.to_thread(proc.stderr.readline)
            if not line and proc.poll() is not None:
                break
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                ws_url = m.group(1)
        assert ws_url, "chromium did not start its DevTools endpoint"
        port = int(re.search(r":(\d+)/", ws_url).group(1))  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json()
            target = next(t for t in targets if t.get("type") == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                for domain in ("Runtime", "Log", "Page"):
                    await page.call(f"{domain}.enable")
                await page.call("Page.navigate", {"url": url})
                await page.wait_event("Page.loadEventFired")
                yield page
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
