"""The Elasticsearch bulk API against a real cluster, with the official Python client, unmodified."""

from __future__ import annotations

import calendar
import json
import time
import uuid

import pytest
from elasticsearch import Elasticsearch, helpers

from tests._cluster import Cluster, http
from tests._intake import exactly, records

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(intake_cluster: Cluster) -> Cluster:
    return intake_cluster


def utc_ms(y: int, mo: int, d: int, h: int, mi: int, s: int, ms: int) -> int:
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1000 + ms


def test_helpers_bulk_first_call_passes_the_product_check(cluster: Cluster) -> None:
    svc = f"es-{uuid.uuid4().hex[:6]}"
    es = Elasticsearch(cluster.url, request_timeout=10)  # its first call is the bulk: product check there
    now = int(time.time() * 1000)
    recent = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1000 - 60))
    actions = [
        {"_index": "app-logs", "_source": {"@timestamp": "2026-12-04T18:00:00.123+05:30", "message": "nested",
                                           "service": {"name": svc}, "log": {"level": "warning"},
                                           "http": {"status": 503, "method": "GET"}}},
        {"_index": "app-logs", "_id": "fixed-id", "_source": {"@timestamp": recent + "Z", "message": "dotted",
                                                              "service.name": svc, "log.level": "ERROR",
                                                              "tags": ["a", "b"]}},
        {"_op_type": "create", "_index": "app-logs", "_source": {"@timestamp": now, "message": "millis",
                                                                 "service.name": svc, "user": {"id": 7}}},
    ]
    ok, errors = helpers.bulk(es, actions)
    assert (ok, errors) == (3, [])
    assert es.ping() is True
    assert es.info()["version"]["number"].startswith("8.")
    got = exactly(cluster, svc, 3)
    by_msg = {r["message"]: r for r in got}
    nested = by_msg["nested"]
    assert nested["timestamp"] == utc_ms(2026, 12, 4, 12, 30, 0, 123)  # the +05:30 offset honoured
    assert nested["level"] == "WARN"
    assert nested["labels"] == {"index": "app-logs", "source": "elasticsearch"}
    assert nested["metadata"]["http.status"] == "503" and nested["metadata"]["http.method"] == "GET"
    dotted = by_msg["dotted"]
    assert dotted["level"] == "ERROR" and dotted["metadata"]["_id"] == "fixed-id"
    assert dotted["metadata"]["tags"] == '["a","b"]'
    assert by_msg["millis"]["timestamp"] == now and by_msg["millis"]["metadata"]["user.id"] == "7"


def test_bulk_items_fail_alone_in_elasticsearch_shape(cluster: Cluster) -> None:
    svc = f"es-items-{uuid.uuid4().hex[:6]}"
    es = Elasticsearch(cluster.url, request_timeout=10)
    body = [
        {"index": {"_index": "x"}}, {"message": "kept", "service.name": svc},
        {"update": {"_index": "x", "_id": "1"}}, {"doc": {"a": 1}},
        {"delete": {"_index": "x", "_id": "2"}},
        {"create": {"_index": "x"}}, {"message": "bad time", "service.name": svc, "@timestamp": "yesterday"},
        {"index": {"_index": "x"}}, {"message": "m" * (70 * 1024), "service.name": svc},
    ]
    resp = es.bulk(operations=body)
    assert resp["errors"] is True and isinstance(resp["took"], int)
    items = resp["items"]
    assert [next(iter(i)) for i in items] == ["index", "update", "delete", "create", "index"]
    assert [next(iter(i.values()))["status"] for i in items] == [201, 400, 400, 400, 400]
    first = items[0]["index"]
    assert first["result"] == "created" and first["_index"] == "x" and len(first["_id"]) == 20
    assert "@timestamp" in items[3]["create"]["error"]["reason"]
    got = exactly(cluster, svc, 1)
    assert got[0]["message"] == "kept" and got[0]["metadata"]["_id"] == first["_id"]


def test_bad_bulk_bodies_are_refused_whole(cluster: Cluster) -> None:
    svc = f"es-bad-{uuid.uuid4().hex[:6]}"
    ok_line = json.dumps({"message": "never", "service.name": svc}).encode()
    cases = [
        (b'{"index":{}}\n' + ok_line + b'\n{"index":{}}\n', "no source line"),
        (b"{not json\n" + ok_line + b"\n", "Malformed action"),
        (b'{"upsert":{}}\n' + ok_line + b"\n", "expected one of"),
        (b"\n\n", "no requests added"),
    ]
    for body, reason in cases:
        for method in ("POST", "PUT"):
            status, headers, data = http(method, cluster.url + "/logs/_bulk", body,
                                         {"Content-Type": "application/x-ndjson"})
            assert status == 400, data
            assert headers["X-Elastic-Product"] == "Elasticsearch"
            err = json.loads(data)
            assert reason in err["error"]["reason"] and err["status"] == 400
    status, headers, _ = http("POST", cluster.url + "/_bulk", ok_line, {"Content-Type": "text/plain"})
    assert status == 415 and headers["X-Elastic-Product"] == "Elasticsearch"
    time.sleep(0.2)
    assert records(cluster, svc) == []


def test_start_up_calls_and_the_root_for_browsers(cluster: Cluster) -> None:
    for path in ("/_license", "/_cat/templates", "/_index_template", "/_index_template/logs", "/_cluster/health"):
        status, headers, data = http("GET", cluster.url + path)
        assert status == 200 and headers["X-Elastic-Product"] == "Elasticsearch", path
        json.loads(data)
    status, headers, data = http("GET", cluster.url + "/", headers={"Accept": "text/html"})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    status, headers, data = http("HEAD", cluster.url + "/",
                                 headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=8"})
    assert status == 200 and headers["X-Elastic-Product"] == "Elasticsearch"
