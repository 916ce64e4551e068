"""The viewer against a gateway with ``auth.mode = "token"``, in a real headless Chromium.

The page loads without a credential, asks for a token, and after signing in reads through the
session cookie: the table, the services, the live tail (an EventSource, which cannot carry an
Authorization header) and the download link.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._browser import chromium
from tests._cluster import Cluster, http, wait_until
from zlog.security import credentials

pytestmark = [pytest.mark.browser, pytest.mark.cluster]
pytest.importorskip("playwright.sync_api")
chromium()


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, str, str]]:
    root = Path(tmp_path_factory.mktemp("ui-token"))
    c = credentials.add_tenant(credentials.Credentials(), "acme", 1)
    c, write = credentials.create_token(c, "acme", "write", 1)
    c, read = credentials.create_token(c, "acme", "read", 1)
    credentials.save(root / "credentials.json", c)
    extra = f'\n[auth]\nmode = "token"\ncredentials_file = "{root / "credentials.json"}"\n'
    with Cluster(root, partitions=2, workers=1, toml_extra=extra) as cluster:
        records = [{"service": "signin-svc", "level": "INFO", "message": f"before sign-in {i}"} for i in range(5)]
        status, _, body = http("POST", cluster.url + "/v1/logs", json.dumps(records).encode(),
                               {"Content-Type": "application/json", "Authorization": f"Bearer {write}"})
        assert status in (200, 202), body
        yield cluster, write, read


def post(cluster: Cluster, token: str, message: str) -> int:
    status, _, _ = http("POST", cluster.url + "/v1/logs",
                        json.dumps([{"service": "signin-svc", "level": "WARN", "message": message}]).encode(),
                        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return status


def test_the_viewer_asks_for_a_token_then_reads_and_tails_through_its_session(
        signed: tuple[Cluster, str, str], page: Any) -> None:
    cluster, write, read = signed
    page.goto(cluster.url + "/?live=1")
    form = page.locator("#signin")
    form.wait_for(state="visible", timeout=10_000)
    assert page.locator("#rows tr.row").count() == 0

    page.fill("#signin input", "zlog_AAAAAAAAAAAA_" + "x" * 43)
    page.click("#signin button")
    page.locator("#signin .error", has_text="not valid").wait_for(timeout=10_000)
    assert form.is_visible()

    page.fill("#signin input", read)
    page.click("#signin button")
    form.wait_for(state="hidden", timeout=10_000)
    wait_until(lambda: page.locator("#rows tr.row").count() == 5, 10, what="the rows after signing in")
    assert page.locator("#signout").is_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["zlog_token"]["httpOnly"] and cookies["zlog_token"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # the token is out of the page's reach

    # The live tail runs on the cookie: a record posted now appears without a reload.
    page.locator("body[data-live=open]").wait_for(state="attached", timeout=10_000)
    assert post(cluster, write, "after sign-in, live") == 200
    page.locator("#rows tr.row", has_text="after sign-in, live").wait_for(timeout=10_000)

    # The download link is a plain GET the browser makes with the cookie.
    with page.expect_download(timeout=10_000) as info:
        page.click("#download")
    lines = Path(info.value.path()).read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["service"] == "signin-svc" for line in lines)

    # Signing out drops the cookie: the reloaded page asks again.
    page.click("#signout")
    page.locator("#signin").wait_for(state="visible", timeout=10_000)
    assert "zlog_token" not in {c["name"] for c in page.context.cookies()}
