"""The syslog listener in a real cluster, fed by util-linux ``logger`` (RFC 5424 / 3164, TCP / UDP)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests._cluster import Cluster, http, wait_until
from tests._intake import exactly

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(intake_cluster: Cluster) -> Cluster:
    return intake_cluster


def metric(cluster: Cluster, name: str, **labels: str) -> float:
    _, _, data = http("GET", f"http://127.0.0.1:{cluster.syslog_metrics}/metrics")  # type: ignore[attr-defined]
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in data.decode().splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[line.index("{") + 1:line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def logger(cluster: Cluster, *args: str, lines: list[str], tmp_path: Path) -> None:
    src = tmp_path / f"{uuid.uuid4().hex}.txt"
    src.write_text("\n".join(lines) + "\n")
    udp = "-d" in args
    port = cluster.udp if udp else cluster.tcp  # type: ignore[attr-defined]
    cmd = ["logger", "-n", "127.0.0.1", "-P", str(port), *args, "-f", str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


CASES = [
    ("rfc5424-tcp-octets", ["--rfc5424", "-T", "--octet-count"]),
    ("rfc5424-tcp-lf", ["--rfc5424", "-T"]),
    ("rfc5424-udp", ["--rfc5424", "-d"]),
    ("rfc3164-tcp", ["--rfc3164", "-T"]),
    ("rfc3164-udp", ["--rfc3164", "-d"]),
]


@pytest.mark.parametrize(("name", "args"), CASES)
def test_logger_messages_are_stored_exactly(cluster: Cluster, tmp_path: Path, name: str, args: list[str]) -> None:
    app = f"{name}-{uuid.uuid4().hex[:6]}"
    extra = ["--sd-id", "zlog@32473", "--sd-param", 'shard="7"', "--msgid", "M1"] if "--rfc5424" in args else []
    lines = [f"line {i} of {name}" for i in range(20)]
    before = time.time()
    logger(cluster, *args, "-t", app, "-p", "local3.warning", *extra, lines=lines, tmp_path=tmp_path)
    after = time.time()
    got = exactly(cluster, app, 20)
    assert sorted(r["message"] for r in got) == sorted(lines)
    r0 = got[0]
    assert (r0["service"], r0["level"]) == (app, "WARN")
    assert r0["labels"]["facility"] == "local3" and r0["labels"]["source"] == "syslog"
    assert r0["labels"]["host"].split(".")[0] == socket.gethostname().split(".")[0]
    if "--rfc5424" in args:
        # RFC 5424 carries microseconds and an offset: the exact time logger stamped, to the ms.
        assert all(int(before * 1000) - 1 <= r["timestamp"] <= int(after * 1000) for r in got)
        assert r0["metadata"]["zlog@32473.shard"] == "7" and r0["metadata"]["msgid"] == "M1"
        assert "procid" not in r0["metadata"] or r0["metadata"]["procid"].isdigit()
    else:
        # RFC 3164: seconds, local time, no zone: read in this receiver's zone.
        assert all(int(before) * 1000 <= r["timestamp"] <= int(after) * 1000 for r in got)


def test_bad_and_oversized_messages_are_counted_never_stored(cluster: Cluster) -> None:
    app = f"bad-{uuid.uuid4().hex[:6]}"
    dropped = metric(cluster, "zlog_syslog_dropped_total", listener="tcp", reason="too_long")
    invalid = metric(cluster, "zlog_syslog_dropped_total", listener="tcp", reason="invalid_utf8")
    no_pri = metric(cluster, "zlog_syslog_dropped_total", listener="udp", reason="no_pri")
    with socket.create_connection(("127.0.0.1", cluster.tcp)) as s:  # type: ignore[attr-defined]
        big = f"<14>1 - - {app} - - - ".encode() + b"x" * (1024 * 1024)
        s.sendall(b"%d " % len(big) + big)  # octet counted, 1 MB: skipped to its end
        s.sendall(f"<14>1 - - {app} - - - ".encode() + b"\xff\xfe bad utf-8\n")
        s.sendall(f"<14>1 - - {app} - - - after the bad ones\n".encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"no pri at all", ("127.0.0.1", cluster.udp))  # type: ignore[attr-defined]
    got = exactly(cluster, app, 1)
    assert got[0]["message"] == "after the bad ones"
    wait_until(lambda: metric(cluster, "zlog_syslog_dropped_total", listener="udp", reason="no_pri") == no_pri + 1,
               what="the UDP drop to be counted")
    assert metric(cluster, "zlog_syslog_dropped_total", listener="tcp", reason="too_long") == dropped + 1
    assert metric(cluster, "zlog_syslog_dropped_total", listener="tcp", reason="invalid_utf8") == invalid + 1
    stored = metric(cluster, "zlog_syslog_messages_total", listener="tcp", outcome="stored")
    parsed = metric(cluster, "zlog_syslog_messages_total", listener="tcp", outcome="parsed")
    assert stored == parsed > 0


def test_status_shows_each_source(cluster: Cluster, tmp_path: Path) -> None:
    app = f"status-{uuid.uuid4().hex[:6]}"
    logger(cluster, "--rfc5424", "-T", "-t", app, lines=["one", "two"], tmp_path=tmp_path)
    ns = time.time_ns()
    body = f'{{"streams":[{{"stream":{{"app":"{app}"}},"values":[["{ns}","pushed"]]}}]}}'.encode()
    assert http("POST", cluster.url + "/loki/api/v1/push", body, {"Content-Type": "application/json"})[0] == 204
    exactly(cluster, app, 3)
    done = subprocess.run([sys.executable, "-m", "zlog", "status", "--json"], env=cluster.env, capture_output=True,
                          text=True, timeout=60)
    report = json.loads(done.stdout)
    sources = {s["source"]: s for s in report["sources"]}
    assert sources["loki"]["stored"] >= 1
    tcp = sources["syslog/tcp"]
    assert tcp["stored"] >= 2 and tcp["parsed"] >= tcp["stored"] and tcp["dropped"] is not None
    assert "syslog/udp" in sources
    text = subprocess.run([sys.executable, "-m", "zlog", "status"], env=cluster.env, capture_output=True,
                          text=True, timeout=60).stdout
    assert "SOURCES" in text and "syslog/tcp" in text
