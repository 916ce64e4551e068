"""The viewer under its own Content-Security-Policy, fed records an attacker wrote.

Nothing in the page may violate the policy (no inline script or style, no eval), and markup in
any field must show as text: a record's service, level, message or labels never become HTML.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._browser import ARGS, chromium
from tests._cluster import Cluster

pytestmark = [pytest.mark.browser, pytest.mark.cluster]
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = chromium()

XSS = "<img src=x onerror=__pwned=1>"


def test_viewer_obeys_its_csp_and_escapes_every_field(tmp_path: Path) -> None:
    with Cluster(tmp_path, partitions=2, workers=1) as cluster:
        hostile = [{"service": f"svc{XSS}", "level": "<b>x</b>", "message": f"boom {XSS} <script>window.__pwned=2</script>",
                    "labels": {f"k{XSS}": f"v{XSS}"}}]
        status, body = cluster.post(hostile)
        assert status == 200, body
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page()
                violations: list[str] = []
                page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
                page.on("pageerror", lambda exc: violations.append(str(exc)))
                resp = page.goto(cluster.url + "/")
                assert resp is not None and "script-src 'self'" in resp.headers["content-security-policy"]
                row = page.locator("#rows tr.row").first
                row.wait_for(timeout=10_000)
                assert "<img" in row.inner_text()  # shown as text
                row.click()  # the detail view renders labels and the JSON too
                page.locator("#rows tr.detail").first.wait_for(timeout=5_000)
                assert page.locator("#rows img").count() == 0 and page.locator("#rows script").count() == 0
                assert page.evaluate("() => window.__pwned === undefined")
                assert not violations, violations
            finally:
                browser.close()
