"""Fixtures of the viewer's browser tests: one headless Chromium per module, a page per test.

Every page runs under the gateway's Content-Security-Policy; an uncaught page error or a CSP
violation fails the test that opened the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests._browser import ARGS, chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium()
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    try:
        yield pg
        assert errors == []
    finally:
        pg.close()
