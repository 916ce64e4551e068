"""Observability of a real cluster: Prometheus scraping it, the Grafana dashboard's metric names,
``/ready`` following worker deaths, ``zlog status`` and structured process logs.

Invariants:
- Everything runs for real: router, workers and gateways are subprocesses (``tests/_cluster.py``)
  and Prometheus is the Debian ``prometheus`` binary on a loopback port, with its TSDB in
  ``tmp_path``; it is configured from the shipped ``conf/prometheus.yml`` with only the ports
  and the scrape interval rewritten, so the shipped file is what is tested.
- Waiting is polling with a deadline; every test bounds its own run time well under a minute.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._cluster import REPO, Cluster, free_port, http, wait_until
from zlog.config import Config
from zlog.ops.report import Raw, build_report
from zlog.ops.report_text import render

pytestmark = pytest.mark.cluster

DASHBOARD = REPO / "conf" / "grafana" / "zlog-dashboard.json"
PROMETHEUS_YML = REPO / "conf" / "prometheus.yml"
OPERATIONS_MD = REPO / "docs" / "operations.md"
SERVICES = {"event_creator": 0, "focus_allocator": 1, "notification_service": 2, "auth_service": 3}

# Grafana's own variables, given the values Prometheus needs to evaluate the expressions.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
PROMQL_WORDS = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                          "unless", "offset", "inf", "nan"))
# Series Prometheus makes up itself for every target.
SYNTHETIC = frozenset(("up", "scrape_duration_seconds", "scrape_samples_scraped"))


def records(n: int, service: str, tag: str = "") -> list[dict[str, Any]]:
    return [{"timestamp": 1_700_000_000_000 + i, "service": service, "message": f"{tag}{service}-{i}"}
            for i in range(n)]


def cluster(root: Path, routers: int = 1, **kw: Any) -> Cluster:
    """A ``Cluster`` with ``routers`` routers (``router``, ``router-1``, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    return Cluster(root, routers=routers, **kw)


def scrape(port: int) -> str:
    status, _, body = http("GET", f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert status == 200, f"/metrics on :{port} answered {status}"
    return body.decode()


def metric_ports(c: Cluster) -> dict[str, int]:
    ports = {"router": c.router_metrics}
    ports.update({f"storage-{i}": c.worker_metrics_base + i for i in range(c.workers)})
    ports.update({f"gateway-{i}": c.gateway_metrics_base + i for i in range(c.gateways)})
    return ports


def exported_names(text: str) -> set[str]:
    """Every sample name a /metrics page declares: families with their _total/_bucket/... forms."""
    names: set[str] = set()
    for fam in text_string_to_metric_families(text):
        names.update(s.name for s in fam.samples)
        if fam.type == "counter":
            names.update((fam.name + "_total", fam.name + "_created"))
        elif fam.type == "histogram":
            names.update(fam.name + suffix for suffix in ("_bucket", "_sum", "_count", "_created"))
        else:
            names.add(fam.name)
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in dash["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            if (inner.get("datasource") or {}).get("type") == "loki":
                continue  # LogQL, checked against the gateway by tests/gateway/test_loki_query.py
            exprs.extend(t["expr"] for t in inner.get("targets", []) if t.get("expr"))
    return exprs


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, labels."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        if m.group(2) is None and m.group(1).lower() not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


# -- Prometheus -------------------------------------------------------------------------------


def prometheus_config(c: Cluster, interval: str = "300ms") -> str:
    """The shipped conf/prometheus.yml, its default ports mapped onto the test cluster's."""

    def port(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if 9100 <= n < 9110:
            return f"127.0.0.1:{c.router_metrics + n - 9100}"
        if 9110 <= n < 9120:
            return f"127.0.0.1:{c.worker_metrics_base + n - 9110}"
        if 9120 <= n < 9130:
            return f"127.0.0.1:{c.gateway_metrics_base + n - 9120}"
        raise AssertionError(f"conf/prometheus.yml scrapes an unexpected port {n}")

    text = re.sub(r"127\.0\.0\.1:(\d+)", port, PROMETHEUS_YML.read_text())
    text = re.sub(r"scrape_interval:\s*\S+", f"scrape_interval: {interval}", text)
    return re.sub(r"scrape_timeout:\s*\S+", f"scrape_timeout: {interval}", text)


@contextmanager
def prometheus(root: Path, config: str) -> Iterator[str]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(binary).exists():
        pytest.fail("the prometheus binary is missing: apt-get install prometheus (.ci/run does)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "prometheus.yml").write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_until(lambda: http("GET", url + "/-/ready", timeout=2)[0] == 200, 30, 0.1, "prometheus to be ready")
        yield url
    except BaseException:
        print(log_path.read_text(errors="replace")[-4000:])
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def prom_query(url: str, expr: str) -> list[dict[str, Any]]:
    status, _, body = http("GET", f"{url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=5)
    data = json.loads(body)
    assert status == 200 and data["status"] == "success", f"{expr!r}: {data}"
    return data["data"]["result"]  # type: ignore[no-any-return]


def prom_value(url: str, expr: str) -> float | None:
    result = prom_query(url, expr)
    return float(result[0]["value"][1]) if result else None


# -- tests ------------------------------------------------------------------------------------


def test_prometheus_scrapes_every_process_and_sums_the_records_sent(tmp_path: Path) -> None:
    with cluster(tmp_path / "cluster", gateways=2) as c:
        sent = 0
        for i, service in enumerate(list(SERVICES) * 6):
            status, body = c.post(records(7 + i % 5, service))
            assert status == 200, body
            sent += body["received"]
        status, _ = c.post([{"service": "", "message": "no service"}])
        assert status == 400  # counted as a request, not as records

        with prometheus(tmp_path / "prometheus", prometheus_config(c)) as url:
            def targets_up() -> list[dict[str, Any]]:
                _, _, body = http("GET", url + "/api/v1/targets", timeout=5)
                active = json.loads(body)["data"]["activeTargets"]
                return active if active and all(t["health"] == "up" for t in active) else []

            active = wait_until(targets_up, 20, 0.2, "every scrape target to be up")
            scraped = {int(t["scrapeUrl"].split(":")[2].split("/")[0]) for t in active}
            assert scraped == set(metric_ports(c).values())  # the shipped config covers every process
            assert {t["labels"]["job"] for t in active} == {"zlog-router", "zlog-storage", "zlog-gateway"}

            wait_until(lambda: prom_value(url, "sum(zlog_ingest_records_total)") == sent, 20, 0.2,
                       f"sum(zlog_ingest_records_total) == {sent}")
            assert prom_value(url, "sum(zlog_storage_records_total)") == sent
            assert prom_value(url, 'sum(zlog_ingest_requests_total{status="400"})') == 1
            assert prom_value(url, "count(zlog_ingest_records_total)") == 2  # one series per gateway
            by_partition = {r["metric"]["partition"]: float(r["value"][1])
                            for r in prom_query(url, "max by (partition) (zlog_storage_highest_offset)")}
            assert set(by_partition) == {"0", "1", "2", "3"} and all(v >= 0 for v in by_partition.values())

            # Every dashboard expression is valid PromQL, and those without errors in them show data.
            def all_have_data() -> bool:
                return all(prom_query(url, grafana_to_promql(e)) for e in dashboard_exprs() if "errors_total" not in e)

            wait_until(all_have_data, 20, 0.3, "every dashboard panel to show data")
            for expr in dashboard_exprs():
                prom_query(url, grafana_to_promql(expr))


def test_dashboard_names_only_metrics_the_cluster_exports_and_docs_list_them_all(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    used = set().union(*(promql_metric_names(e) for e in exprs))
    # The parser finds what it should (a wrong parser would make the subset check vacuous).
    assert promql_metric_names('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x!~"2.."}[5m]))) / b') == {
        "a_bucket", "b"}
    for required in ("zlog_ingest_records_total", "zlog_ingest_request_seconds_bucket", "zlog_ingest_requests_total",
                     "zlog_storage_disk_bytes", "zlog_storage_highest_offset", "zlog_router_workers_alive",
                     "zlog_router_inflight", "zlog_storage_fsync_seconds_bucket"):
        assert required in used, f"the dashboard does not show {required}"

    with cluster(tmp_path) as c:
        for service in SERVICES:
            assert c.post(records(3, service))[0] == 200
        assert c.post([{"service": "x"}])[0] == 400
        pages = {name: scrape(port) for name, port in metric_ports(c).items()}
        # Worker gauges appear at the first heartbeat after start: wait for them on both workers.
        wait_until(lambda: all("zlog_storage_highest_offset{" in scrape(c.worker_metrics_base + i)
                               for i in range(c.workers)), 10, 0.05, "worker gauges")
        pages.update({f"storage-{i}": scrape(c.worker_metrics_base + i) for i in range(c.workers)})
    exported = set().union(*(exported_names(text) for text in pages.values()))
    missing = sorted(used - exported - SYNTHETIC)
    assert not missing, f"dashboard expressions name metrics nobody exports: {missing}"

    # The issue's list, and the docs' reference table covering every zlog_* metric a process exports.
    for name in ("zlog_ingest_requests_total", "zlog_ingest_records_total", "zlog_ingest_bytes_total",
                 "zlog_ingest_request_seconds_bucket", "zlog_router_frames_total", "zlog_router_inflight",
                 "zlog_router_workers_alive", "zlog_storage_records_total", "zlog_storage_disk_bytes",
                 "zlog_storage_segments", "zlog_storage_highest_offset", "zlog_storage_fsync_seconds_bucket",
                 "zlog_recovery_truncated_bytes_total", "zlog_ingest_errors_total", "zlog_router_errors_total",
                 "zlog_storage_errors_total"):
        assert name in exported, name
    docs = OPERATIONS_MD.read_text()
    families = {(f.name + "_total" if f.type == "counter" else f.name)
                for text in pages.values() for f in text_string_to_metric_families(text)
                if f.name.startswith("zlog_")}
    undocumented = sorted(n for n in families if f"`{n}`" not in docs)
    assert not undocumented, f"docs/operations.md does not document {undocumented}"


def test_ready_follows_a_killed_worker_and_a_killed_router(tmp_path: Path) -> None:
    hb_s = 0.2
    with cluster(tmp_path, heartbeat_ms=int(hb_s * 1000)) as c:
        status, body = c.get("/ready")
        assert status == 200 and body["ready"] is True and body["owners"] == [0, 0, 1, 1]

        t0 = time.monotonic()
        c.kill("storage-1")  # SIGKILL: no DISCONNECT, the router must notice by itself
        status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(c.get("/ready")), 5, 0.01,
                                  "/ready to answer 503")
        elapsed = time.monotonic() - t0
        print(f"/ready noticed the SIGKILL after {elapsed:.3f}s")
        assert elapsed <= 3 * hb_s, f"/ready took {elapsed:.2f}s (> 3 heartbeats) to notice the dead worker"
        assert body["ready"] is False and body["owners"] == [0, 0, None, None]
        assert body["missing"] == ["partition 2 has no live owner", "partition 3 has no live owner"]
        status, health = c.get("/healthz")
        assert status == 200 and health["status"] == "ok"  # alive, just not ready
        wait_until(lambda: "zlog_router_workers_alive 1.0" in scrape(c.router_metrics), 5, 0.05,
                   "the router's workers_alive gauge to drop to 1")

        c.start("storage-1")  # waits until /ready is 200 with the new pid registered
        status, body = c.get("/ready")
        assert status == 200 and body["owners"] == [0, 0, 1, 1]
        assert c.procs["storage-1"].pid in {w["pid"] for w in body["workers"]}

        c.kill("router")
        status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(c.get("/ready")), 5, 0.01,
                                  "/ready to answer 503 without a router")
        assert body["router"] is False and body["missing"] == ["router"]
        c.start("router")
        assert c.get("/ready")[0] == 200


def test_ready_needs_one_live_router_of_several(tmp_path: Path) -> None:
    with cluster(tmp_path, routers=2, env_extra={"ZLOG_GATEWAY_PROCESSES": "1"}) as c:
        wait_until(lambda: all(w == 2 for w in (metadata_workers(c, 0), metadata_workers(c, 1))), 10, 0.05,
                   "both workers registered with both routers")
        c.kill("router")  # router 0: the gateway's first router
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:  # several heartbeats: /ready must not flap to 503
            status, body = c.get("/ready")
            assert status == 200, body
        assert c.post(records(3, "auth_service"))[0] == 200  # and produce does fail over
        code, out, _ = run_status(c, "--json")
        report = json.loads(out)
        assert code == 1 and [r["up"] for r in report["routers"]] == [False, True]
        assert [p["owner"] for p in report["partitions"]] == [0, 0, 1, 1]  # learned from router 1
        assert report["partitions"][3]["highest_offset"] == 2
        c.kill("router-1")
        status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(c.get("/ready")), 10, 0.05,
                                  "/ready to answer 503 with no router left")
        assert body["missing"] == ["router"]


def metadata_workers(c: Cluster, router: int) -> int:
    text = scrape(c.router_metrics + router)
    m = re.search(r"^zlog_router_workers_alive ([\d.]+)$", text, re.MULTILINE)
    return int(float(m.group(1))) if m else 0


def run_status(c: Cluster, *args: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "zlog", "status", *args], env=c.env, cwd=c.root,
                          capture_output=True, text=True, timeout=30)
    assert not proc.stderr.strip() or "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, time.monotonic() - t0


def test_status_shows_workers_partitions_and_offsets_and_says_what_is_down(tmp_path: Path) -> None:
    counts = {"event_creator": 3, "focus_allocator": 1, "notification_service": 2, "auth_service": 5}
    c = cluster(tmp_path, env_extra={"ZLOG_GATEWAY_PROCESSES": "1"})  # status expects every configured gateway
    with c:
        for service, n in counts.items():
            assert c.post(records(n, service))[0] == 200
        code, out, _ = run_status(c, "--json")
        assert code == 0, out
        report = json.loads(out)
        assert report["ok"] is True and report["problems"] == []
        workers = {w["worker"]: w for w in report["workers"]}
        assert workers[0]["partitions"] == [0, 1] and workers[1]["partitions"] == [2, 3]
        assert workers[0]["pid"] == c.procs["storage-0"].pid and workers[1]["pid"] == c.procs["storage-1"].pid
        assert all(w["up"] and w["last_heartbeat_ms_ago"] is not None and w["uptime_s"] is not None
                   for w in workers.values())
        parts = {p["partition"]: p for p in report["partitions"]}
        for service, n in counts.items():
            p = parts[SERVICES[service]]
            assert p["highest_offset"] == n - 1 and p["lowest_offset"] == 0 and p["bytes"] > 0, p
            assert p["owner"] == (0 if SERVICES[service] < 2 else 1)
        assert report["routers"][0]["up"] is True and report["routers"][0]["workers_alive"] == 2
        assert report["gateways"][0]["up"] and report["gateways"][0]["records"] == sum(counts.values())
        assert report["ready"]["status"] == 200

        c.kill("storage-1")
        wait_until(lambda: c.get("/ready")[0] == 503, 5, 0.02, "the dead worker to be noticed")
        code, out, took = run_status(c, "--json")
        assert code == 1 and took < 10
        report = json.loads(out)
        down = report["workers"][1]
        assert down["up"] is False and down["state"] == "down" and down["expected_partitions"] == [2, 3]
        assert [p["owner"] for p in report["partitions"]] == [0, 0, None, None]
        assert report["partitions"][0]["highest_offset"] == counts["event_creator"] - 1  # the live half still answers
        assert any("worker 1" in p for p in report["problems"])
        assert "partition 3 has no live owner" in report["problems"]

        code, text, _ = run_status(c)  # the table names the dead worker too
        assert code == 1
        assert re.search(r"^\s+1\s+DOWN\s", text, re.MULTILINE), text
        assert "ROUTERS" in text and "PARTITIONS" in text and "GATEWAYS" in text

        c.stop()
        code, out, took = run_status(c, "--json")  # nothing answers: a report, promptly, not a traceback
        report = json.loads(out)
        assert code == 1 and took < 10
        assert report["routers"][0]["up"] is False and all(not w["up"] for w in report["workers"])


def test_processes_log_one_json_object_per_line_with_ts_level_msg(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        assert c.post(records(5, "auth_service"))[0] == 200
        c.kill("storage-1")
        wait_until(lambda: c.get("/ready")[0] == 503, 5, 0.02, "the dead worker to be noticed")  # a WARN line
        c.start("storage-1")
    ts = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    levels: dict[str, set[str]] = {}
    for name, proc in c.procs.items():
        lines = [ln for ln in proc.log_path.read_text().splitlines() if ln.strip()]
        assert lines, f"{name} logged nothing"
        for line in lines:
            event = json.loads(line)  # raises on any unstructured line (a bare traceback, a print)
            assert isinstance(event, dict), line
            assert ts.match(event["ts"]) and event["level"] in ("DEBUG", "INFO", "WARN", "ERROR", "FATAL"), line
            assert isinstance(event["msg"], str) and event["msg"], line
            levels.setdefault(name, set()).add(event["level"])
    assert any(e for e in levels["router"] if e == "WARN")  # "worker gone" after the SIGKILL


def test_log_level_from_config_keeps_info_lines_out(tmp_path: Path) -> None:
    with cluster(tmp_path, env_extra={"ZLOG_LOG_LEVEL": "warning"}) as c:
        assert c.post(records(2, "auth_service"))[0] == 200
        c.kill("storage-1")
        wait_until(lambda: c.get("/ready")[0] == 503, 5, 0.02, "the dead worker to be noticed")
    events = [json.loads(line) for p in c.procs.values()
              for line in p.log_path.read_text().splitlines() if line.strip()]
    assert events and {e["level"] for e in events} <= {"WARN", "ERROR", "FATAL"}
    assert any(e["msg"] == "worker gone" and e["role"] == "router" for e in events)


def test_status_report_of_a_cluster_where_nothing_answers_is_a_list_of_problems() -> None:
    cfg = Config()
    down = "connection refused"
    raw = Raw(now=time.time(), metadata=[down], router_metrics=[down], stats={p: down for p in range(4)},
              worker_metrics={0: down, 1: down}, gateway_metrics=[down, down], health=down)
    report = build_report(cfg, raw)
    assert report["ok"] is False
    assert [w["state"] for w in report["workers"]] == ["down", "down"]
    assert report["problems"][0].startswith("router 0")
    assert "no router answered: partition owners are unknown" in report["problems"]
    text = render(report)
    assert "DOWN" in text and "PROBLEM" in text
