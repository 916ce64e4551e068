"""/v1/stats/volume and /v1/stats/values end to end: real processes, counts checked against a plain count."""

from __future__ import annotations

import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._cluster import Cluster

SERVICES = ["auth_service", "billing", "search", "notification_service"]
LEVELS = ["INFO", "WARN", "ERROR", "debug"]
WORDS = ["token", "expired", "ok", "retry"]
NOW = int(time.time() * 1000)
T0 = NOW - 2 * 3_600_000  # two hours of records, some minutes apart
N = 1200

pytestmark = pytest.mark.cluster


def make(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + i * 5_987 - (i % 7) * 4_000, "service": SERVICES[i % 4], "level": LEVELS[i * 7 % 11 % 4],
            "message": f"rec-{i} {WORDS[i % 4]} {WORDS[i // 4 % 4]}",
            "labels": {"region": ["eu", "us", "ap"][i % 3], **({"pod": f"p{i % 5}"} if i % 2 else {})}}


RECORDS = [make(i) for i in range(N)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Small segments and scan budgets: rollups span many segments, scans need several rounds.
    c = Cluster(tmp_path_factory.mktemp("stats"), env_extra={"ZLOG_STORAGE_SEGMENT_BYTES": "32768",
                                                            "ZLOG_STORAGE_SCAN_BUDGET_BYTES": "16384"})
    with c:
        for i in range(0, N, 200):
            c.store(RECORDS[i:i + 200], f"stats-{i}")
        yield c


def get(c: Cluster, path: str, params: list[tuple[str, str]]) -> tuple[int, Any]:
    return c.get(path + "?" + urllib.parse.urlencode(params))


def matches(r: dict[str, Any], f: dict[str, Any]) -> bool:
    """The filter semantics of /v1/logs, written out plainly."""
    if f.get("service") and r["service"] not in f["service"]:
        return False
    if f.get("level") and r["level"].lower() not in {x.lower() for x in f["level"]}:
        return False
    if f.get("contains") and f["contains"] not in r["message"]:
        return False
    if f.get("q") and not all(w in r["message"].split() for w in f["q"].split()):
        return False
    if r["service"] in f.get("not_service", []) or r["level"].lower() in {x.lower() for x in f.get("not_level", [])}:
        return False
    if any(r["labels"].get(k) == v for k, v in f.get("not_labels", {}).items()):
        return False
    return all(r["labels"].get(k) == v for k, v in f.get("labels", {}).items())


def params_of(f: dict[str, Any]) -> list[tuple[str, str]]:
    out = [("service", s) for s in f.get("service", [])] + [("level", lv) for lv in f.get("level", [])]
    if f.get("contains"):
        out.append(("contains", f["contains"]))
    if f.get("q"):
        out.append(("q", f["q"]))
    out += [(f"label.{k}", v) for k, v in f.get("labels", {}).items()]
    out += [("-service", s) for s in f.get("not_service", [])] + [("-level", lv) for lv in f.get("not_level", [])]
    out += [(f"-label.{k}", v) for k, v in f.get("not_labels", {}).items()]
    return out


def key(r: dict[str, Any], by: str) -> str | None:
    if by in ("level", "service"):
        return str(r[by])
    return r["labels"].get(by, "")


def plain_volume(f: dict[str, Any], start: int, end: int, step: int, by: str) -> list[dict[str, int]]:
    buckets: list[Counter[str]] = [Counter() for _ in range((end + 1 - start) // step)]
    for r in RECORDS:
        if start <= r["timestamp"] <= end and matches(r, f):
            buckets[(r["timestamp"] - start) // step][str(key(r, by))] += 1
    return [dict(b) for b in buckets]


def test_volume_by_level_from_rollups(cluster: Cluster) -> None:
    status, body = get(cluster, "/v1/stats/volume", [("since", str(T0 - 60_000)), ("until", str(NOW)), ("step", "1m")])
    assert status == 200, body
    assert set(body) == {"start_ms", "end_ms", "step_ms", "by", "buckets", "total", "partial", "missing"}
    assert body["step_ms"] == 60_000 and body["by"] == "level" and body["start_ms"] % 60_000 == 0
    assert body["partial"] is False and body["missing"] == []
    want = plain_volume({}, body["start_ms"], body["end_ms"], 60_000, "level")
    assert [b["counts"] for b in body["buckets"]] == want
    assert [b["t"] for b in body["buckets"]] == [body["start_ms"] + 60_000 * j for j in range(len(want))]
    assert body["total"] == N


def test_volume_by_label_with_text_filter_scans(cluster: Cluster) -> None:
    f = {"contains": "token", "labels": {"region": "eu"}}
    status, body = get(cluster, "/v1/stats/volume", [*params_of(f), ("since", str(T0)), ("until", str(NOW)),
                                                     ("step", "10m"), ("by", "pod")])
    assert status == 200, body
    assert body["by"] == "pod"
    assert [b["counts"] for b in body["buckets"]] == plain_volume(f, body["start_ms"], body["end_ms"], 600_000, "pod")
    assert body["total"] == sum(1 for r in RECORDS if matches(r, f) and body["start_ms"] <= r["timestamp"])


def test_volume_auto_step_bytes_and_errors(cluster: Cluster) -> None:
    status, body = get(cluster, "/v1/stats/volume", [("since", "3h"), ("step", "auto"), ("measure", "bytes"),
                                                     ("service", "billing")])
    assert status == 200, body
    assert body["step_ms"] == 300_000 and len(body["buckets"]) in (36, 37)  # 3 h in at most 120 nice steps
    stored = sum(len(line) for _, line in cluster.stored_lines() if b'"service":"billing"' in line)
    assert body["total"] == stored  # bytes are the stored lines' bytes
    for params, name in (([("step", "1ms"), ("since", "1d")], "step"), ([("step", "x")], "step"),
                         ([("by", "label.")], "by"), ([("measure", "lines")], "measure"),
                         ([("regex", "(")], "regex"), ([("bogus", "1")], "bogus")):
        status, body = get(cluster, "/v1/stats/volume", params)
        assert status == 400, (params, body)
        assert body["error"] == "BAD_PARAMETER" and name in body["message"], body


def test_values_of_service_level_and_label(cluster: Cluster) -> None:
    for field, f in (("service", {}), ("level", {"service": ["auth_service", "search"]}),
                     ("region", {"contains": "retry"}), ("pod", {"level": ["error"]})):
        status, body = get(cluster, "/v1/stats/values", [("field", field), *params_of(f)])
        assert status == 200, body
        assert set(body) == {"field", "values", "total", "partial"} and body["field"] == field
        counts = Counter(key(r, field) for r in RECORDS if matches(r, f))
        want = sorted(((k, v) for k, v in counts.items() if k), key=lambda kv: (-kv[1], kv[0]))
        assert [(v["value"], v["count"]) for v in body["values"]] == want
        assert body["total"] == sum(counts.values()) and body["partial"] is False
    status, body = get(cluster, "/v1/stats/values", [("field", "service"), ("limit", "2")])
    assert status == 200 and len(body["values"]) == 2
    status, body = get(cluster, "/v1/stats/values", [])
    assert status == 400 and "field" in body["message"]


filters = st.fixed_dictionaries({}, optional={
    "service": st.lists(st.sampled_from(SERVICES), min_size=1, max_size=2, unique=True),
    "level": st.lists(st.sampled_from(LEVELS + ["error", "Warn"]), min_size=1, max_size=2, unique=True),
    "contains": st.sampled_from(WORDS + ["rec-1", "nothing"]),
    "q": st.sampled_from(["token", "expired retry", "ok"]),  # words only messages hold
    "labels": st.dictionaries(st.sampled_from(["region", "pod"]), st.sampled_from(["eu", "us", "p1", "p2"]), max_size=1),
    "not_service": st.lists(st.sampled_from(SERVICES), max_size=1),
    "not_level": st.lists(st.sampled_from(["info", "WARN"]), max_size=1),
    "not_labels": st.dictionaries(st.sampled_from(["region", "pod"]), st.sampled_from(["eu", "p3"]), max_size=1),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=filters, lo=st.integers(0, 7_000_000), span=st.integers(1, 7_500_000),
       step=st.sampled_from(["30s", "1m", "7m", "1h", "auto"]), by=st.sampled_from(["level", "service", "region"]))
def test_property_volume_and_values_equal_a_plain_count(cluster: Cluster, f: dict[str, Any], lo: int, span: int,
                                                        step: str, by: str) -> None:
    rng = [("since", str(T0 - 60_000 + lo)), ("until", str(T0 - 60_000 + lo + span))]
    status, body = get(cluster, "/v1/stats/volume", [*params_of(f), *rng, ("step", step), ("by", by)])
    assert status == 200, body
    assert not body["partial"]
    want = plain_volume(f, body["start_ms"], body["end_ms"], body["step_ms"], by)
    assert [b["counts"] for b in body["buckets"]] == want
    assert body["total"] == sum(sum(b.values()) for b in want)
    status, vals = get(cluster, "/v1/stats/values", [*params_of(f), *rng, ("field", by), ("limit", "100")])
    assert status == 200, vals
    start = int(rng[0][1]) // 10_000 * 10_000
    end = (int(rng[1][1]) + 1 + 9_999) // 10_000 * 10_000 - 1
    counts = Counter(key(r, by) for r in RECORDS if start <= r["timestamp"] <= end and matches(r, f))
    assert {v["value"]: v["count"] for v in vals["values"]} == {k: v for k, v in counts.items() if k}
    assert vals["total"] == sum(counts.values())
