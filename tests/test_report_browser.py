"""The report page rendered in headless Chromium: no broken image, no console error.

Chromium is driven over the DevTools protocol (a tiny client on aiohttp's
websocket): console messages, uncaught exceptions and log entries are collected
from before navigation, every ``<img>`` is checked (``complete`` and
``naturalWidth > 0``), and a full-page screenshot is kept under
``test-artifacts/`` (git-ignored). A second test feeds the same checker a page
with a broken image and a console error, so the check is known to bite.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageCheck:
    images: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["complete"] or i["naturalWidth"] <= 0]


def _need_chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is not installed (apt-get install chromium); CI must run the browser test"
            )
        pytest.skip("chromium is not installed: apt-get install chromium")
    return CHROMIUM


class _Cdp:
    """Minimal DevTools-protocol client: commands with ids, events into a list."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def call(
        self, method: str, params: dict[str, Any] | None = None, limit_s: float = 30
    ) -> Any:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send_str(json.dumps({"id": my_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + limit_s
        while True:
            msg = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"devtools connection closed during {method}: {msg.type}")
            data = json.loads(msg.data)
            if data.get("id") == my_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
            if "method" in data:
                self.events.append(data)

    async def wait_event(self, name: str, limit_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + limit_s
        while True:
            for e in self.events:
                if e["method"] == name:
                    return e
            msg = await self.ws.receive(timeout=max(deadline - time.monotonic(), 0.01))
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"devtools connection closed waiting for {name}")
            data = json.loads(msg.data)
            if "method" in data:
                self.events.append(data)


_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  src: i.src.slice(0, 40), alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth})))"""


async def check_page(html_file: Path, tmp: Path) -> PageCheck:
    """Open ``html_file`` in headless Chromium; images, console errors and a full-page screenshot."""
    url = html_file.resolve().as_uri()  # noqa: ASYNC240 - a path computation, no I/O worth a thread
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
            "--window-size=1280,900",
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
            page = next(t for t in targets if t.get("type") == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = _Cdp(ws)
                for domain in ("Runtime", "Log", "Page"):
                    await cdp.call(f"{domain}.enable")
                await cdp.call("Page.navigate", {"url": url})
                await cdp.wait_event("Page.loadEventFired")
                res = await cdp.call(
                    "Runtime.evaluate", {"expression": _IMAGES_JS, "returnByValue": True}
                )
                check = PageCheck(images=json.loads(res["result"]["value"]))
                metrics = await cdp.call("Page.getLayoutMetrics")
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                shot = await cdp.call(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {
                            "x": 0,
                            "y": 0,
                            "width": size["width"],
                            "height": size["height"],
                            "scale": 1,
                        },
                    },
                    limit_s=60,
                )
                check.screenshot = b64decode(shot["data"])
                await cdp.call("Runtime.evaluate", {"expression": "1"})  # drain late events
                for e in cdp.events:
                    p = e.get("params", {})
                    if e["method"] == "Runtime.exceptionThrown":
                        check.errors.append(f"uncaught: {p['exceptionDetails'].get('text')}")
                    elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in (
                        "error",
                        "assert",
                    ):
                        check.errors.append(f"console.{p['type']}: {p.get('args')}")
                    elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                        check.errors.append(
                            f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}"
                        )
                return check
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


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_report_page_renders_without_broken_images_or_errors(
    report_of_run_a_and_b: Path, tmp_path: Path
) -> None:
    out = report_of_run_a_and_b  # built once per session (tests/conftest.py); read only here
    html = (out / "index.html").read_text(encoding="utf-8")
    # self-contained: no external resource, no script
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "<link" not in html
    check = await check_page(out / "index.html", tmp_path)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-page.png").write_bytes(check.screenshot)
    assert len(check.images) == html.count("<figure"), check.images
    assert len(check.images) >= 8
    assert all(i["src"].startswith("data:image/png;base64,") for i in check.images)
    assert check.broken_images == []
    assert check.errors == []
    assert check.screenshot.startswith(b"\x89PNG")


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_checker_detects_broken_image_and_console_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="data:image/png;base64,AAAA" alt="x">'
        "<script>console.error('boom')</script></body></html>",
        encoding="utf-8",
    )
    check = await check_page(bad, tmp_path)
    assert len(check.broken_images) == 1
    assert any("boom" in e for e in check.errors)
