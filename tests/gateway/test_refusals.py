"""Every refusal of the gateway is JSON: unknown routes, wrong methods, and requests aiohttp's
parser refuses before any handler runs, each with its usual status and ``{"error", "message"}``."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._cluster import Cluster, http

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("refusals"), workers=1, partitions=2)
    with c:
        yield c


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are and read one answer; the server closes after a refusal."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def _assert_json_error(status: int, headers: dict[str, str], body: bytes, expected_status: int, code: str) -> None:
    assert status == expected_status
    content_type = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert content_type.startswith("application/json"), content_type
    err = json.loads(body)
    assert err["error"] == code and isinstance(err["message"], str) and err["message"]


def test_unknown_route_is_a_json_404(cluster: Cluster) -> None:
    _assert_json_error(*http("GET", f"{cluster.url}/no/such/thing"), 404, "NOT_FOUND")


def test_wrong_method_is_a_json_405_with_allow(cluster: Cluster) -> None:
    status, headers, body = http("DELETE", f"{cluster.url}/v1/logs")
    _assert_json_error(status, headers, body, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in {k.lower(): v for k, v in headers.items()}["allow"]


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
        (b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 400),
    ],
    ids=["not-http", "header-without-colon", "bad-version", "bad-content-length", "bad-chunk",
         "line-too-long", "header-too-long"],
)
def test_requests_the_parser_refuses_get_json(cluster: Cluster, request_bytes: bytes, expected: int) -> None:
    status, headers, body = _raw(cluster.http_port, request_bytes)  # read to EOF: the server closed
    _assert_json_error(status, headers, body, expected, "BAD_REQUEST")
    assert b"bbbb" not in body and b"aaaa" not in body  # the request is not echoed back


def test_the_gateway_still_serves_after_refusals(cluster: Cluster, tmp_path: Path) -> None:
    status, _ = cluster.post([{"timestamp": 1, "service": "s", "message": "after refusals"}])
    assert status == 200


def _answers(port: int, request: bytes, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Send bytes on one keep-alive connection and read ``count`` answers (Content-Length bodies)."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while len(out) < count:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                assert chunk, f"closed after {len(out)} answers"
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            n = int(headers.get("content-length", "0"))
            while len(data) < n:
                data += s.recv(65536)
            body, data = data[:n], data[n:]
            out.append((int(lines[0].split()[1]), headers, body))
    return out


def test_the_hot_route_answers_as_through_the_router(cluster: Cluster) -> None:
    # POST /v1/logs skips the router's lookup (zlog.gateway.server._HotRoutes): the middlewares,
    # the security headers and every other route must be as they are without it.
    body = b'[{"timestamp": 1, "service": "s", "message": "hot route"}]'

    def post(path: str, extra: str = "", payload: bytes = body) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload

    answers = _answers(cluster.http_port, post("/v1/logs") + post("/v1/logs", "X-Scope-OrgID: bad/tenant\r\n")
                       + post("/v1/logs", payload=b"[{}]") + post("/v1/logs/") + post("/v1/logs?acks=maybe")
                       + post("/v1/logs", "Expect: 100-continue\r\n"), 7)
    (ok, ok_h, ok_b), bad_tenant, invalid, slash, bad_acks, cont, after_cont = answers
    assert ok == 200 and json.loads(ok_b)["received"] == 1
    assert "script-src 'self'" in ok_h["content-security-policy"] and ok_h["x-content-type-options"] == "nosniff"
    assert bad_tenant[0] == 400 and json.loads(bad_tenant[2])["error"] == "INVALID_TENANT"  # the auth middleware
    assert invalid[0] == 400 and json.loads(invalid[2])["error"] == "INVALID_RECORD"
    _assert_json_error(*slash, 404, "NOT_FOUND")
    assert bad_acks[0] == 400 and json.loads(bad_acks[2])["error"] == "BAD_PARAMETER"
    assert cont[0] == 100 and after_cont[0] == 200  # Expect goes the router's way, which answers 100 first


def test_a_body_that_stalls_is_refused_at_the_request_deadline(tmp_path: Path) -> None:
    # A body still arriving when the handler starts is read under the deadline (one that has all
    # arrived is read without a timer): late but in time is stored, stalled is a 408.
    import time

    with Cluster(tmp_path, workers=1, partitions=2,
                 env_extra={"ZLOG_GATEWAY_REQUEST_TIMEOUT_MS": "1500"}) as c:
        body = b'[{"timestamp": 1, "service": "s", "message": "late body"}]'
        head = f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", c.http_port), timeout=10) as s:
            s.sendall(head + body[:10])
            time.sleep(0.3)
            s.sendall(body[10:])
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        ((status, headers, answer),) = _answers(c.http_port, head + body[:10], 1)  # the rest never comes
        assert 1.2 < time.monotonic() - t0 < 8
        _assert_json_error(status, headers, answer, 408, "REQUEST_TIMEOUT")
