"""A tenant's limits on a real cluster: its ingest rate (one bucket shared by every gateway
process, kept by the router), its storage quota and its retention, each touching no other tenant."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests._cluster import Cluster, http, wait_until

BATCH = 20


def _hdr(tenant: str) -> dict[str, str]:
    return {} if tenant == "default" else {"X-Scope-OrgID": tenant}


def post(c: Cluster, tenant: str, records: list[dict[str, object]]) -> tuple[int, dict[str, str], dict[str, object]]:
    status, headers, body = http("POST", c.url + "/v1/logs", json.dumps(records).encode(),
                                 {"Content-Type": "application/json", **_hdr(tenant)})
    return status, headers, json.loads(body)


def get(c: Cluster, path: str, tenant: str) -> dict[str, object]:
    status, _, body = http("GET", c.url + path, headers=_hdr(tenant))
    assert status == 200, body
    out: dict[str, object] = json.loads(body)
    return out


def _load(url: str, tenant: str, threads: int, period_s: float, seconds: float, out: Any) -> None:
    """Writers of one tenant for ``seconds``, each sending a batch every ``period_s`` (open loop),
    in a process of their own (so the test client's GIL does not couple the tenants' rates):
    what was stored, refused and how."""

    result: dict[str, Any] = {"stored": 0, "statuses": {}, "refusals": []}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        n = 0
        due = time.monotonic()
        while time.monotonic() < deadline:
            due += period_s
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the offered load, not waiting for a condition
            t = int(time.time() * 1000)
            recs = [{"timestamp": t, "service": f"svc{(i + k) % 4}", "message": f"{tenant} {i} {n} {k}"}
                    for k in range(BATCH)]
            n += 1
            status, headers, body = _post(url, tenant, recs)
            with lock:
                result["statuses"][status] = result["statuses"].get(status, 0) + 1
                if status == 200:
                    result["stored"] += BATCH
                elif len(result["refusals"]) < 5:
                    result["refusals"].append((headers, body))

    t0 = time.monotonic()
    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    result["seconds"] = time.monotonic() - t0
    out.put(result)


def _post(url: str, tenant: str, records: list[dict[str, object]]) -> tuple[int, dict[str, str], dict[str, Any]]:
    status, headers, body = http("POST", url + "/v1/logs", json.dumps(records).encode(),
                                 {"Content-Type": "application/json", **_hdr(tenant)})
    return status, headers, json.loads(body)


def run_loads(url: str, loads: list[tuple[str, int, float]], seconds: float) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    queues = [ctx.Queue() for _ in loads]
    procs = [ctx.Process(target=_load, args=(url, tenant, threads, period, seconds, q))
             for (tenant, threads, period), q in zip(loads, queues, strict=True)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 60) for q in queues]
    for p in procs:
        p.join(30)
    return results


def _errors(c: Cluster, gateway: int, kind: str) -> float:
    _, _, raw = http("GET", f"http://127.0.0.1:{c.gateway_metrics_base + gateway}/metrics")
    total = 0.0
    for line in raw.decode().splitlines():
        if line.startswith("zlog_ingest_errors_total{") and f'kind="{kind}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_tenant_over_its_rate_gets_429_while_another_keeps_its_full_rate(tmp_path: Path) -> None:
    rate = 300
    c = Cluster(tmp_path, gateways=2, toml_extra=f"\n[tenants.slow]\nrecords_per_s = {rate}\nburst_s = 1.0\n")
    with c:
        # fast offers 4 x 20 records every 80 ms (1000 rec/s: a request may take 80 ms before the
        # offered rate is out of reach on a loaded machine); slow offers ten times its limit.
        offered = 4 * BATCH / 0.08
        (alone,) = run_loads(c.url, [("fast", 4, 0.08)], 2.0)
        fast, slow = run_loads(c.url, [("fast", 4, 0.08), ("slow", 2, 2 * BATCH / (10 * rate))], 3.0)
        # The slow tenant: refused with 429 + Retry-After naming the limit, stored about its rate.
        assert slow["statuses"].get(429, 0) > 0, slow["statuses"]
        headers, body = slow["refusals"][0]
        assert body["error"] == "TENANT_RATE_LIMITED" and "records_per_s" in str(body["message"]), body
        assert int(headers["Retry-After"]) >= 1
        # One bucket for both gateway processes: each refused some, and together they let through
        # at most rate * window + the burst (+ the requests in flight); two buckets would double it.
        assert _errors(c, 0, "TENANT_RATE_LIMITED") > 0 and _errors(c, 1, "TENANT_RATE_LIMITED") > 0
        bound = rate * slow["seconds"] + rate * 1.0 + 2 * BATCH
        assert rate * slow["seconds"] * 0.5 <= slow["stored"] <= bound, (slow["stored"], bound)
        # The other tenant, through the same gateways: every request stored, at its full rate.
        assert set(fast["statuses"]) == {200}, fast["statuses"]
        rates = {k: r["stored"] / r["seconds"] for k, r in (("alone", alone), ("fast", fast), ("slow", slow))}
        ratio = rates["fast"] / offered
        print(f"fast tenant offered {offered:.0f} rec/s: stored {rates['alone']:.0f} rec/s alone, {rates['fast']:.0f} "
              f"rec/s beside the limited tenant (ratio {ratio:.2f}); slow tenant offered {10 * rate} rec/s, stored "
              f"{rates['slow']:.0f} rec/s of its {rate} rec/s limit, {slow['statuses'].get(429, 0)} requests refused")
        assert ratio > 0.8, ratio
        # Usage per tenant in the workers' metrics.
        def usage(tenant: str) -> float:
            total = 0.0
            for i in range(c.workers):
                raw = http("GET", f"http://127.0.0.1:{c.worker_metrics_base + i}/metrics")[2].decode()
                total += sum(float(line.rsplit(" ", 1)[1]) for line in raw.splitlines()
                             if line.startswith(f'zlog_tenant_stored_records{{tenant="{tenant}"}}'))
            return total

        wait_until(lambda: usage("slow") == slow["stored"] and usage("fast") == alone["stored"] + fast["stored"],
                   timeout=10, what="per-tenant usage in the workers' metrics")
        # ... and in zlog status, with what the router refused
        out = subprocess.run([sys.executable, "-m", "zlog", "status", "--json"], capture_output=True, env=c.env,
                             timeout=60, check=False)
        tenants = {t["tenant"]: t for t in json.loads(out.stdout)["tenants"]}
        assert tenants["slow"]["records"] == slow["stored"] and tenants["slow"]["declared"]
        assert tenants["slow"]["refused"] >= slow["statuses"][429] and tenants["fast"]["refused"] == 0
        assert tenants["fast"]["records"] == alone["stored"] + fast["stored"] and tenants["fast"]["bytes"] > 0


def test_storage_quota_and_retention_are_per_tenant(tmp_path: Path) -> None:
    extra = """
[tenants.tiny]
max_partition_bytes = 3000

[tenants.brief]
retention_ms = 500
"""
    c = Cluster(tmp_path, gateways=1, toml_extra=extra,
                env_extra={"ZLOG_STORAGE_SEGMENT_BYTES": "2048", "ZLOG_STORAGE_RETENTION_CHECK_MS": "200"})
    with c:
        t0 = int(time.time() * 1000)
        one = [{"timestamp": t0, "service": "billing", "message": "q" * 600}]
        stored = 0
        for _ in range(10):
            status, headers, body = post(c, "tiny", one)
            if status != 200:
                break
            stored += 1
        assert status == 429 and body["error"] == "QUOTA_EXCEEDED", body
        assert "Retry-After" in headers
        assert 1 <= stored < 10
        logs = get(c, "/v1/logs?limit=1000", "tiny")
        assert len(logs["records"]) == stored  # type: ignore[arg-type]  # the refused batch stored nothing
        assert post(c, "other", one * 8)[0] == 200  # another tenant is not bound by tiny's quota

        # Retention: brief's and the default tenant's segments roll at 2 KiB; only brief's go.
        batch = [{"timestamp": t0 + i, "service": "billing", "message": f"r{i} " + "z" * 300} for i in range(30)]
        for tenant in ("brief", "default"):
            for i in range(0, 30, 5):
                assert post(c, tenant, batch[i:i + 5])[0] == 200

        def lowest(tenant: str) -> int:
            return sum(p["lowest_offset"] for p in get(c, "/v1/partitions", tenant)["partitions"])  # type: ignore[attr-defined]

        wait_until(lambda: lowest("brief") > 0, timeout=15, what="retention of brief's old segments")
        time.sleep(0.6)  # a few more retention rounds: the default tenant must still have everything
        assert lowest("default") == 0
        assert len(get(c, "/v1/logs?limit=1000", "default")["records"]) == 30  # type: ignore[arg-type]


def test_only_declared_tenants_write_when_auto_create_is_off_and_services_are_bounded(tmp_path: Path) -> None:
    extra = """
[tenants]
auto_create = false

[tenants.few]
max_services = 2
"""
    c = Cluster(tmp_path, gateways=1, toml_extra=extra)
    with c:
        one = [{"timestamp": int(time.time() * 1000), "service": "a", "message": "m"}]
        status, _, body = post(c, "stranger", one)
        assert status == 400 and body["error"] == "UNKNOWN_TENANT", body
        assert not (c.data_dir / "tenants" / "stranger").exists()
        assert post(c, "default", one)[0] == 200  # the default tenant needs no declaration
        assert post(c, "few", one)[0] == 200
        assert post(c, "few", [{**one[0], "service": "b"}])[0] == 200
        status, headers, body = post(c, "few", [{**one[0], "service": "c"}, {**one[0], "service": "a"}])
        assert status == 429 and body["error"] == "TOO_MANY_SERVICES" and "max_services" in str(body["message"])
        assert int(headers["Retry-After"]) >= 1
        assert post(c, "few", [{**one[0], "service": "b"}, {**one[0], "service": "a"}])[0] == 200
        assert len(get(c, "/v1/logs?limit=100", "few")["records"]) == 4  # type: ignore[arg-type]
