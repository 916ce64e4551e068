"""The read API end to end: real router, storage workers and gateway processes on loopback."""

from __future__ import annotations

import http.client as httpc
import json
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests._cluster import Cluster, http, wait_until
from zlog.protocol.hashing import partition_for

SERVICES = ["auth_service", "billing", "event_creator", "focus_allocator", "notification_service", "search"]
LEVELS = ["INFO", "WARN", "ERROR", "debug"]
T0 = int(time.time() * 1000) - 3_600_000
N = 900

pytestmark = pytest.mark.cluster


def make(i: int) -> dict[str, Any]:
    # Timestamps jitter so they are not monotonic in offset order within a partition.
    return {"timestamp": T0 + i * 1000 - (i % 5) * 1700, "service": SERVICES[i % len(SERVICES)],
            "level": LEVELS[i % 7 % 4], "message": f"rec-{i:05d} " + ("token expired" if i % 9 == 0 else "all good"),
            "labels": {"region": "eu" if i % 2 else "us", "i": str(i)}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Tiny segments and scan budgets: fetches cross segment boundaries, searches need several rounds.
    c = Cluster(tmp_path_factory.mktemp("reads"), env_extra={"ZLOG_STORAGE_SEGMENT_BYTES": "16384",
                                                            "ZLOG_STORAGE_SCAN_BUDGET_BYTES": "8192"})
    with c:
        for i in range(0, N, 100):
            status, body = c.post([make(j) for j in range(i, i + 100)])
            assert status == 200, body
        yield c


def get(c: Cluster, path: str, params: list[tuple[str, str]] | None = None) -> tuple[int, Any]:
    qs = "?" + urllib.parse.urlencode(params) if params else ""
    return c.get(path + qs)


def index(rec: dict[str, Any]) -> int:
    return int(rec["message"][4:9])


def page_all(c: Cluster, params: list[tuple[str, str]], limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        status, body = get(c, "/v1/logs", [*params, ("limit", str(limit))] + ([("cursor", cursor)] if cursor else []))
        assert status == 200, body
        assert len(body["records"]) <= limit
        out += body["records"]
        cursor = body["cursor"]
        if not body["more"]:
            return out
    raise AssertionError("paging did not end")


FILTERS: list[tuple[str, list[tuple[str, str]], Any]] = [
    ("everything", [], lambda r: True),
    ("one service", [("service", "billing")], lambda r: r["service"] == "billing"),
    ("two services", [("service", "billing"), ("service", "search")], lambda r: r["service"] in ("billing", "search")),
    ("levels", [("level", "error"), ("level", "DEBUG")], lambda r: r["level"].lower() in ("error", "debug")),
    ("contains", [("contains", "token expired")], lambda r: "token expired" in r["message"]),
    ("regex", [("regex", r"rec-0\d*7 ")], lambda r: re.search(r"rec-0\d*7 ", r["message"]) is not None),
    ("label", [("label.region", "eu")], lambda r: r["labels"]["region"] == "eu"),
    ("time range", [("since", str(T0 + 200_000)), ("until", str(T0 + 400_000))],
     lambda r: T0 + 200_000 <= r["timestamp"] <= T0 + 400_000),
    ("exclusions", [("-service", "billing"), ("-level", "info"), ("-label.region", "us")],
     lambda r: r["service"] != "billing" and r["level"] != "INFO" and r["labels"]["region"] != "us"),
    ("include and exclude", [("service", "billing"), ("service", "search"), ("-service", "search")],
     lambda r: r["service"] == "billing"),
    ("combined", [("service", "auth_service"), ("level", "INFO"), ("contains", "good")],
     lambda r: r["service"] == "auth_service" and r["level"] == "INFO" and "good" in r["message"]),
]


@pytest.mark.parametrize(("name", "params", "want"), FILTERS, ids=[f[0] for f in FILTERS])
def test_every_filter_pages_without_gaps_or_repeats(cluster: Cluster, name: str, params: list[tuple[str, str]],
                                                    want: Any) -> None:
    expected = {i for i in range(N) if want(make(i))}
    got = page_all(cluster, params, limit=37)
    ids = [index(r) for r in got]
    assert len(ids) == len(set(ids)), "a record was repeated"
    assert set(ids) == expected
    for r in got:
        stored = cluster.stored_records(r["partition"])[r["offset"]]
        assert {k: v for k, v in r.items() if k not in ("partition", "offset")} == stored
        assert partition_for(r["service"], 4) == r["partition"]


def test_first_page_is_newest_first_and_forward_is_oldest_first(cluster: Cluster) -> None:
    status, body = get(cluster, "/v1/logs", [("limit", "50")])
    assert status == 200
    recs = body["records"]
    # The page holds, per partition, its newest records in offset order (timestamps are not
    # monotonic in a partition), shown newest first.
    keys = [(r["timestamp"], r["partition"], r["offset"]) for r in recs]
    assert keys == sorted(keys, reverse=True)
    assert index(recs[0]) == max(range(N), key=lambda i: make(i)["timestamp"])
    for p in range(4):
        offs = sorted((r["offset"] for r in recs if r["partition"] == p), reverse=True)
        last = len(cluster.stored_records(p)) - 1
        assert offs == list(range(last, last - len(offs), -1))
    assert body["tail_cursor"] and body["direction"] == "backward"
    got = page_all(cluster, [("direction", "forward")], limit=101)
    assert sorted(index(r) for r in got) == list(range(N))


def test_service_filter_touches_only_its_partition(cluster: Cluster) -> None:
    status, body = get(cluster, "/v1/logs", [("service", "auth_service"), ("limit", "5")])
    assert status == 200
    assert body["partitions"] == [partition_for("auth_service", 4)] == [3]
    assert all(r["service"] == "auth_service" for r in body["records"])


@pytest.mark.parametrize(("params", "parameter"), [
    ([("limit", "0")], "limit"),
    ([("limit", "5001")], "limit"),
    ([("direction", "up")], "direction"),
    ([("since", "last tuesday")], "since"),
    ([("regex", "(")], "regex"),
    ([("cursor", "garbage")], "cursor"),
    ([("colour", "red")], "colour"),
])
def test_bad_parameters_are_400_naming_them(cluster: Cluster, params: list[tuple[str, str]], parameter: str) -> None:
    status, body = get(cluster, "/v1/logs", params)
    assert status == 400, body
    assert body["error"] == "BAD_PARAMETER" and body["parameter"] == parameter


def test_cursor_is_bound_to_its_filters(cluster: Cluster) -> None:
    _, body = get(cluster, "/v1/logs", [("service", "billing"), ("limit", "3")])
    status, err = get(cluster, "/v1/logs", [("service", "search"), ("cursor", body["cursor"])])
    assert status == 400 and err["parameter"] == "cursor"


def test_fetch_by_offset_across_segments(cluster: Cluster) -> None:
    p = partition_for("billing", 4)
    on_disk = [line for _, line in cluster.stored_lines(p)]
    assert len(list((cluster.data_dir / str(p)).glob("*.jsonl*"))) > 2  # plain and sealed segments
    got: list[dict[str, Any]] = []
    offset = 0
    while True:
        status, body = get(cluster, f"/v1/partitions/{p}/records", [("offset", str(offset)), ("limit", "23")])
        assert status == 200, body
        if not body["records"]:
            break
        got += body["records"]
        offset = body["next_offset"]
    assert [r["offset"] for r in got] == list(range(len(on_disk)))
    assert [{k: v for k, v in r.items() if k not in ("partition", "offset")} for r in got] == \
        [json.loads(line) for line in on_disk]
    assert get(cluster, "/v1/partitions/9/records")[0] == 404
    assert get(cluster, f"/v1/partitions/{p}/records", [("limit", "0")])[0] == 400


def test_context_window_across_a_segment_boundary(cluster: Cluster) -> None:
    """What the viewer's "show context" asks: N before and after an offset, in one FETCH."""
    p = partition_for("billing", 4)
    bases = sorted(int(f.stem) for f in (cluster.data_dir / str(p)).glob("*.jsonl"))
    stored = cluster.stored_records(p)
    for b in bases[1:3]:  # a record just past a segment start: half its context is in the previous segment
        for anchor in (b, b - 1):
            status, body = get(cluster, f"/v1/partitions/{p}/records", [("offset", str(anchor - 5)), ("limit", "11")])
            assert status == 200, body
            assert [r["offset"] for r in body["records"]] == list(range(anchor - 5, anchor + 6))
            assert [{k: v for k, v in r.items() if k not in ("partition", "offset")} for r in body["records"]] == \
                [stored[o] for o in range(anchor - 5, anchor + 6)]
            assert body["next_offset"] == anchor + 6


def test_partitions_and_services(cluster: Cluster) -> None:
    status, body = get(cluster, "/v1/partitions")
    assert status == 200
    parts = body["partitions"]
    assert [x["partition"] for x in parts] == [0, 1, 2, 3]
    assert [x["owner"] for x in parts] == [0, 0, 1, 1]
    assert sum(x["highest_offset"] + 1 for x in parts) >= N
    assert all(x["segments"] >= 1 and x["bytes"] > 0 for x in parts)
    status, body = get(cluster, "/v1/services")
    assert status == 200
    names = {s["name"]: s["partition"] for s in body["services"]}
    assert set(SERVICES) <= set(names)
    assert all(partition_for(n, 4) == p for n, p in names.items())


def test_original_query_api(cluster: Cluster) -> None:
    status, body = get(cluster, "/v1/query", [("service", "focus_allocator"), ("limit", "5")])
    assert status == 200
    mine = [make(i) for i in range(N) if make(i)["service"] == "focus_allocator"]
    newest = sorted(mine, key=lambda r: r["timestamp"])[-5:]
    assert [r["message"] for r in body] == [r["message"] for r in newest]
    assert all(set(r) >= {"timestamp", "service", "received_at"} for r in body)
    assert get(cluster, "/v1/query", [("service", "billing"), ("limit", "0")]) == (200, [])
    assert get(cluster, "/v1/query", [("service", "billing")])[0] == 400
    assert get(cluster, "/v1/query", [("service", "nobody"), ("limit", "3")]) == (200, [])
    assert get(cluster, "/v1/query", [("service", "billing"), ("limit", "-1")])[0] == 400


def test_original_query_takes_any_limit_and_serves_at_most_the_maximum(cluster: Cluster) -> None:
    status, headers, data = http("GET", cluster.url + "/v1/query?service=focus_allocator&limit=1000000")
    assert status == 200
    mine = sum(1 for i in range(N) if make(i)["service"] == "focus_allocator")
    assert len(json.loads(data)) == min(mine, 5000)
    assert headers.get("X-Zlog-Limit") == "5000"


class Sse:
    """A minimal text/event-stream reader over http.client."""

    def __init__(self, c: Cluster, params: list[tuple[str, str]], last_id: str | None = None) -> None:
        self.conn = httpc.HTTPConnection("127.0.0.1", c.http_port, timeout=10)
        headers = {"Last-Event-ID": last_id} if last_id else {}
        self.conn.request("GET", "/v1/tail?" + urllib.parse.urlencode(params), headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")

    def next_event(self) -> tuple[str, dict[str, Any]]:
        eid, data = "", ""
        while True:
            line = self.resp.readline().decode()
            if not line:
                raise EOFError
            line = line.rstrip("\n")
            if line.startswith("id: "):
                eid = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                return eid, json.loads(data)

    def close(self) -> None:
        self.conn.close()


def test_tail_delivers_within_a_second_and_resumes_without_loss(cluster: Cluster) -> None:
    params = [("service", "notification_service"), ("contains", "tail-test")]
    sse = Sse(cluster, params)
    try:
        status, _ = cluster.post([{"service": "notification_service", "message": "tail-test 1"},
                                  {"service": "notification_service", "message": "other"},
                                  {"service": "billing", "message": "tail-test elsewhere"}])
        assert status == 200
        t = time.monotonic()  # from the moment the records are stored
        eid, ev = sse.next_event()
        assert ev["message"] == "tail-test 1" and ev["partition"] == 2
        assert time.monotonic() - t < 1.0
    finally:
        sse.close()
    # Posted while nobody listens: a resume from the last id gets exactly these, once each.
    cluster.post([{"service": "notification_service", "message": f"tail-test {i}"} for i in (2, 3)])
    sse = Sse(cluster, params, last_id=eid)
    try:
        got = [sse.next_event()[1]["message"] for _ in range(2)]
        assert got == ["tail-test 2", "tail-test 3"]
        cluster.post([{"service": "notification_service", "message": "tail-test 4"}])
        _, ev = sse.next_event()
        assert ev["message"] == "tail-test 4"
    finally:
        sse.close()
    status, body = get(cluster, "/v1/tail", [("cursor", "bad")])
    assert status == 400 and body["parameter"] == "cursor"


def export(c: Cluster, params: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
    conn = httpc.HTTPConnection("127.0.0.1", c.http_port, timeout=30)
    try:
        conn.request("GET", "/v1/logs/export?" + urllib.parse.urlencode(params))
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(("params", "rows"), [
    ([("level", "error"), ("-service", "search")], 10_000),  # all of them, over many worker rounds
    ([], 333),  # cut at the bound, mid-page
    ([("direction", "forward"), ("label.region", "eu")], 5),
])
def test_export_streams_exactly_the_paged_records(cluster: Cluster, params: list[tuple[str, str]], rows: int) -> None:
    # The export pages as /v1/logs does with pages of min(rows, MAX_LIMIT) (which records make a
    # page, and their order, depend on its size when timestamps are not monotonic in offset).
    expected = page_all(cluster, params, limit=min(rows, 5000))[:rows]
    status, headers, data = export(cluster, [*params, ("limit", str(rows))])
    assert status == 200, data
    assert headers["Content-Type"].startswith("application/x-ndjson")
    assert headers.get("Transfer-Encoding") == "chunked" and "attachment" in headers["Content-Disposition"]
    lines = data.decode().splitlines()
    got = [json.loads(line) for line in lines]
    assert len(got) == min(rows, len(expected)) and got == expected
    assert data.endswith(b"\n") and "error" not in got[-1]
    if rows > len(expected):  # everything: the same set as small pages give
        assert sorted(map(index, got)) == sorted(map(index, page_all(cluster, params, limit=41)))


def test_export_refuses_bad_limits(cluster: Cluster) -> None:
    for bad in ("0", "x", "1000001"):
        status, _, data = export(cluster, [("limit", bad)])
        assert status == 400 and json.loads(data)["parameter"] == "limit"
    status, _, data = export(cluster, [("-message", "x")])
    assert status == 400 and json.loads(data)["parameter"] == "-message"


def test_ui_is_served(cluster: Cluster) -> None:
    # A browser's Accept; without text/html the root answers Elasticsearch clients (gateway.elastic).
    status, headers, data = http("GET", cluster.url + "/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<html" in data.lower()
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        status, headers, _ = http("GET", cluster.url + "/ui/" + name)
        assert status == 200 and headers["Content-Type"].startswith(kind)
    assert http("GET", cluster.url + "/ui/..%2Fread_api.py")[0] == 404
    assert http("GET", cluster.url + "/ui/nope.js")[0] == 404


def test_storage_failure_is_not_a_400(cluster: Cluster) -> None:
    cluster.kill("storage-1")
    try:
        wait_until(lambda: cluster.get("/ready")[0] == 503, 10, what="the worker to be declared dead")
        status, body = get(cluster, "/v1/logs", [("service", "auth_service")])
        assert status in (503, 504) and body["error"] in ("NO_OWNER", "TIMEOUT", "WORKER_LOST")
        status, body = get(cluster, "/v1/logs", [("service", "billing"), ("limit", "2")])
        assert status == 200 and len(body["records"]) == 2  # partition 0 is still served
        assert "partial" not in body
        # A search over every partition answers with the live ones, and says which are missing.
        status, body = get(cluster, "/v1/logs", [("limit", "50")])
        assert status == 200, body
        assert body["partial"] is True and body["more"] is True
        missing = {u["partition"] for u in body["unavailable"]}
        assert missing == {2, 3}  # worker 1's partitions
        assert body["records"] and all(r["partition"] in (0, 1) for r in body["records"])
        assert {u["error"] for u in body["unavailable"]} <= {"NO_OWNER", "TIMEOUT", "WORKER_LOST"}
        # A download never leaves partitions out silently: 503/504 before the first byte.
        status, _, data = export(cluster, [("limit", "50")])
        assert status in (503, 504) and json.loads(data)["error"] in ("NO_OWNER", "TIMEOUT", "WORKER_LOST"), data
        status, _, data = export(cluster, [("service", "billing"), ("limit", "3")])
        assert status == 200 and len(data.splitlines()) == 3  # one served partition is all it needs
    finally:
        cluster.start("storage-1")


def zlog(c: Cluster, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zlog", *args, "--url", c.url], env=c.env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_query_json_and_text(cluster: Cluster) -> None:
    r = zlog(cluster, "query", "--service", "billing", "--level", "ERROR", "--label", "region=eu",
             "--limit", "4", "--json")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    want = [make(i) for i in range(N) if make(i)["service"] == "billing" and make(i)["level"] == "ERROR"
            and make(i)["labels"]["region"] == "eu"]
    assert len(recs) == 4
    assert all(x["service"] == "billing" and x["level"] == "ERROR" for x in recs)
    assert {index(x) for x in recs} <= {index(w) for w in want}
    assert recs[-1]["offset"] > recs[0]["offset"]  # oldest first, newest last
    r = zlog(cluster, "query", "--contains", "token expired", "--limit", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all("token expired" in x and "\x1b[" not in x for x in lines)
    r = zlog(cluster, "query", "--regex", "(")
    assert r.returncode == 2 and "regex" in r.stderr


def test_cli_tail_follows(cluster: Cluster) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "zlog", "tail", "--service", "search", "--contains", "cli-tail",
                             "--json", "--url", cluster.url], env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: cluster.post([{"service": "search", "message": "cli-tail ping"}])[0] == 200
                   and proc.stdout is not None and "cli-tail" in proc.stdout.readline(), 20, interval=0.2,
                   what="zlog tail to print a posted record")
    finally:
        proc.terminate()
        proc.wait(10)


def test_tail_bulk_delivery_and_long_catch_up(cluster: Cluster) -> None:
    params = [("service", "event_creator"), ("contains", "bulk")]
    sse = Sse(cluster, params)
    try:
        for k in range(3):
            status, _ = cluster.post([{"service": "event_creator", "message": f"bulk {k}-{i}"} for i in range(1500)])
            assert status == 200
        got = [sse.next_event() for _ in range(4500)]
    finally:
        sse.close()
    assert [e[1]["message"] for e in got] == [f"bulk {k}-{i}" for k in range(3) for i in range(1500)]
    offsets = [e[1]["offset"] for e in got]
    assert offsets == sorted(offsets) and len(set(offsets)) == 4500
    # Resume from the middle: a catch-up longer than one SEARCH answer, exactly the rest.
    sse = Sse(cluster, params, last_id=got[999][0])
    try:
        rest = [sse.next_event()[1]["offset"] for _ in range(3500)]
    finally:
        sse.close()
    assert rest == offsets[1000:]
