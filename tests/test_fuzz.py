"""Hostile input against one running cluster: HTTP bodies, raw HTTP framing, and zmq frames.

Invariants proved (hypothesis, bounded example counts; case counts printed at the end):
- ``POST /v1/logs`` never answers 5xx to a caller's mistake: random JSON of any type, records
  with wrong types, huge and deeply nested values, invalid UTF-8, broken gzip/deflate, NDJSON
  garbage, random bytes under any content type; raw sockets with a lying Content-Length get a
  4xx or a closed connection, never a 5xx and never a hang past the deadline.
- Random frame lists to the router's front socket, to its back socket (posing as a worker) and
  to a storage worker (from a ROUTER the worker is configured to connect to) crash nothing.
- Afterwards every process is alive, the cluster still stores a request (200), and every stored
  line is a valid 8-field record: nothing of the garbage was stored.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._cluster import Cluster, free_port, http, wait_until
from tools.chaos import stored_lines, valid_record
from zlog.protocol import wire

COUNTS: Counter[str] = Counter()
FUZZ_BACK: list[int] = []  # the extra router back endpoint the workers connect to, bound by the test
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
FEW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("fuzz"))
    c.env_extra["ZLOG_GATEWAY_REQUEST_TIMEOUT_MS"] = "1500"
    c.env_extra["ZLOG_LOG_LEVEL"] = "error"
    # Workers connect to every router back endpoint: a second one is ours, to fuzz the workers.
    FUZZ_BACK.append(free_port())
    text = c.config_path.read_text()
    c.config_path.write_text(text.replace(f'back = ["tcp://127.0.0.1:{c.back}"]',
                                          f'back = ["tcp://127.0.0.1:{c.back}", "tcp://127.0.0.1:{FUZZ_BACK[-1]}"]'))
    with c:
        yield c


def post(c: Cluster, body: bytes, headers: dict[str, str]) -> int:
    status, resp_headers, data = http("POST", c.url + "/v1/logs", body, headers, timeout=10)
    COUNTS[f"http {status}"] += 1
    if status >= 400:
        if resp_headers.get("Content-Type", "").startswith("application/json"):
            assert json.loads(data)["error"], data  # our errors are named JSON
        else:
            # aiohttp's HTTP parser refuses some bodies (a 1-byte deflate stream) before any
            # handler runs: a plain-text 400 that no middleware sees. Counted, and still a 4xx.
            COUNTS["plain-text 4xx from the HTTP parser"] += 1
            assert status < 500
    return status


def caller_error(status: int) -> None:
    assert status < 500, f"a caller's mistake was answered {status}"


# -- HTTP bodies ------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=40)
json_any = st.recursive(json_leaf, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5),
                        max_leaves=30)
field_value = json_any | st.text(max_size=300) | st.integers(-5, 2**64 + 5)
record = st.fixed_dictionaries({}, optional={"timestamp": field_value, "service": field_value, "level": field_value,
                                             "message": field_value, "labels": field_value | st.dictionaries(st.text(max_size=8), field_value, max_size=4),
                                             "extra": field_value})


@SETTINGS
@given(value=json_any)
def test_any_json_value(cluster: Cluster, value: Any) -> None:
    COUNTS["json values"] += 1
    caller_error(post(cluster, json.dumps(value).encode(), {"Content-Type": "application/json"}))


@SETTINGS
@given(records=st.lists(record, min_size=1, max_size=6))
def test_records_of_wrong_types(cluster: Cluster, records: list[dict[str, Any]]) -> None:
    COUNTS["record lists"] += 1
    caller_error(post(cluster, json.dumps(records).encode(), {"Content-Type": "application/json"}))


@FEW
@given(body=st.binary(max_size=2000), ctype=st.sampled_from(["application/json", "application/x-ndjson", "text/plain", ""]),
       encoding=st.sampled_from(["", "gzip", "deflate", "identity"]))
def test_random_bytes_any_type_and_encoding(cluster: Cluster, body: bytes, ctype: str, encoding: str) -> None:
    COUNTS["random bodies"] += 1
    headers = {"Content-Type": ctype} if ctype else {}
    if encoding:
        headers["Content-Encoding"] = encoding
    caller_error(post(cluster, body, headers))


@FEW
@given(prefix=st.text(max_size=30), bad=st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]))
def test_invalid_utf8(cluster: Cluster, prefix: str, bad: bytes) -> None:
    COUNTS["invalid utf-8"] += 1
    msg = json.dumps(prefix)[1:-1].encode()
    body = b'[{"service":"fuzz_service","message":"' + msg + bad + b'","labels":{"k":"' + bad + b'"}}]'
    caller_error(post(cluster, body, {"Content-Type": "application/json"}))


@FEW
@given(cut=st.integers(0, 200), flip=st.integers(0, 200), encoding=st.sampled_from(["gzip", "deflate"]))
def test_broken_compression(cluster: Cluster, cut: int, flip: int, encoding: str) -> None:
    COUNTS["broken gzip/deflate"] += 1
    raw = json.dumps([{"service": "fuzz_service", "message": "m" * 50}]).encode()
    data = bytearray(gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw))
    if flip < len(data):
        data[flip] ^= 0x5A
    data = data[: max(0, len(data) - cut)]
    caller_error(post(cluster, bytes(data), {"Content-Encoding": encoding}))


@FEW
@given(lines=st.lists(st.one_of(st.text(max_size=60), json_any.map(json.dumps), st.just(""), st.just("{")), min_size=1, max_size=8))
def test_ndjson_garbage(cluster: Cluster, lines: list[str]) -> None:
    COUNTS["ndjson"] += 1
    caller_error(post(cluster, "\n".join(lines).encode(errors="surrogatepass"), {"Content-Type": "application/x-ndjson"}))


def test_huge_and_deep_values(cluster: Cluster) -> None:
    cases = [
        ("deep arrays", b"[" * 100_000 + b"]" * 100_000),
        ("deep objects", b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("deep labels", json.dumps([{"service": "s", "message": "m", "labels": {"a": [[[[[[]]]]]]}}]).encode()),
        ("message over the limit", json.dumps([{"service": "s", "message": "x" * 70_000}]).encode()),
        ("service over the limit", json.dumps([{"service": "s" * 300, "message": "m"}]).encode()),
        ("too many labels", json.dumps([{"service": "s", "message": "m", "labels": {str(i): "v" for i in range(100)}}]).encode()),
        ("huge integer", b'[{"service":"s","message":"m","timestamp":' + b"9" * 5000 + b"}]"),
        ("body over 8 MiB", b"[" + b" " * (9 << 20) + b"]"),
        ("gzip bomb", gzip.compress(b"[" + b" " * (64 << 20) + b"]")),
    ]
    for name, body in cases:
        headers = {"Content-Encoding": "gzip"} if name == "gzip bomb" else {}
        status = post(cluster, body, {"Content-Type": "application/json", **headers})
        COUNTS["huge/deep"] += 1
        assert status in (400, 413), (name, status)


def raw_exchange(port: int, request: bytes, *, shut: bool, timeout: float = 6.0) -> tuple[bytes, float]:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(timeout)
        s.sendall(request)
        if shut:
            s.shutdown(socket.SHUT_WR)
        try:
            data = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            data = b"<no answer>"
    return data, time.monotonic() - t0


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(declared=st.one_of(st.integers(-10, 10_000), st.sampled_from(["abc", "1e3", " 5", "99999999999999999999", ""])),
       actual=st.integers(0, 300), shut=st.booleans(), chunked=st.booleans())
def test_lying_content_length(cluster: Cluster, declared: int | str, actual: int, shut: bool, chunked: bool) -> None:
    body = json.dumps([{"service": "fuzz_cl", "message": "y" * actual}]).encode()
    head = f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    data, took = raw_exchange(cluster.http_port, head.encode() + b"\r\n" + body, shut=shut)
    COUNTS["lying Content-Length"] += 1
    # A 4xx, or the server closing a connection it cannot parse; a body that never comes times out.
    assert took < 1.5 + 3.0, f"no answer within the deadline ({took:.1f}s)"
    if data.startswith(b"HTTP/1."):
        status = int(data.split(b" ", 2)[1])
        COUNTS[f"raw {status}"] += 1
        caller_error(status)
    else:
        COUNTS["raw closed"] += 1
        assert data in (b"", b"<no answer>") and took < 4.5


# -- zmq frames -------------------------------------------------------------------------------

def pack_or_garbage(obj: Any) -> bytes:
    try:
        return wire.pack_body(obj)
    except (OverflowError, TypeError, ValueError):  # ints beyond 64 bits
        return b"\xc1"  # never valid msgpack


frame = st.one_of(
    st.binary(max_size=40),
    st.just(wire.PROTOCOL),
    st.integers(0, 255).map(lambda i: bytes([i])),
    st.binary(min_size=8, max_size=8),
    st.integers(0, 9).map(lambda p: b"P" + p.to_bytes(4, "big")),
    st.binary(max_size=10).map(lambda k: b"K" + k),
    # msgpack maps: PRODUCE-like bodies with records that are not one-line JSON objects.
    st.fixed_dictionaries({"records": st.lists(st.binary(max_size=30).filter(lambda b: not (b[:1] == b"{" and b[-1:] == b"}")),
                                               max_size=3),
                           "max_ts": st.integers(-3, 2**64 - 1) | st.text(max_size=3),
                           "pid": st.binary(max_size=20), "seq": st.integers(-2, 5)}).map(lambda d: pack_or_garbage(d)),
    json_any.map(lambda v: pack_or_garbage({"x": v})),
)
frames_strategy = st.lists(frame, max_size=8)


@pytest.fixture(scope="module")
def zctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.term()


def _drain(sock: zmq.Socket[bytes], wait_ms: int) -> int:
    n = 0
    while sock.poll(wait_ms):
        sock.recv_multipart()
        n += 1
        wait_ms = 0
    return n


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(frames=frames_strategy)
def test_random_frames_to_the_router_front(cluster: Cluster, zctx: zmq.Context[zmq.Socket[bytes]], frames: list[bytes]) -> None:
    s = zctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(f"tcp://127.0.0.1:{cluster.front}")
        if frames:
            s.send_multipart(frames)
        COUNTS["front frames"] += 1
        COUNTS["front replies"] += _drain(s, 20)
    finally:
        s.close(0)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(frames=frames_strategy)
def test_random_frames_to_the_router_back(cluster: Cluster, zctx: zmq.Context[zmq.Socket[bytes]], frames: list[bytes]) -> None:
    s = zctx.socket(zmq.DEALER)  # posing as a storage worker
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(f"tcp://127.0.0.1:{cluster.back}")
        if frames:
            s.send_multipart(frames)
        COUNTS["back frames"] += 1
        _drain(s, 5)
    finally:
        s.close(0)


@pytest.fixture(scope="module")
def fake_router(cluster: Cluster, zctx: zmq.Context[zmq.Socket[bytes]]) -> Iterator[tuple[zmq.Socket[bytes], list[bytes]]]:
    s = zctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.ROUTER_MANDATORY, 1)
    s.bind(f"tcp://127.0.0.1:{FUZZ_BACK[-1]}")
    workers: set[bytes] = set()

    def heard_both() -> bool:
        while s.poll(50):
            workers.add(s.recv_multipart()[0])
        return len(workers) >= 2

    wait_until(heard_both, timeout=15, what="both workers to connect to the fuzzing router")
    yield s, sorted(workers)
    s.close(0)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(frames=frames_strategy, which=st.integers(0, 1))
def test_random_frames_to_a_worker(cluster: Cluster, fake_router: tuple[zmq.Socket[bytes], list[bytes]],
                                   frames: list[bytes], which: int) -> None:
    sock, workers = fake_router
    try:
        sock.send_multipart([workers[which], *frames], zmq.NOBLOCK)
    except zmq.ZMQError:
        COUNTS["worker frames undeliverable"] += 1  # the worker reconnected under a new pid
        return
    COUNTS["worker frames"] += 1
    COUNTS["worker replies"] += _drain(sock, 10)


def test_zz_everything_survived_and_nothing_garbage_was_stored(cluster: Cluster) -> None:
    for name, p in cluster.procs.items():
        assert p.alive(), f"{name} died:\n{cluster.logs(name)}"
    status, body = cluster.post([{"service": s, "message": "after the fuzzing"} for s in
                                 ("event_creator", "focus_allocator", "notification_service", "auth_service")])
    assert status == 200, body
    lines = list(stored_lines(cluster.data_dir, cluster.partitions))
    bad = [line for _, _, line in lines if not valid_record(json.loads(line))]
    COUNTS["stored lines checked"] = len(lines)
    print("\nfuzz cases: " + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))
    assert not bad, bad[:5]
    assert sum(v for k, v in COUNTS.items() if k.startswith("http 5")) == 0, COUNTS
