"""The write path end to end: real gateway, router and storage worker processes on loopback."""

from __future__ import annotations

import gzip
import json
import signal
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cluster import Cluster, http, wait_until

EXAMPLE = [
    {"timestamp": 1795675988031, "service": "focus_allocator", "level": "ERROR",
     "message": "focus time suggestion generated", "labels": {"focus_type": "shallow_work", "duration_minutes": "25"}},
    {"timestamp": 1795675988290, "service": "auth_service", "level": "INFO", "message": "user login successful"},
]
FIELD_ORDER = ["timestamp", "service", "level", "message", "labels", "received_at", "ingested_node_id", "client_ip"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cluster")) as c:  # stops its processes whatever happens
        yield c


def test_original_example_is_stored_in_its_partition_with_enrichment(cluster: Cluster) -> None:
    before = int(time.time() * 1000)
    status, body = cluster.post(EXAMPLE)
    after = int(time.time() * 1000)
    assert status == 200, body
    assert body["received"] == 2
    assert {(s["partition"], s["count"]) for s in body["stored"]} == {(1, 1), (3, 1)}
    for share, original in zip(sorted(body["stored"], key=lambda s: s["partition"]), EXAMPLE, strict=True):
        lines = [line for _, line in cluster.stored_lines(share["partition"])]
        stored = json.loads(lines[share["offset"]])
        assert list(stored) == FIELD_ORDER
        assert stored["service"] == original["service"]
        assert stored["message"] == original["message"]
        assert stored["timestamp"] == original["timestamp"]
        assert before <= stored["received_at"] <= after
        assert stored["ingested_node_id"] == "test-node"
        assert stored["client_ip"] == "127.0.0.1"
    focus = [json.loads(line) for _, line in cluster.stored_lines(1)][-1]
    assert focus["labels"] == {"duration_minutes": "25", "focus_type": "shallow_work"}
    assert list(focus["labels"]) == ["duration_minutes", "focus_type"]  # stored sorted, as the original did
    auth = [json.loads(line) for _, line in cluster.stored_lines(3)][-1]
    assert auth["labels"] == {}


def test_pinned_partitions_of_the_original_services(cluster: Cluster) -> None:
    expect = {"event_creator": 0, "focus_allocator": 1, "notification_service": 2, "auth_service": 3}
    for service, partition in expect.items():
        status, body = cluster.post([{"timestamp": 1, "service": service, "message": "pin"}])
        assert status == 200
        assert [s["partition"] for s in body["stored"]] == [partition]


def test_ndjson_gzip_and_deflate_bodies(cluster: Cluster) -> None:
    ndjson = b"\n".join(json.dumps(r).encode() for r in EXAMPLE) + b"\n"
    status, body = cluster.post(None, raw=ndjson, headers={"Content-Type": "application/x-ndjson"})
    assert (status, body["received"]) == (200, 2)
    status, body = cluster.post(None, raw=gzip.compress(json.dumps(EXAMPLE).encode()),
                                headers={"Content-Encoding": "gzip"})
    assert (status, body["received"]) == (200, 2)
    status, body = cluster.post(None, raw=zlib.compress(json.dumps(EXAMPLE).encode()),
                                headers={"Content-Encoding": "deflate"})
    assert (status, body["received"]) == (200, 2)


def test_a_missing_timestamp_becomes_the_received_time(cluster: Cluster) -> None:
    status, body = cluster.post([{"service": "ts_default", "message": "no timestamp"}])
    assert status == 200
    share = body["stored"][0]
    line = [line for _, line in cluster.stored_lines(share["partition"])][share["offset"]]
    rec = json.loads(line)
    assert rec["timestamp"] == rec["received_at"]


INVALID_CASES = [
    ("empty object (the original stored it)", [{}], "service"),
    ("empty service", [{"service": "", "message": "m", "timestamp": 1}], "service"),
    ("service not a string", [{"service": 7, "message": "m"}], "service"),
    ("missing message", [{"service": "s", "timestamp": 1}], "message"),
    ("negative timestamp", [{"service": "s", "message": "m", "timestamp": -1}], "timestamp"),
    ("float timestamp", [{"service": "s", "message": "m", "timestamp": 1.5}], "timestamp"),
    ("string timestamp", [{"service": "s", "message": "m", "timestamp": "now"}], "timestamp"),
    ("level not a string", [{"service": "s", "message": "m", "level": 3}], "level"),
    ("nested labels", [{"service": "s", "message": "m", "labels": {"a": {"b": "c"}}}], "labels"),
    ("labels not a map", [{"service": "s", "message": "m", "labels": ["a"]}], "labels"),
    ("number label value", [{"service": "s", "message": "m", "labels": {"a": 1}}], "labels"),
    ("record not an object", ["hello"], ""),
]


@pytest.mark.parametrize(("name", "records", "field"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES])
def test_invalid_records_are_rejected_whole_and_named(cluster: Cluster, name: str, records: list[object],
                                                      field: str) -> None:
    before = sum(1 for _ in cluster.stored_lines())
    good = {"timestamp": 1, "service": "fine_service", "message": "valid"}
    status, body = cluster.post([good, *records])
    assert status == 400, body
    assert body["error"] == "INVALID_RECORD"
    assert body["errors"][0]["index"] == 1
    assert body["errors"][0]["field"] == field
    assert sum(1 for _ in cluster.stored_lines()) == before  # the valid record was not stored either


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"not json", 400, "INVALID_RECORD"),
        (b"[]", 400, "INVALID_RECORD"),
        (b"null", 400, "INVALID_RECORD"),
        (b'{"a": [1, 2', 400, "INVALID_RECORD"),
        (b"42", 400, "INVALID_RECORD"),
    ],
)
def test_bad_bodies_get_400(cluster: Cluster, raw: bytes, status: int, code: str) -> None:
    got, body = cluster.post(None, raw=raw)
    assert got == status
    assert body["error"] == code
    assert body["message"]


def test_body_limit_unsupported_encoding_and_method(cluster: Cluster) -> None:
    big = b"[" + b",".join([json.dumps({"service": "s", "message": "x" * 1000}).encode()] * 9000) + b"]"
    status, body = cluster.post(None, raw=big)
    assert (status, body["error"]) == (413, "PAYLOAD_TOO_LARGE")
    # A gzip bomb is bounded by the same limit after decompression.
    status, body = cluster.post(None, raw=gzip.compress(big), headers={"Content-Encoding": "gzip"})
    assert (status, body["error"]) == (413, "PAYLOAD_TOO_LARGE")
    status, body = cluster.post(EXAMPLE, headers={"Content-Encoding": "br-unknown"})
    assert (status, body["error"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    status, body = cluster.post(None, raw=b"\x1f\x8b garbage", headers={"Content-Encoding": "gzip"})
    assert status == 400
    status, _, data = http("PUT", cluster.url + "/v1/logs", b"[]")
    assert status == 405
    assert json.loads(data)["error"] == "METHOD_NOT_ALLOWED"


def test_idempotency_key_stores_a_retried_request_once(cluster: Cluster) -> None:
    records = [{"timestamp": 5, "service": s, "message": "once"} for s in ("idem_a", "idem_b", "idem_c")]
    before = sum(1 for _ in cluster.stored_lines())
    s1, b1 = cluster.post(records, headers={"Idempotency-Key": "req-42"})
    s2, b2 = cluster.post(records, headers={"Idempotency-Key": "req-42"})
    assert (s1, s2) == (200, 200)
    assert b1["stored"] == b2["stored"]  # the retry is told where the first one went
    assert sum(1 for _ in cluster.stored_lines()) == before + 3
    s3, _ = cluster.post(records, headers={"Idempotency-Key": "req-43"})
    assert s3 == 200
    assert sum(1 for _ in cluster.stored_lines()) == before + 6


def test_health_ready_and_metrics(cluster: Cluster) -> None:
    status, body = cluster.get("/healthz")
    assert status == 200 and body["status"] == "ok"
    status, body = cluster.get("/ready")
    assert status == 200 and body["ready"] is True and body["owners"] == [0, 0, 1, 1]
    status, _, data = http("GET", cluster.url + "/metrics")
    assert status == 200 and b"zlog_ingest_records_total" in data


# -- failures -----------------------------------------------------------------------------


def make_cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path, heartbeat_ms=200)


def test_sigkill_after_200_loses_nothing(tmp_path: Path) -> None:
    with make_cluster(tmp_path) as c:
        acked = []
        for i in range(30):
            status, _ = c.post([{"timestamp": i, "service": "auth_service", "message": f"kill-{i}"}])
            assert status == 200
            acked.append(f"kill-{i}")
        c.kill("storage-1")  # owns partition 3 (auth_service)
        c.start("storage-1")
        stored = [r["message"] for r in c.stored_records(3)]
        assert stored == acked  # present, in order, exactly once
        status, _ = c.post([{"timestamp": 99, "service": "auth_service", "message": "after restart"}])
        assert status == 200


def test_a_stopped_worker_gives_503_fast_and_the_partition_serves_again(tmp_path: Path) -> None:
    c = make_cluster(tmp_path)
    c.env_extra["ZLOG_GATEWAY_WAL"] = "false"  # without the ingest WAL there is nowhere to spool
    with c:
        assert c.terminate("storage-1") == 0  # graceful stop: says DISCONNECT
        t0 = time.monotonic()
        status, body = c.post([{"timestamp": 1, "service": "auth_service", "message": "down"}])
        assert status == 503
        assert time.monotonic() - t0 < 3.0  # within the deadline, not a hang
        assert body["error"] == "NO_OWNER" and body["failed"][0]["partition"] == 3
        status, _ = c.post([{"timestamp": 1, "service": "event_creator", "message": "other worker"}])
        assert status == 200  # partition 0 lives on worker 0
        status, _ = c.get("/ready")
        assert status == 503
        c.start("storage-1")
        status, body = c.post([{"timestamp": 1, "service": "auth_service", "message": "up again"}])
        assert status == 200, body


def test_a_killed_worker_is_noticed_within_three_heartbeats(tmp_path: Path) -> None:
    c = make_cluster(tmp_path)
    c.env_extra["ZLOG_GATEWAY_WAL"] = "false"
    with c:
        c.kill("storage-0")
        t0 = time.monotonic()
        wait_until(lambda: c.get("/ready")[0] == 503, timeout=5, what="/ready to turn 503")
        # 3 heartbeat intervals of 0.2 s, plus the router's housekeeping tick and a loaded machine.
        assert time.monotonic() - t0 < 3 * 0.2 + 2.0
        status, body = c.post([{"timestamp": 1, "service": "event_creator", "message": "x"}])
        assert status == 503 and body["error"] == "NO_OWNER"


def test_sigterm_stops_every_process_cleanly(tmp_path: Path) -> None:
    c = make_cluster(tmp_path)
    with c:
        status, _ = c.post(EXAMPLE)
        assert status == 200
        for name in ("gateway-0", "storage-0", "storage-1", "router"):
            assert c.terminate(name) == 0, c.logs(name)
    for name in ("gateway-0", "storage-0", "storage-1", "router"):
        log = c.procs[name].log_path.read_text()
        assert "stopped" in log, log
    assert len(list(c.stored_lines())) == 2


def test_second_sigterm_exits_at_once(tmp_path: Path) -> None:
    with make_cluster(tmp_path) as c:
        c.signal("storage-0", signal.SIGSTOP)
        c.signal("storage-0", signal.SIGTERM)
        c.signal("storage-0", signal.SIGTERM)
        c.signal("storage-0", signal.SIGCONT)
        p = c.procs["storage-0"].popen
        assert p is not None
        p.wait(10)


def test_one_produce_can_carry_several_partitions_of_one_owner(cluster: Cluster) -> None:
    import msgpack
    import zmq

    from zlog.protocol import bodies, wire

    def line(msg: str) -> bytes:
        return json.dumps({"timestamp": 7, "service": "x", "level": "", "message": msg, "labels": {},
                           "received_at": 7, "ingested_node_id": "raw", "client_ip": ""}).encode()

    before = {p: len(list(cluster.stored_lines(p))) for p in range(4)}
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{cluster.front}")
    try:
        # Partitions 0 and 1 belong to worker 0; partition 2 does not: it is refused on its own.
        body = bodies.multi_produce_body([(0, [line("a0"), line("a1")], 7, b"multi-test-0", 0, None),
                                        (1, [line("b0")], 7, None, None, None),
                                        (2, [line("c0")], 7, None, None, None)])
        sock.send_multipart(wire.encode(wire.Command.PRODUCE, 99, partition=0, body=body))
        assert sock.poll(5000), "no answer"
        reply = wire.decode(sock.recv_multipart())
        assert reply.command is wire.Command.ACK and reply.request_id == 99
        results = bodies.parse_multi_ack(reply.body)
        assert [type(r).__name__ for r in results] == ["Ack", "Ack", "Nack"]
        a0, b0, c0 = results
        assert isinstance(a0, bodies.Ack) and (a0.partition, a0.offset, a0.count) == (0, before[0], 2)
        assert isinstance(b0, bodies.Ack) and (b0.partition, b0.offset, b0.count) == (1, before[1], 1)
        assert isinstance(c0, bodies.Nack) and (c0.code, c0.partition, c0.retry) == ("NOT_OWNER", 2, True)
        assert len(list(cluster.stored_lines(2))) == before[2]
        # A retry of the same message is recognised batch by batch where it carries a producer id.
        sock.send_multipart(wire.encode(wire.Command.PRODUCE, 100, partition=0, body=body))
        assert sock.poll(5000)
        again = bodies.parse_multi_ack(wire.decode(sock.recv_multipart()).body)
        assert isinstance(again[0], bodies.Ack) and again[0].duplicate and again[0].offset == before[0]
        # A malformed multi body is refused whole.
        bad = msgpack.packb({"batches": [{"p": 0, "records": "not a list"}]})
        sock.send_multipart(wire.encode(wire.Command.PRODUCE, 101, partition=0, body=bad))
        assert sock.poll(5000)
        assert wire.decode(sock.recv_multipart()).command is wire.Command.NACK
    finally:
        sock.close(0)
        ctx.term()
