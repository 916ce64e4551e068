"""Loki push against a real cluster, sent by real Loki clients (unmodified), read back through /v1/logs."""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import json
import logging
import subprocess
import time
import uuid

import cramjam
import logging_loki
import pytest
from loki_logger_handler.loki_logger_handler import LokiLoggerHandler

from tests._cluster import Cluster, http
from tests._intake import exactly, records
from tests._npm import node_clients

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(intake_cluster: Cluster) -> Cluster:
    return intake_cluster


def push(cluster: Cluster, body: bytes, ctype: str = "application/json", path: str = "/loki/api/v1/push",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return http("POST", cluster.url + path, body, {"Content-Type": ctype, **(headers or {})})


def now_ns() -> int:
    return time.time_ns()


def created_ms(created: float) -> int:
    # python-logging-loki writes record.created as RFC 3339 with microseconds, local offset
    d = dt.datetime.fromtimestamp(created, tz=dt.UTC)
    return calendar.timegm(d.utctimetuple()) * 1000 + d.microsecond // 1000


def test_python_logging_loki_default_legacy_format(cluster: Cluster) -> None:
    svc = f"pyloki-v0-{uuid.uuid4().hex[:6]}"
    handler = logging_loki.LokiHandler(url=cluster.url + "/api/prom/push", tags={"service": svc, "build": 42})
    logger = logging.getLogger(svc)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    seen: list[logging.LogRecord] = []
    handler.addFilter(lambda r: seen.append(r) or True)
    for i in range(5):
        (logger.warning if i == 3 else logger.error)("legacy line %d with \"quotes\"", i)
    got = exactly(cluster, svc, 5)
    assert [r["message"] for r in got] == [f'legacy line {i} with "quotes"' for i in range(5)]
    assert [r["timestamp"] for r in got] == [created_ms(r.created) for r in seen]
    assert [r["level"] for r in got] == ["ERROR", "ERROR", "ERROR", "WARN", "ERROR"]
    assert got[0]["labels"] == {"build": "42", "logger": svc, "service": svc, "severity": "error", "source": "loki"}


def test_python_logging_loki_version_1(cluster: Cluster) -> None:
    svc = f"pyloki-v1-{uuid.uuid4().hex[:6]}"
    handler = logging_loki.LokiHandler(url=cluster.url + "/loki/api/v1/push", tags={"app": svc, "pid": 7},
                                       version="1")
    logger = logging.getLogger(svc)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    before = int(time.time() * 1000)
    for i in range(4):
        logger.info("v1 line %d", i)
    after = int(time.time() * 1000)
    got = exactly(cluster, svc, 4)
    assert [r["message"] for r in got] == [f"v1 line {i}" for i in range(4)]
    assert all(before <= r["timestamp"] <= after for r in got)
    assert got[0]["service"] == svc and got[0]["level"] == "INFO"
    assert got[0]["labels"]["pid"] == "7"  # a number sent as a label value is stored as a string


def test_loki_logger_handler_gzip_with_structured_metadata(cluster: Cluster) -> None:
    svc = f"llh-{uuid.uuid4().hex[:6]}"
    handler = LokiLoggerHandler(url=cluster.url + "/loki/api/v1/push", labels={"service_name": svc},
                                timeout=0.1, compressed=True, enable_structured_loki_metadata=True,
                                loki_metadata={"region": "eu-1"}, enable_self_errors=True)
    logger = logging.getLogger(svc)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    before = int(time.time() * 1000)
    for i in range(6):
        logger.info("gzip line %d", i, extra={"loki_metadata": {"request_id": f"r{i}"}})
    got = exactly(cluster, svc, 6)
    after = int(time.time() * 1000) + 1000
    assert sorted(json.loads(r["message"])["message"] for r in got) == [f"gzip line {i}" for i in range(6)]
    assert all(before <= r["timestamp"] <= after for r in got)
    metas = sorted((r["metadata"]["request_id"], r["metadata"]["region"]) for r in got)
    assert metas == [(f"r{i}", "eu-1") for i in range(6)]
    logger.removeHandler(handler)


def test_winston_loki_protobuf_snappy(cluster: Cluster) -> None:
    js = node_clients()
    svc = f"winston-{uuid.uuid4().hex[:6]}"
    first = int(time.time() * 1000) - 5000
    done = subprocess.run(["node", "winston_push.js", cluster.url, svc, "25", str(first)], cwd=js,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    got = exactly(cluster, svc, 25)
    by_ts = sorted(got, key=lambda r: r["timestamp"])
    assert [r["timestamp"] for r in by_ts] == [first + i for i in range(25)]
    assert [r["message"].split(" {")[0] for r in by_ts] == [f"winston line {i}" for i in range(25)]
    assert [r["level"] for r in by_ts] == ["WARN" if i % 2 else "INFO" for i in range(25)]
    assert by_ts[0]["labels"] == {"level": "info", "service_name": svc, "shard": "7", "source": "loki"}


def test_pino_loki_json_with_metadata(cluster: Cluster) -> None:
    js = node_clients()
    svc = f"pino-{uuid.uuid4().hex[:6]}"
    first = int(time.time() * 1000) - 3000
    done = subprocess.run(["node", "pino_push.mjs", cluster.url, svc, "12", str(first)], cwd=js,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    got = sorted(exactly(cluster, svc, 12), key=lambda r: r["timestamp"])
    assert [r["timestamp"] for r in got] == [first + i for i in range(12)]
    assert [json.loads(r["message"])["msg"] for r in got] == [f"pino line {i}" for i in range(12)]
    assert [r["level"] for r in got] == ["ERROR" if i % 3 == 2 else "INFO" for i in range(12)]
    assert [r["metadata"] for r in got] == [{"attempt": str(i), "trace_id": f"trace-{i}"} for i in range(12)]


def _proto_push(streams: list[tuple[str, list[tuple[int, str]]]]) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(num: int, payload: bytes) -> bytes:
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    body = b""
    for labels, entries in streams:
        s = field(1, labels.encode())
        for ns, line in entries:
            ts = varint(1 << 3) + varint(ns // 10**9) + varint(2 << 3) + varint(ns % 10**9)
            s += field(2, field(1, ts) + field(2, line.encode()))
        body += field(1, s)
    return body


def test_duplicate_streams_and_equal_timestamps_are_all_kept(cluster: Cluster) -> None:
    svc = f"dups-{uuid.uuid4().hex[:6]}"
    ns = now_ns()
    stream = {"stream": {"job": svc}, "values": [[str(ns), "same"], [str(ns), "same"], [str(ns), "other"]]}
    status, _, data = push(cluster, json.dumps({"streams": [stream, stream]}).encode())
    assert (status, data) == (204, b"")
    got = exactly(cluster, svc, 6)
    assert sorted(r["message"] for r in got) == ["other", "other", "same", "same", "same", "same"]
    assert {r["timestamp"] for r in got} == {ns // 1_000_000}


def test_label_set_partitions_when_no_service_label(cluster: Cluster) -> None:
    ns = now_ns()
    tag = uuid.uuid4().hex[:6]
    body = json.dumps({"streams": [{"stream": {"team": tag, "env": "prod"}, "values": [[str(ns), "x"]]}]})
    assert push(cluster, body.encode())[0] == 204
    got = exactly(cluster, f'{{env="prod", team="{tag}"}}', 1)
    assert got[0]["labels"] == {"env": "prod", "source": "loki", "team": tag}


def test_gzip_deflate_and_protobuf_snappy_bodies(cluster: Cluster) -> None:
    svc = f"enc-{uuid.uuid4().hex[:6]}"
    ns = now_ns()
    body = json.dumps({"streams": [{"stream": {"service": svc}, "values": [[str(ns), "gz"]]}]}).encode()
    assert push(cluster, gzip.compress(body), headers={"Content-Encoding": "gzip"})[0] == 204
    import zlib
    assert push(cluster, zlib.compress(body.replace(b"gz", b"df")), headers={"Content-Encoding": "deflate"})[0] == 204
    raw = _proto_push([(f'{{service="{svc}", level="error"}}', [(ns + 1_000_000, "pb1"), (ns + 2_000_000, "pb2")])])
    status, _, data = push(cluster, bytes(cramjam.snappy.compress_raw(raw)), "application/x-protobuf")
    assert (status, data) == (204, b""), data
    got = sorted(exactly(cluster, svc, 4), key=lambda r: (r["timestamp"], r["message"]))
    assert [r["message"] for r in got] == ["df", "gz", "pb1", "pb2"]
    assert [r["level"] for r in got[2:]] == ["ERROR", "ERROR"]
    assert got[3]["timestamp"] == (ns + 2_000_000) // 1_000_000


BAD = [
    ("text/plain", b"{}", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ("application/json", b'{"streams": [', 400, "invalid JSON"),
    ("application/x-protobuf", b"\xff\xff\xff", 400, "snappy"),
    ("application/x-protobuf", bytes(cramjam.snappy.compress_raw(b"\x0a\x09\x0a\x03abc")), 400, "PushRequest"),
    ("application/json", json.dumps({"streams": [{"stream": {"a.b": "x"}, "values": [["1", "y"]]}]}).encode(),
     400, "invalid label name"),
]


@pytest.mark.parametrize(("ctype", "body", "status", "text"), BAD)
def test_bad_pushes_are_refused_with_a_reason(cluster: Cluster, ctype: str, body: bytes, status: int, text: str) -> None:
    got, _, data = push(cluster, body, ctype)
    assert got == status, data
    assert text in data.decode()


def test_a_bad_stream_refuses_the_whole_push_and_names_the_stream(cluster: Cluster) -> None:
    svc = f"reject-{uuid.uuid4().hex[:6]}"
    ns = now_ns()
    good = {"stream": {"service": svc}, "values": [[str(ns), "fine"]]}
    cases = [
        ({"stream": {"service": svc, "kind": "old"}, "values": [[str(ns // 10**9), "seconds, not ns"]]}, "too old",
         f'{{kind="old", service="{svc}"}}'),
        ({"stream": {"service": svc, "kind": "new"}, "values": [[str(ns + 3600 * 10**9), "future"]]}, "too new",
         f'{{kind="new", service="{svc}"}}'),
        ({"stream": {"service": svc, "kind": "big"}, "values": [[str(ns), "x" * (65 * 1024)]]}, "longer than",
         f'{{kind="big", service="{svc}"}}'),
        ({"stream": {"service": svc, **{f"l{i}": "v" for i in range(10_000)}}, "values": [[str(ns), "many"]]},
         "10001 labels, more than", '{l0="v", l1="v", l10="v", '),  # the text is cut at 256 characters
    ]
    for bad, reason, stream in cases:
        status, _, data = push(cluster, json.dumps({"streams": [good, bad]}).encode())
        assert status == 400, data
        err = json.loads(data)
        assert reason in err["reason"] and err["error"] == "INVALID_RECORD"
        assert err["stream"].startswith(stream)
    legacy = {"streams": [{"labels": f'{{service="{svc}"}}', "entries": [{"ts": "yesterday", "line": "x"}]}]}
    status, _, data = push(cluster, json.dumps(legacy).encode(), path="/api/prom/push")
    assert status == 400 and "RFC 3339" in data.decode()
    time.sleep(0.3)
    assert records(cluster, svc) == []  # nothing of any refused push was stored


def test_idempotency_key_stores_a_retried_push_once(cluster: Cluster) -> None:
    svc = f"idem-{uuid.uuid4().hex[:6]}"
    body = json.dumps({"streams": [{"stream": {"service": svc}, "values": [[str(now_ns()), "once"]]}]}).encode()
    for _ in range(3):
        assert push(cluster, body, headers={"Idempotency-Key": svc})[0] == 204
    exactly(cluster, svc, 1)


def test_broken_gzip_and_a_10_mb_line_are_refused(cluster: Cluster) -> None:
    svc = f"huge-{uuid.uuid4().hex[:6]}"
    status, _, data = push(cluster, b"\x1f\x8b\x08 not gzip at all", headers={"Content-Encoding": "gzip"})
    assert status == 400 and b"could not read the body" in data
    line = "x" * (10 * 1024 * 1024)
    body = json.dumps({"streams": [{"stream": {"service": svc}, "values": [[str(now_ns()), line]]}]}).encode()
    status, _, data = push(cluster, body)
    assert status == 413 and json.loads(data)["error"] == "PAYLOAD_TOO_LARGE"
    status, _, data = push(cluster, gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert status == 413, data  # the limit holds after decompression too
    time.sleep(0.2)
    assert records(cluster, svc) == []
