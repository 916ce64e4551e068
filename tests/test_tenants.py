"""Tenants on a real cluster: isolation on every read path, cursors bound to their tenant, each
tenant's storage quota and retention touching no other tenant.

Two tenants (and the default one) write the *same* services, so any read path that mixed
tenants would show another tenant's messages; every record's message names its tenant.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cluster import Cluster, http
from zlog.read.paging import Cursor
from zlog.read.query import Filter

TENANTS = ("default", "acme", "globex")
SERVICES = ("auth_service", "billing", "search", "mailer")


def _hdr(tenant: str | None) -> dict[str, str]:
    return {} if tenant in (None, "default") else {"X-Scope-OrgID": tenant}


def post(c: Cluster, tenant: str | None, records: list[dict[str, object]],
         extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, object]]:
    status, headers, body = http("POST", c.url + "/v1/logs", json.dumps(records).encode(),
                                 {"Content-Type": "application/json", **_hdr(tenant), **(extra or {})})
    return status, headers, json.loads(body)


def get(c: Cluster, path: str, tenant: str | None) -> tuple[int, object]:
    status, _, body = http("GET", c.url + path, headers=_hdr(tenant))
    return status, json.loads(body)


def records_for(tenant: str, n: int, t0: int) -> list[dict[str, object]]:
    return [{"timestamp": t0 + i, "service": SERVICES[i % len(SERVICES)], "level": "INFO",
             "message": f"{tenant} says {i}", "labels": {"tenant": tenant}} for i in range(n)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("tenants")
    with Cluster(root, gateways=1) as c:
        t0 = int(time.time() * 1000) - 60_000
        for tenant in TENANTS:
            status, _, body = post(c, tenant, records_for(tenant, 20, t0))
            assert status == 200, body
        # Only acme writes this service: the services list must not reveal it to others.
        assert post(c, "acme", [{"timestamp": t0, "service": "acme_only", "message": "acme says secret"}])[0] == 200
        yield c


def _owners(messages: list[str]) -> set[str]:
    return {m.split(" says ")[0] for m in messages}


def _sse(c: Cluster, path: str, tenant: str, want: int, timeout: float = 8.0) -> list[dict[str, object]]:
    """The first ``want`` data events of a tail (or fewer when ``timeout`` passes)."""
    s = socket.create_connection(("127.0.0.1", c.http_port), timeout=timeout)
    hdr = "".join(f"{k}: {v}\r\n" for k, v in _hdr(tenant).items())
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{hdr}\r\n".encode())
    out: list[dict[str, object]] = []
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\ndata: " in buf:
                _, rest = buf.split(b"\ndata: ", 1)
                if b"\n" not in rest:
                    break
                line, buf = rest.split(b"\n", 1)
                out.append(json.loads(line))
    finally:
        s.close()
    return out


@pytest.mark.parametrize("tenant", TENANTS)
def test_every_read_endpoint_returns_only_the_callers_records(cluster: Cluster, tenant: str) -> None:
    c = cluster
    own = 21 if tenant == "acme" else 20
    # /v1/logs, all and by service
    status, body = get(c, "/v1/logs?limit=1000", tenant)
    assert status == 200
    assert isinstance(body, dict)
    assert _owners([r["message"] for r in body["records"]]) == {tenant} and len(body["records"]) == own
    status, body = get(c, "/v1/logs?service=billing&limit=1000", tenant)
    assert isinstance(body, dict) and _owners([r["message"] for r in body["records"]]) == {tenant}
    assert len(body["records"]) == 5
    # /v1/query (the original's)
    status, body = get(c, "/v1/query?service=auth_service&limit=100", tenant)
    assert status == 200 and isinstance(body, list)
    assert _owners([r["message"] for r in body]) == {tenant} and len(body) == 5
    # /v1/partitions: offsets and bytes of the caller's partitions only
    status, body = get(c, "/v1/partitions", tenant)
    assert isinstance(body, dict)
    assert sum(p["next_offset"] for p in body["partitions"]) == own
    # fetch by offset, every partition from 0
    seen: list[str] = []
    for p in range(c.partitions):
        status, body = get(c, f"/v1/partitions/{p}/records?offset=0&limit=1000", tenant)
        assert status == 200 and isinstance(body, dict)
        seen += [r["message"] for r in body["records"]]
    assert _owners(seen) == {tenant} and len(seen) == own
    # /v1/logs/export (NDJSON)
    status, _, raw = http("GET", c.url + "/v1/logs/export?limit=1000", headers=_hdr(tenant))
    assert status == 200
    exported = [json.loads(line)["message"] for line in raw.splitlines() if line.strip()]
    assert _owners(exported) == {tenant} and len(exported) == own
    # /v1/stats/volume and /v1/stats/values (the counting engine)
    status, body = get(c, "/v1/stats/volume?since=2h&by=service", tenant)
    assert status == 200 and isinstance(body, dict) and body["total"] == own, body
    status, body = get(c, "/v1/stats/values?field=service&since=2h", tenant)
    assert status == 200 and isinstance(body, dict)
    assert {v["value"] for v in body["values"]} == set(SERVICES) | ({"acme_only"} if tenant == "acme" else set())
    # the Loki API: log query, metric query, label values
    start, end = str((int(time.time()) - 7200) * 10**9), str((int(time.time()) + 60) * 10**9)
    q = urllib.parse.urlencode({"query": '{service="billing"}', "start": start, "end": end, "limit": "1000"})
    status, body = get(c, f"/loki/api/v1/query_range?{q}", tenant)
    assert status == 200 and isinstance(body, dict), body
    lines = [line for s in body["data"]["result"] for _, line in s["values"]]
    assert _owners(lines) == {tenant} and len(lines) == 5
    q = urllib.parse.urlencode({"query": 'sum(count_over_time({service=~".+"}[3h]))', "time": end})
    status, body = get(c, f"/loki/api/v1/query?{q}", tenant)
    assert status == 200 and isinstance(body, dict), body
    assert [float(r["value"][1]) for r in body["data"]["result"]] == [own]
    q = urllib.parse.urlencode({"start": start, "end": end})
    status, body = get(c, f"/loki/api/v1/label/service/values?{q}", tenant)
    assert status == 200 and isinstance(body, dict), body
    assert set(body["data"]) == set(SERVICES) | ({"acme_only"} if tenant == "acme" else set())
    # /v1/services
    status, body = get(c, "/v1/services", tenant)
    assert isinstance(body, dict)
    names = {s["name"] for s in body["services"]}
    assert names == set(SERVICES) | ({"acme_only"} if tenant == "acme" else set())
    # /v1/tail: resumed from a cursor at offset 0 everywhere, it replays the caller's records only
    cursor = Cursor(False, dict.fromkeys(range(c.partitions), 0), Filter().digest(), tenant).encode()
    events = _sse(c, f"/v1/tail?cursor={cursor}", tenant, want=own, timeout=8.0)
    assert len(events) == own
    assert _owners([str(e["message"]) for e in events]) == {tenant}


def test_the_cli_reads_the_named_tenant(cluster: Cluster) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "zlog", "query", "--url", cluster.url, "--tenant", "globex",
                          "--json", "--limit", "100"], capture_output=True, env=cluster.env, timeout=60, check=True)
    messages = [json.loads(line)["message"] for line in out.stdout.splitlines()]
    assert len(messages) == 20 and _owners(messages) == {"globex"}


def test_a_cursor_of_one_tenant_replayed_by_another_is_not_found(cluster: Cluster) -> None:
    c = cluster
    status, body = get(c, "/v1/logs?service=billing&limit=2", "acme")
    assert isinstance(body, dict) and body["more"]
    cursor = body["cursor"]
    assert get(c, f"/v1/logs?service=billing&limit=2&cursor={cursor}", "acme")[0] == 200
    for other in ("globex", "default"):
        status, body = get(c, f"/v1/logs?service=billing&limit=2&cursor={cursor}", other)
        assert status == 404, body
        assert isinstance(body, dict) and "records" not in body
    # a tail resumed with another tenant's event id: 404 before any event
    status, _, raw = http("GET", c.url + "/v1/tail?service=billing", headers={"Last-Event-ID": cursor,
                                                                             **_hdr("globex")})
    assert status == 404 and b"says" not in raw


def test_a_bad_tenant_header_is_refused_and_nothing_is_stored(cluster: Cluster) -> None:
    for bad in ("..", "a/b", "x" * 151, "sp ace"):
        status, _, body = post(cluster, bad, records_for("bad", 1, 1))
        assert status == 400 and body["error"] == "INVALID_TENANT", body
        assert get(cluster, "/v1/logs", bad)[0] == 400
    assert {p.name for p in (cluster.data_dir / "tenants").iterdir()} <= {"acme", "globex", "native", "cli"}


def test_layout_default_tenant_in_place_others_under_tenants(cluster: Cluster) -> None:
    d: Path = cluster.data_dir
    assert all((d / str(p)).is_dir() for p in range(cluster.partitions))
    assert any((d / "tenants" / "acme" / str(p)).is_dir() for p in range(cluster.partitions))


def test_a_native_producer_writes_as_the_tenant_it_names(cluster: Cluster) -> None:
    from zlog.client import Producer

    producer = Producer([f"tcp://127.0.0.1:{cluster.front}"])
    try:
        recs = [{"timestamp": 1, "service": s, "message": f"native says {i}"} for i, s in enumerate(SERVICES)]
        placed = producer.send(recs, tenant="native").result(30)
    finally:
        producer.close()
    assert len(placed) == len(SERVICES)
    status, body = get(cluster, "/v1/logs?limit=100", "native")
    assert status == 200 and isinstance(body, dict)
    assert _owners([r["message"] for r in body["records"]]) == {"native"} and len(body["records"]) == 4
    status, body = get(cluster, "/v1/logs?limit=100&contains=native", "default")
    assert isinstance(body, dict) and body["records"] == []


def test_zlog_produce_writes_as_the_named_tenant(cluster: Cluster) -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "zlog", "produce", "--tenant", "cli", "--service", "billing"],
                         input=b"cli says 1\ncli says 2\n", env=cluster.env, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    status, body = get(cluster, "/v1/logs?limit=100", "cli")
    assert status == 200
    assert isinstance(body, dict) and _owners([r["message"] for r in body["records"]]) == {"cli"}
    assert len(body["records"]) == 2
    bad = subprocess.run([sys.executable, "-m", "zlog", "produce", "--tenant", "../x", "--service", "s"],
                         input=b"x\n", env=cluster.env, capture_output=True, timeout=60)
    assert bad.returncode == 2 and b"tenant id" in bad.stderr
