"""One real cluster shared by the intake tests (Loki push, OTLP, bulk, syslog), and their read-back.

Invariants:
- ``intake_cluster`` (session scope, from tests/conftest.py) is router, 2 workers, a gateway and
  the syslog listener on loopback ports chosen at run time; each test writes under its own
  service names (a fresh uuid), so tests sharing it never see each other's records.
- ``exactly`` waits for ``n`` records, then checks again a moment later that no more arrived: a
  doubled record fails the test instead of passing early.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests._cluster import Cluster, free_port, http, wait_until


def start(root: Path) -> Iterator[Cluster]:
    tcp, udp, metrics = free_port(), free_port(), free_port()
    c = Cluster(root, toml_extra=f"""
[syslog]
tcp = "127.0.0.1:{tcp}"
udp = "127.0.0.1:{udp}"
metrics_port = {metrics}
max_message_bytes = 8192
linger_ms = 5
""")
    c.procs["syslog"] = c._proc("syslog", ["syslog"])
    c.tcp, c.udp, c.syslog_metrics = tcp, udp, metrics  # type: ignore[attr-defined]
    with c:
        wait_until(lambda: http("GET", f"http://127.0.0.1:{metrics}/metrics", timeout=1)[0] == 200,
                   timeout=40, what="the syslog listener")
        yield c


def records(cluster: Cluster, service: str) -> list[dict[str, Any]]:
    """Every record of ``service``, oldest first (ties by message), through GET /v1/logs."""
    q = urllib.parse.urlencode({"service": service, "limit": "1000", "direction": "forward", "since": "0"})
    status, body = cluster.get("/v1/logs?" + q)
    assert status == 200, body
    return sorted(body["records"], key=lambda r: (r["timestamp"], r["message"]))


def exactly(cluster: Cluster, service: str, n: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(records(cluster, service)) >= n, timeout=15, what=f"{n} records of {service}")
    time.sleep(0.2)  # anything extra (a doubled record) would have arrived by now
    got = records(cluster, service)
    assert len(got) == n, [r["message"] for r in got]
    return got
