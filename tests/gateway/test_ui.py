"""The log explorer in a real headless Chromium (Debian's /usr/bin/chromium) against a real cluster.

``make test`` installs Debian's Chromium when it is missing (``tools/sysdeps.sh``); no browser is
ever downloaded. Where it still is missing the module is skipped, which fails the run under CI.
The screenshot lands in ``test-artifacts/ui.png`` (``ZLOG_UI_SCREENSHOT=docs/ui.png`` refreshes
the README's).

The chart and the facets draw what ``/v1/stats/volume`` and ``/v1/stats/values`` answer; these
tests hold the page to those answers and to the records posted, never to a copy of the page's math.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._browser import chromium
from tests._cluster import REPO, Cluster, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.cluster]
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = chromium()

# Every page runs under the gateway's Content-Security-Policy: waits are given as functions
# (compiled by the browser's debugger, never eval) and a CSP violation fails the test.
SERVICES = ["auth_service", "billing", "checkout", "search"]
LEVELS = ["INFO", "WARN", "ERROR", "DEBUG"]
MESSAGES = ["user login successful", "token refresh failed: expired", "payment captured",
            "slow query on orders (812 ms)", "cache miss for key session:42", "request completed 200"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ui"))
    with c:
        status, body = c.post(RECORDS)
        # 202: spooled while a worker was slow to answer (a loaded machine); stored moments later.
        assert status in (200, 202), body
        wait_until(lambda: c.get("/v1/logs?limit=100")[1]["count"] == len(RECORDS), 20, what="records stored")
        yield c


NOW = int(time.time() * 1000)
# One every 40 s from 40 minutes ago, then a burst (more often ERROR) of one every 5 s ten minutes
# ago, so the chart has buckets of different heights and stacks.
RECORDS = [{"timestamp": NOW - 2_400_000 + (i * 40_000 if i < 45 else 1_800_000 + (i - 45) * 5_000),
            "service": SERVICES[i % 4], "level": "ERROR" if i > 50 and i % 2 else LEVELS[i % 7 % 4],
            "message": MESSAGES[i % len(MESSAGES)], "labels": {"region": "eu-west", "pod": f"api-{i % 3}"}}
           for i in range(60)]


def query(page: Any) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)


CHART_SUM = "[...document.querySelectorAll('svg.plot rect.bar')].reduce((a, r) => a + Number(r.dataset.count), 0)"


def row_records(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("[...document.querySelectorAll('#rows tr.row')].map(r => r.record)")


def wait_rows(page: Any, cond: str) -> None:
    """Wait until the table's records (``recs``) satisfy a JS condition."""
    page.wait_for_function(
        f"() => {{ const recs = [...document.querySelectorAll('#rows tr.row')].map(r => r.record);"
        f" return recs.length > 0 && ({cond}); }}", timeout=10_000)


def test_viewer_lists_services_tails_live_and_searches(cluster: Cluster, page: Any) -> None:
    page.goto(cluster.url + "/?live=1")
    rows = page.locator("#rows tr.row")
    rows.first.wait_for(timeout=10_000)
    assert rows.count() == 60

    options = page.locator("#service option")
    page.wait_for_function("() => document.querySelectorAll('#service option').length > 4", timeout=10_000)
    assert set(SERVICES) <= set(options.all_inner_texts())

    # Live tail: a record posted now shows up without a reload.
    page.locator("body[data-live=open]").wait_for(state="attached", timeout=10_000)
    page.locator("svg.plot rect.bar").first.wait_for(timeout=10_000)
    charted = page.evaluate(CHART_SUM)
    status, _ = cluster.post([{"service": "checkout", "level": "ERROR",
                               "message": "card declined by issuer (live)", "labels": {"region": "us-east"}}])
    assert status == 200
    page.locator("#rows tr.row", has_text="card declined by issuer").wait_for(timeout=5_000)
    assert rows.count() == 61
    # ... and the chart counts it (its bucket bumped, or the chart refetched past its end).
    page.wait_for_function(f"() => ({CHART_SUM}) === {charted + 1}", timeout=5_000)

    # The search box narrows the table (server-side contains) and lands in the URL.
    page.fill("#search", "token refresh")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#rows tr.row')].length > 0 && "
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
    page.locator('tr.detail [data-act="context"]').click()
    page.locator(".context .ctx-line.anchor").wait_for(timeout=10_000)
    page.screenshot(path=str(out / "ui.png"))
    if os.environ.get("ZLOG_UI_SCREENSHOT"):
        shutil.copy(out / "ui.png", os.environ["ZLOG_UI_SCREENSHOT"])


def bars(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("""[...document.querySelectorAll('svg.plot rect.bar')].map(r => ({
        t: Number(r.dataset.t), key: r.dataset.key, count: Number(r.dataset.count),
        height: r.height.baseVal.value, y: r.y.baseVal.value, x: r.x.baseVal.value}))""")


def volume(cluster: Cluster, params: dict[str, str]) -> dict[str, Any]:
    status, body = cluster.get("/v1/stats/volume?" + urllib.parse.urlencode({**params, "step": "auto", "by": "level"}))
    assert status == 200, body
    return body


def test_chart_bars_follow_the_counts_and_a_drag_narrows_the_range(cluster: Cluster, page: Any) -> None:
    since = NOW - 3_000_000
    page.goto(cluster.url + f"/?since={since}")
    page.locator("svg.plot rect.bar").first.wait_for(timeout=10_000)
    drawn = bars(page)
    api = volume(cluster, {"since": str(since)})
    # One bar per non-zero (bucket, level), with the API's counts, and every posted record counted.
    want = {(b["t"], k): n for b in api["buckets"] for k, n in b["counts"].items() if n}
    assert {(b["t"], b["key"]): b["count"] for b in drawn} == want
    assert sum(b["count"] for b in drawn) == api["total"] >= len(RECORDS)
    # Heights follow the counts: one pixels-per-record scale for every bar, and the tallest stack
    # (the sum of its bars) is the tallest column drawn.
    scale = {round(b["height"] / b["count"], 6) for b in drawn}
    assert len(scale) == 1, scale
    assert len({b["count"] for b in drawn}) > 1  # the data has bars of different heights
    stacks: dict[int, list[dict[str, Any]]] = {}
    for b in drawn:
        stacks.setdefault(b["t"], []).append(b)
    for col in stacks.values():  # stacked: each bar starts where the one below it ends
        col.sort(key=lambda b: -b["y"])
        for lower, upper in itertools.pairwise(col):
            assert abs(upper["y"] + upper["height"] - lower["y"]) < 1e-3
    # Errors are drawn in the ERROR chip's color.
    fill, chip = page.evaluate("""[getComputedStyle(document.querySelector('svg.plot rect.bar.lv-error')).fill,
        getComputedStyle(document.querySelector('#levels .lv-error span')).getPropertyValue('color')]""")
    page.check("#levels input[value=ERROR]", force=True)
    chip = page.evaluate("getComputedStyle(document.querySelector('#levels .lv-error span')).color")
    assert fill == chip
    page.uncheck("#levels input[value=ERROR]", force=True)
    page.locator("svg.plot rect.bar.lv-info").first.wait_for(timeout=10_000)

    # Drag across the middle of the plot: the range narrows to what was selected, in the URL too.
    box = page.locator("svg.plot").bounding_box()
    x0, x1 = box["x"] + box["width"] * 0.45, box["x"] + box["width"] * 0.9
    y = box["y"] + box["height"] / 2
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, y, steps=4)
    page.mouse.move(x1, y, steps=4)
    page.mouse.up()
    page.wait_for_function("() => new URLSearchParams(location.search).has('until')", timeout=5_000)
    q = query(page)
    lo, hi = int(q["since"][0]), int(q["until"][0])
    assert api["start_ms"] <= since < lo < hi <= api["end_ms"] + api["step_ms"]
    assert hi - lo < (api["end_ms"] - api["start_ms"]) * 0.6
    wait_rows(page, f"recs.every(r => r.timestamp >= {lo} && r.timestamp <= {hi})")
    in_range = sorted(r["message"] + str(r["timestamp"]) for r in RECORDS if lo <= r["timestamp"] <= hi)
    assert sorted(r["message"] + str(r["timestamp"]) for r in row_records(page)) == in_range != []
    # The chart redraws for the new range (the API widens it to whole buckets).
    narrowed = volume(cluster, {"since": str(lo), "until": str(hi)})
    assert narrowed["total"] >= len(in_range) and narrowed["step_ms"] <= api["step_ms"]
    page.wait_for_function(
        "() => [...document.querySelectorAll('svg.plot rect.bar')].reduce((a, r) => a + Number(r.dataset.count), 0)"
        f" === {narrowed['total']}", timeout=5_000)
    assert page.locator(".fchip.time").count() == 1
    # A double-click zooms out: twice the counted range, around its middle (never past now).
    start, end = page.evaluate("() => [window.zlogChart.data.start_ms, window.zlogChart.data.end_ms]")
    page.locator("svg.plot").dblclick()
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('until') !== '{hi}'", timeout=5_000)
    q = query(page)
    lo2, hi2 = int(q["since"][0]), int(q["until"][0])
    assert abs((hi2 - lo2) - 2 * (end - start + 1)) <= 1 and lo2 < start and hi2 <= int(time.time() * 1000)


def test_facet_click_filters_and_shift_click_excludes(cluster: Cluster, page: Any) -> None:
    page.goto(cluster.url + "/")
    facet = page.locator('.facet[data-field="service"] li.fv[data-value="billing"]')
    facet.wait_for(timeout=10_000)
    status, api = cluster.get("/v1/stats/values?field=service&limit=8")
    assert status == 200, api
    shown = page.evaluate("""[...document.querySelectorAll('.facet[data-field="service"] li.fv')]
        .map(li => [li.dataset.value, li.querySelector('.n').textContent])""")
    assert shown == [[v["value"], f"{v['count']:,}"] for v in api["values"]]

    facet.click()
    wait_rows(page, "recs.every(r => r.service === 'billing')")
    assert query(page)["service"] == ["billing"]
    assert len(row_records(page)) == sum(1 for r in RECORDS if r["service"] == "billing")

    # Shift-click a label value: excluded, as a chip and in the URL.
    pod = page.locator('.facet[data-field="label.pod"] li.fv[data-value="api-1"]')
    pod.wait_for(timeout=10_000)
    pod.click(modifiers=["Shift"])
    wait_rows(page, "recs.every(r => r.service === 'billing' && r.labels.pod !== 'api-1')")
    assert query(page)["-label.pod"] == ["api-1"]
    assert len(row_records(page)) == sum(1 for r in RECORDS if r["service"] == "billing" and r["labels"]["pod"] != "api-1")
    assert page.locator(".fchip.neg", has_text="pod ≠ api-1").count() == 1
    page.locator('.facet[data-field="label.pod"] li.fv.exclude').first.wait_for(state="attached", timeout=5_000)
    # The download link carries the same filters.
    href = page.get_attribute("#download", "href")
    dq = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)
    assert href.startswith("/v1/logs/export?") and dq["service"] == ["billing"] and dq["-label.pod"] == ["api-1"]

    # Removing the chip brings the excluded rows back.
    page.locator(".fchip.neg button").click()
    wait_rows(page, "recs.some(r => r.labels.pod === 'api-1')")
    assert "-label.pod" not in query(page)


def test_context_opens_around_the_line_and_grows(cluster: Cluster, page: Any) -> None:
    page.goto(cluster.url + "/?service=checkout")
    rows = page.locator("#rows tr.row")
    rows.first.wait_for(timeout=10_000)
    target = rows.nth(5)
    rec = page.evaluate("r => r.record", target.element_handle())
    target.click()
    page.locator('tr.detail [data-act="context"]').click()
    anchor = page.locator(".context .ctx-line.anchor")
    anchor.wait_for(timeout=10_000)
    assert anchor.count() == 1 and anchor.get_attribute("data-offset") == str(rec["offset"])
    assert rec["message"] in anchor.inner_text()
    offsets = [int(o) for o in page.eval_on_selector_all(".context .ctx-line", "ls => ls.map(l => l.dataset.offset)")]
    low = max(0, rec["offset"] - 10)
    assert offsets == list(range(low, low + len(offsets)))
    assert offsets[-1] >= rec["offset"]
    # Neighbours by offset are the partition's records, other services included.
    stored = cluster.stored_records(rec["partition"])
    texts = page.eval_on_selector_all(".context .ctx-line .msg", "ls => ls.map(l => l.textContent)")
    assert texts == [stored[o]["message"] for o in offsets]
    if low > 0:
        page.locator('.context [data-act="above"]').click()
        page.wait_for_function(f"() => document.querySelector('.context .ctx-line').dataset.offset === '{max(0, low - 20)}'",
                               timeout=5_000)


def test_keyboard(cluster: Cluster, page: Any) -> None:
    page.goto(cluster.url + "/")
    rows = page.locator("#rows tr.row")
    rows.first.wait_for(timeout=10_000)
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") != "search"
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    assert page.locator("#rows tr.row.sel").count() == 1
    assert rows.nth(1).get_attribute("class").split().count("sel") == 1
    page.keyboard.press("Enter")
    assert page.locator("tr.detail").count() == 1 and rows.nth(1).evaluate("r => r.nextElementSibling.className") == "detail"
    page.keyboard.press("j")  # an open detail follows the selection
    assert rows.nth(2).evaluate("r => r.nextElementSibling.className") == "detail"
    assert page.locator("tr.detail").count() == 1
    page.keyboard.press("Escape")
    assert page.locator("tr.detail").count() == 0


def test_fields_are_text_never_markup(cluster: Cluster, page: Any) -> None:
    evil = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    status, _ = cluster.post([{"service": "xss<svc>", "level": "<i>ERROR</i>", "message": evil,
                               "labels": {"<k>": "<v>"}}])
    assert status == 200
    page.goto(cluster.url + "/?q=" + urllib.parse.quote("<b>bold</b>"))
    row = page.locator("#rows tr.row", has_text="bold")
    row.first.wait_for(timeout=10_000)
    row.first.click()
    page.locator('tr.detail [data-act="context"]').click()
    page.locator(".context .ctx-line.anchor").wait_for(timeout=10_000)
    assert page.evaluate("window.pwned") is None
    assert page.evaluate("document.querySelectorAll('img, td.msg b, .ctx-line b, p.message b, .facets i:not(.fill)').length") == 0
    assert evil in page.locator("#rows tr.row td.msg").first.inner_text()
    assert page.locator("tr.detail .chip", has_text="<k>=<v>").count() == 1


def test_download_saves_the_current_result_as_ndjson(cluster: Cluster, page: Any) -> None:
    page.goto(cluster.url + "/?level=ERROR&-service=search")
    wait_rows(page, "recs.every(r => r.level === 'ERROR' && r.service !== 'search')")
    page.fill("#export-limit", "7")
    with page.expect_download(timeout=10_000) as info:
        page.click("#download")
    path = info.value.path()
    got = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert info.value.suggested_filename.endswith(".ndjson")
    assert len(got) == 7 and all(r["level"] == "ERROR" and r["service"] != "search" for r in got)
    assert [(r["partition"], r["offset"]) for r in got] == \
        [(r["partition"], r["offset"]) for r in row_records(page)[:7]]  # the table's first rows, in order
