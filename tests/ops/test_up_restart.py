"""``zlog up`` starts again at once after a cluster that served traffic stopped.

Connections the gateway closed linger in TIME_WAIT on its port; the start-up check must ask
whether something is listening there, not whether a plain bind would succeed.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import pytest

from tests._cluster import up_config
from tests.conftest import ProcessGroup
from zlog.ops.cluster import wait_ready

CONNECTIONS = 24
REQUESTS_PER_CONNECTION = 5
TCP_TIME_WAIT = "06"  # the state column of /proc/net/tcp


def _time_wait_on(port: int) -> int:
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == TCP_TIME_WAIT:
            count += 1
    return count


def _traffic(port: int, errors: list[str]) -> None:
    """Several keep-alive requests on one connection, left open: the gateway closes it at stop."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps([{"timestamp": int(time.time() * 1000), "service": "restart", "message": "hello"}])
    try:
        for _ in range(REQUESTS_PER_CONNECTION):
            conn.request("POST", "/v1/logs", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(f"status {resp.status}")
    except OSError as exc:
        errors.append(repr(exc))
    # Not closed here: the gateway closes first at stop, which leaves TIME_WAIT on its port.


@pytest.mark.cluster
def test_up_starts_again_within_a_second_after_serving_traffic(process_group: ProcessGroup, tmp_path: Path) -> None:
    cfg = up_config(tmp_path)
    config, http_port, url = cfg.path, cfg.http_port, cfg.url
    time_waits = []
    for run in range(3):
        started = time.monotonic()
        up = process_group.start(f"up-{run}", "--config", str(config), "up")
        process_group.wait_for(lambda: wait_ready(url, 1.0), timeout=60, what=f"run {run} to be ready")
        assert "is in use" not in up.output()
        errors: list[str] = []
        threads = [threading.Thread(target=_traffic, args=(http_port, errors)) for _ in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert process_group.stop(f"up-{run}", timeout=40) == 0
        time_waits.append(_time_wait_on(http_port))
        assert time.monotonic() - started < 60
        # The next start begins right away (well within a second of the stop).
    # The condition that used to make `up` refuse was there every time.
    assert all(n > 0 for n in time_waits), time_waits
