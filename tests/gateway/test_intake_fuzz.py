"""Random bodies at every intake endpoint of a real gateway: a named 4xx or a success, never a 5xx
(an unhandled error would be a 500) and never a dead gateway (the shared cluster serves the tests after)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._cluster import Cluster, http

pytestmark = pytest.mark.cluster

ENDPOINTS = [
    ("/loki/api/v1/push", "application/json"), ("/loki/api/v1/push", "application/x-protobuf"),
    ("/api/prom/push", "application/json"), ("/otlp/v1/logs", "application/json"),
    ("/otlp/v1/logs", "application/x-protobuf"), ("/_bulk", "application/x-ndjson"),
]
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
                               ["streams", "stream", "values", "labels", "entries", "ts", "line", "resourceLogs",
                                "scopeLogs", "logRecords", "body", "index", "message", "x"]), c, max_size=4),
                           max_leaves=20)
bodies = st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()))


@pytest.fixture
def cluster(intake_cluster: Cluster) -> Cluster:
    return intake_cluster


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_random_bodies_never_get_a_server_error(cluster: Cluster, endpoint: tuple[str, str], body: bytes) -> None:
    path, ctype = endpoint
    status, headers, data = http("POST", cluster.url + path, body, {"Content-Type": ctype}, timeout=10)
    assert status < 500, (status, data[:300])
    if status >= 400 and headers.get("Content-Type", "").startswith("application/json"):
        json.loads(data)  # refusals are well-formed JSON (or OTLP's protobuf Status)
