"""Loki's query API end to end on real processes: shapes as Loki documents them, counts checked exactly."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._cluster import REPO, Cluster

SERVICES = ["auth_service", "billing", "search"]
LEVELS = ["INFO", "ERROR", "WARN"]
NOW_MS = int(time.time() * 1000)
T0 = (NOW_MS - 1_800_000) // 60_000 * 60_000  # half an hour ago, on a minute
N = 600

pytestmark = pytest.mark.cluster


def make(i: int) -> dict[str, Any]:
    status = [200, 404, 500, 503][i % 4]
    return {"timestamp": T0 + i * 2_500, "service": SERVICES[i % 3], "level": LEVELS[i % 5 % 3],
            "message": orjson.dumps({"msg": f"req {i}" + (" token expired" if i % 6 == 0 else ""),
                                     "status": status, "user": {"id": f"u{i % 4}"}}).decode(),
            "labels": {"region": ["eu", "us"][i % 2]}}


RECORDS = [make(i) for i in range(N)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("lokiq"), env_extra={"ZLOG_STORAGE_SEGMENT_BYTES": "32768",
                                                            "ZLOG_STORAGE_SCAN_BUDGET_BYTES": "16384"})
    with c:
        for i in range(0, N, 150):
            c.store(RECORDS[i:i + 150], f"lokiq-{i}")
        yield c


def get(c: Cluster, path: str, params: list[tuple[str, str]]) -> tuple[int, Any]:
    return c.get(path + "?" + urllib.parse.urlencode(params))


def ns(ms: int) -> str:
    return str(ms * 1_000_000)


RANGE = [("start", ns(T0)), ("end", ns(T0 + N * 2_500))]


def test_log_query_streams_shape_and_order(cluster: Cluster) -> None:
    status, body = get(cluster, "/loki/api/v1/query_range",
                       [("query", '{service="auth_service", level="ERROR"} |= "token"'), *RANGE, ("limit", "1000")])
    assert status == 200, body
    assert body["status"] == "success" and body["data"]["resultType"] == "streams"
    assert "summary" in body["data"]["stats"]
    want = [r for r in RECORDS if r["service"] == "auth_service" and r["level"] == "ERROR" and "token" in r["message"]]
    (stream,) = body["data"]["result"]
    assert stream["stream"] == {"service": "auth_service", "level": "ERROR", "region": stream["stream"]["region"]}
    got = [(int(t), line) for t, line in stream["values"]]
    assert got == sorted(((r["timestamp"] * 1_000_000, r["message"]) for r in want), reverse=True)
    assert all(isinstance(t, str) for t, _ in stream["values"])


def test_log_query_limit_forward_json_filter_and_line_format(cluster: Cluster) -> None:
    q = '{service=~"auth_service|billing"} | json | status >= 500 and user_id="u3" | line_format "{{.msg}} -> {{.status}}"'
    status, body = get(cluster, "/loki/api/v1/query_range", [("query", q), *RANGE, ("limit", "7"), ("direction", "forward")])
    assert status == 200, body
    want = [r for r in RECORDS if r["service"] in ("auth_service", "billing")
            and orjson.loads(r["message"])["status"] >= 500 and orjson.loads(r["message"])["user"]["id"] == "u3"][:7]
    got = sorted((int(t), line, s["stream"]["status"]) for s in body["data"]["result"] for t, line in s["values"])
    assert got == [(r["timestamp"] * 1_000_000, f'{orjson.loads(r["message"])["msg"]} -> '
                    f'{orjson.loads(r["message"])["status"]}', str(orjson.loads(r["message"])["status"])) for r in want]


def test_metric_query_range_matrix_counts(cluster: Cluster) -> None:
    q = 'sum by (level) (count_over_time({region="eu"} |= "req" [1m]))'
    start, end = T0 + 60_000, T0 + 20 * 60_000
    status, body = get(cluster, "/loki/api/v1/query_range", [("query", q), ("start", ns(start)), ("end", ns(end)),
                                                             ("step", "60")])
    assert status == 200, body
    data = body["data"]
    assert data["resultType"] == "matrix"
    got = {s["metric"]["level"]: {t: int(v) for t, v in s["values"]} for s in data["result"]}
    want: dict[str, dict[int, int]] = {}
    for t in range(start, end + 1, 60_000):
        c = Counter(r["level"] for r in RECORDS if r["labels"]["region"] == "eu" and t - 60_000 < r["timestamp"] <= t)
        for lv, n in c.items():
            want.setdefault(lv, {})[t // 1000] = n
    assert got == want
    for s in data["result"]:
        assert all(isinstance(t, int) and isinstance(v, str) for t, v in s["values"])


def test_instant_health_check_and_topk(cluster: Cluster) -> None:
    status, body = get(cluster, "/loki/api/v1/query", [("query", "vector(1)+vector(1)"), ("time", str(NOW_MS // 1000))])
    assert status == 200, body
    assert body["data"]["resultType"] == "vector"
    assert body["data"]["result"] == [{"metric": {}, "value": [NOW_MS // 1000, "2"]}]
    status, body = get(cluster, "/loki/api/v1/query", [("query", "1 + 2 * 3"), ("time", "1700000000")])
    assert body["data"] == {"resultType": "scalar", "result": [1700000000, "7"], "stats": body["data"]["stats"]}
    at = T0 + N * 2_500
    q = 'topk(2, sum by (service) (rate({region=~".+"}[30m])))'
    status, body = get(cluster, "/loki/api/v1/query", [("query", q), ("time", ns(at))])
    assert status == 200, body
    counts = Counter(r["service"] for r in RECORDS if at - 1_800_000 < r["timestamp"] <= at)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    got = sorted((s["metric"]["service"], float(s["value"][1])) for s in body["data"]["result"])
    want = sorted((svc, n / 1800) for svc, n in top)
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1] for g in got] == pytest.approx([w[1] for w in want])


def test_labels_values_series_and_index_stats(cluster: Cluster) -> None:
    status, body = get(cluster, "/loki/api/v1/labels", RANGE)
    assert status == 200 and body == {"status": "success", "data": ["level", "region", "service"]}
    status, body = get(cluster, "/loki/api/v1/label/service/values", RANGE)
    assert body["data"] == sorted(SERVICES)
    status, body = get(cluster, "/loki/api/v1/label/level/values", [*RANGE, ("query", '{service="billing"}')])
    assert body["data"] == sorted({r["level"] for r in RECORDS if r["service"] == "billing"})
    status, body = get(cluster, "/loki/api/v1/series", [*RANGE, ("match[]", '{service="search"}'),
                                                        ("match[]", '{level="WARN", region="eu"}')])
    assert status == 200, body
    want = {(r["service"], r["level"], r["labels"]["region"]) for r in RECORDS
            if r["service"] == "search" or (r["level"] == "WARN" and r["labels"]["region"] == "eu")}
    assert sorted((s["service"], s["level"], s["region"]) for s in body["data"]) == sorted(want)
    status, body = get(cluster, "/loki/api/v1/index/stats", [*RANGE, ("query", '{service="billing"}')])
    assert status == 200, body
    billing = [r for r in RECORDS if r["service"] == "billing"]
    assert body["entries"] == len(billing) and body["streams"] == len({(r["level"], r["labels"]["region"]) for r in billing})
    assert body["bytes"] == sum(len(r["message"].encode()) for r in billing)
    status, body = get(cluster, "/loki/api/v1/status/buildinfo", [])
    assert status == 200 and body["version"]
    status, body = get(cluster, "/ready", [])  # Loki's readiness probe: 200 once every partition has an owner
    assert status == 200 and body["ready"] is True


@pytest.mark.parametrize(("query", "needle"), [
    ('{service="x"', "col 13"),
    ('{service="x"} | pattern "<a>"', "unsupported pipeline stage | pattern"),
    ("quantile_over_time(0.5, {a=\"b\"} | unwrap x [1m])", "unsupported function quantile_over_time"),
    ('{service="x"}[5m]', "needs a function"),
])
def test_bad_queries_are_400_naming_the_problem(cluster: Cluster, query: str, needle: str) -> None:
    status, body = get(cluster, "/loki/api/v1/query_range", [("query", query)])
    assert status == 400, body
    assert needle in body["message"], body
    status, body = get(cluster, "/loki/api/v1/query", [("query", '{service="x"}')])
    assert status == 400 and "instant query" in body["message"]
    for path, params in (("/loki/api/v1/query_range", [("query", '{a="b"}'), ("start", "9" * 30)]),
                         ("/loki/api/v1/query", [("query", "vector(1)"), ("time", "1e999")]),
                         ("/loki/api/v1/query_range", [("query", 'rate({a="b"}[1m])'), ("step", "0.000001")]),
                         ("/v1/stats/volume", [("since", "9" * 30)]), ("/v1/stats/values", [("field", "x"), ("until", "9" * 25)])):
        status, body = get(cluster, path, params)
        assert status == 400 and body["error"] == "BAD_PARAMETER", (path, params, body)


def test_tail_over_websocket_sends_history_then_live_entries_once(cluster: Cluster) -> None:
    import aiohttp

    async def run() -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        url = cluster.url.replace("http", "ws") + "/loki/api/v1/tail?" + urllib.parse.urlencode(
            {"query": '{service="search"} |= "live"', "start": ns(NOW_MS - 60_000), "limit": "10"})
        async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
            live = [{"timestamp": int(time.time() * 1000) + i, "service": "search", "level": "INFO",
                     "message": f"live {i}"} for i in range(5)]
            for rec in live:  # one at a time: each is its own commit, and the tail must see every one
                await asyncio.to_thread(cluster.store, [rec], f"live-{rec['message']}-{NOW_MS}")
            while len(got) < 5:
                msg = await asyncio.wait_for(ws.receive(), 10)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                body = orjson.loads(msg.data)
                assert set(body) == {"streams", "dropped_entries"}
                for stream in body["streams"]:
                    assert stream["stream"] == {"service": "search", "level": "INFO"}
                    got += [(int(t), line) for t, line in stream["values"]]
            with contextlib.suppress(asyncio.TimeoutError):  # nothing more, nothing twice
                extra = await asyncio.wait_for(ws.receive(), 1.2)
                raise AssertionError(f"unexpected {extra}")
        return got

    got = asyncio.run(run())
    assert sorted(line for _, line in got) == [f"live {i}" for i in range(5)]


# -- Grafana's Loki data source, replayed: the requests it sends, checked against Loki's documented answers.

GRAFANA_START, GRAFANA_END = ns(T0), ns(T0 + N * 2_500)


def test_grafana_health_check(cluster: Cluster) -> None:
    # "Save & test": an instant query of vector(1)+vector(1); Grafana wants one sample of value 2.
    status, body = get(cluster, "/loki/api/v1/query", [("query", "vector(1)+vector(1)"), ("time", GRAFANA_END),
                                                       ("limit", "1"), ("direction", "backward"), ("step", "1s")])
    assert status == 200, body
    assert body["status"] == "success" and set(body["data"]) == {"resultType", "result", "stats"}
    assert body["data"]["resultType"] == "vector"
    (sample,) = body["data"]["result"]
    assert sample["metric"] == {} and sample["value"][1] == "2" and isinstance(sample["value"][0], int | float)


def test_grafana_explore_logs_and_volume(cluster: Cluster) -> None:
    # The log query, as Grafana's backend sends it (ns times, Go duration step, direction, limit).
    expr = '{service="billing"} |= "req"'
    status, body = get(cluster, "/loki/api/v1/query_range", [("query", expr), ("start", GRAFANA_START),
                                                             ("end", GRAFANA_END), ("limit", "1000"),
                                                             ("direction", "backward"), ("step", "1m0s")])
    assert status == 200, body
    data = body["data"]
    assert data["resultType"] == "streams"
    total = 0
    for s in data["result"]:
        assert set(s) == {"stream", "values"}
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in s["stream"].items())
        for ts, line in s["values"]:
            assert isinstance(ts, str) and ts.isdigit() and isinstance(line, str)
        total += len(s["values"])
    assert total == sum(1 for r in RECORDS if r["service"] == "billing")
    # The supplementary log-volume query Grafana runs beside it.
    volume = f"sum by (level, detected_level) (count_over_time({expr} | drop __error__[1m]))"
    status, body = get(cluster, "/loki/api/v1/query_range", [("query", volume), ("start", GRAFANA_START),
                                                             ("end", GRAFANA_END), ("step", "60")])
    assert status == 200, body
    assert body["data"]["resultType"] == "matrix"
    levels = {s["metric"]["level"] for s in body["data"]["result"]}
    assert levels == {r["level"] for r in RECORDS if r["service"] == "billing"}
    for s in body["data"]["result"]:
        assert set(s) == {"metric", "values"} and set(s["metric"]) == {"level"}  # no detected_level: omitted
        assert all(isinstance(t, int) and v.isdigit() for t, v in s["values"])
    summed = sum(int(v) for s in body["data"]["result"] for _, v in s["values"])
    assert summed == sum(1 for r in RECORDS if r["service"] == "billing")  # 1m windows at 1m steps: each once


def test_grafana_label_browser_and_stats_hint(cluster: Cluster) -> None:
    span = [("start", GRAFANA_START), ("end", GRAFANA_END)]
    status, names = get(cluster, "/loki/api/v1/labels", span)
    assert status == 200 and names["status"] == "success" and all(isinstance(n, str) for n in names["data"])
    for name in names["data"]:
        status, values = get(cluster, f"/loki/api/v1/label/{name}/values", span)
        assert status == 200 and values["data"] and all(isinstance(v, str) for v in values["data"])
    status, series = get(cluster, "/loki/api/v1/series", [("match[]", '{service="billing", region="eu"}'), *span])
    assert status == 200 and series["data"]
    assert all(s["service"] == "billing" and s["region"] == "eu" for s in series["data"])
    status, stats = get(cluster, "/loki/api/v1/index/stats", [("query", '{service="billing"}'), *span])
    assert status == 200 and set(stats) == {"streams", "chunks", "entries", "bytes"}
    assert all(isinstance(v, int) for v in stats.values())


def test_dashboard_loki_panels_answer(cluster: Cluster) -> None:
    dash = orjson.loads((REPO / "conf" / "grafana" / "zlog-dashboard.json").read_bytes())
    exprs = [t["expr"] for p in dash["panels"] if (p.get("datasource") or {}).get("type") == "loki"
             for t in p.get("targets", [])]
    assert any(e.startswith("sum by (level)") for e in exprs) and any(e.startswith("{") for e in exprs)
    for e in exprs:
        q = e.replace("$__auto", "1m").replace("$service", "billing|search")
        status, body = get(cluster, "/loki/api/v1/query_range", [("query", q), ("start", GRAFANA_START),
                                                                 ("end", GRAFANA_END), ("step", "60")])
        assert status == 200 and body["data"]["result"], (q, body)


PARAM_VALUES = st.sampled_from(["", "0", "-1", "1e3", "5m", "1m0s", "abc", "9" * 25, "2023-11-14T22:13:20Z", "auto",
                                "level", "label.region", "pod", '{service="billing"}', "vector(1)", "{", "1/0",
                                'sum by (x) (rate({a="b"}[1ms]))', '{a=~"(a+)+$"} |~ "(x+x+)+y"'])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/loki/api/v1/query_range", "/loki/api/v1/query", "/loki/api/v1/labels",
                             "/loki/api/v1/label/service/values", "/loki/api/v1/series", "/loki/api/v1/index/stats",
                             "/v1/stats/volume", "/v1/stats/values"]),
       params=st.lists(st.tuples(st.sampled_from(["query", "start", "end", "time", "step", "since", "limit",
                                                  "direction", "match[]", "by", "field", "until", "measure"]),
                                 PARAM_VALUES), max_size=5))
def test_fuzzed_parameters_get_an_answer_or_a_named_400(cluster: Cluster, path: str,
                                                       params: list[tuple[str, str]]) -> None:
    status, body = get(cluster, path, params)
    assert status in (200, 400), (path, params, body)
    if status == 400:
        assert body["error"] == "BAD_PARAMETER" and body["message"], body
