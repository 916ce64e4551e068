"""The log viewer in a real headless Chromium (Debian's /usr/bin/chromium) against a real cluster.

``make test`` installs Debian's Chromium when it is missing (``tools/sysdeps.sh``); no browser is
ever downloaded. Where it still is missing the module is skipped, which fails the run under CI. The screenshot lands in ``test-artifacts/ui.png``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cluster import REPO, Cluster

CHROMIUM = os.environ.get("ZLOG_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.cluster]
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

# wait_for_function evaluates strings, which the viewer's Content-Security-Policy forbids;
# tests/security/test_csp.py runs the viewer under its policy.
BYPASS_CSP = True
SERVICES = ["auth_service", "billing", "checkout", "search"]
LEVELS = ["INFO", "WARN", "ERROR", "DEBUG"]
MESSAGES = ["user login successful", "token refresh failed: expired", "payment captured",
            "slow query on orders (812 ms)", "cache miss for key session:42", "request completed 200"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ui"))
    with c:
        now = int(time.time() * 1000)
        records = [{"timestamp": now - (60 - i) * 1000, "service": SERVICES[i % 4], "level": LEVELS[i % 7 % 4],
                    "message": MESSAGES[i % len(MESSAGES)], "labels": {"region": "eu-west", "pod": f"api-{i % 3}"}}
                   for i in range(60)]
        status, body = c.post(records)
        assert status == 200, body
        yield c


def test_viewer_lists_services_tails_live_and_searches(cluster: Cluster) -> None:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800}, bypass_csp=BYPASS_CSP)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(cluster.url + "/?live=1")
            rows = page.locator("#rows tr.row")
            rows.first.wait_for(timeout=10_000)
            assert rows.count() == 60

            options = page.locator("#service option")
            page.wait_for_function("document.querySelectorAll('#service option').length > 4", timeout=10_000)
            assert set(SERVICES) <= set(options.all_inner_texts())

            # Live tail: a record posted now shows up without a reload.
            page.locator("body[data-live=open]").wait_for(state="attached", timeout=10_000)
            status, _ = cluster.post([{"service": "checkout", "level": "ERROR",
                                       "message": "card declined by issuer (live)", "labels": {"region": "us-east"}}])
            assert status == 200
            page.locator("#rows tr.row", has_text="card declined by issuer").wait_for(timeout=5_000)
            assert rows.count() == 61

            # The search box narrows the table (server-side contains) and lands in the URL.
            page.fill("#search", "token refresh")
            page.wait_for_function(
                "[...document.querySelectorAll('#rows tr.row')].length > 0 && "
                "[...document.querySelectorAll('#rows tr.row')].every(r => r.textContent.includes('token refresh'))",
                timeout=10_000)
            narrowed = rows.count()
            assert 0 < narrowed < 61
            assert "q=token+refresh" in page.url

            # An expanded detail row shows labels and the full JSON.
            rows.first.click()
            assert page.locator("tr.detail .chip", has_text="region").count() == 1

            page.fill("#search", "")
            page.locator("#rows tr.row", has_text="card declined").first.wait_for(timeout=10_000)
            out = REPO / "test-artifacts"
            out.mkdir(exist_ok=True)
            page.locator("#rows tr.row", has_text="card declined").first.click()
            page.screenshot(path=str(out / "ui.png"))
            if os.environ.get("ZLOG_UI_SCREENSHOT"):
                shutil.copy(out / "ui.png", os.environ["ZLOG_UI_SCREENSHOT"])
            assert errors == []
        finally:
            browser.close()
