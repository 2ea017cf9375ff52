"""The report page rendered in headless Chromium: no broken image, no console error.

Chromium is driven over the DevTools protocol by the tests' one driver
(:func:`tests._browser.open_page`, a tiny client on aiohttp's websocket, which the trend
page's tests use too): console messages, uncaught exceptions and log entries are collected
from before navigation, every ``<img>`` is checked (``complete`` and
``naturalWidth > 0``), and a full-page screenshot is kept under
``test-artifacts/`` (git-ignored). A second test feeds the same checker a page
with a broken image and a console error, so the check is known to bite.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests._browser import open_page

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


@dataclass
class PageCheck:
    images: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["complete"] or i["naturalWidth"] <= 0]


_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  src: i.src.slice(0, 40), alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth})))"""


async def check_page(html_file: Path, tmp: Path) -> PageCheck:
    """Open ``html_file`` in headless Chromium; images, console errors and a full-page screenshot."""
    async with open_page(html_file, tmp, width=1280) as page:
        images = json.loads(await page.evaluate(_IMAGES_JS))
        screenshot = await page.screenshot()
        await page.evaluate("1")  # drain late events
        return PageCheck(images=images, errors=page.errors, screenshot=screenshot)


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
