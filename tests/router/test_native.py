"""The router's charges of native producers' PRODUCE messages: what is counted, what is refused,
what is given back, with a fake clock and real bodies."""

from __future__ import annotations

import msgpack
import pytest

from zlog.config import TenantsConfig
from zlog.protocol import bodies
from zlog.protocol.wire import MalformedFrame
from zlog.router.native import NativeCharges, produce_size
from zlog.tenants.admission import Admission
from zlog.tenants.quotas import LimitsOf

LINE = b'{"timestamp":1,"service":"s","message":"m"}'


@pytest.mark.parametrize(("body", "records", "nbytes"), [
    (bodies.produce_body([LINE] * 3, 1), 3, 3 * (len(LINE) + 1)),
    (bodies.produce_body(LINE + b"\n", 1, b"pid", 7, "acme"), 1, len(LINE) + 1),
    (msgpack.packb({"records": [LINE, LINE], "max_ts": 1}), 2, 2 * (len(LINE) + 1)),
    (bodies.multi_produce_body([(0, [LINE] * 2, 1, None, None, None), (1, [LINE] * 5, 1, None, None, "t")]),
     7, 7 * (len(LINE) + 1)),
    # shapes the worker refuses count what they can: they are NACKed (and refunded) downstream
    (msgpack.packb({"data": "text", "max_ts": 1}), 0, 0),
    (msgpack.packb({"batches": [5, {"data": LINE + b"\n"}]}), 1, len(LINE) + 1),
    (b"", 0, 0),
])
def test_produce_size_counts_the_lines_themselves(body: bytes, records: int, nbytes: int) -> None:
    assert produce_size(body) == (records, nbytes)


def test_produce_size_of_garbage_is_bad_body() -> None:
    with pytest.raises(MalformedFrame) as exc:
        produce_size(b"\xc1")
    assert exc.value.code == "BAD_BODY"


def charges(**limits: float) -> NativeCharges:
    cfg = TenantsConfig(declared=(("slow", tuple(limits.items())),))
    return NativeCharges(Admission(), LimitsOf(cfg))


def body(n: int) -> bytes:
    return bodies.produce_body([LINE] * n, 1)


# (step, tenant, records, answer from the worker or None, expected refusal code or None)
SCENARIO = [
    ("within the burst", b"slow", 60, "ACK", None),
    ("the rest of the burst", b"slow", 40, "NACK", None),  # NACKed: its 40 come back
    ("what the NACK gave back", b"slow", 40, "ACK", None),
    ("over the rate", b"slow", 1, None, "TENANT_RATE_LIMITED"),
    ("another tenant, no limit", b"fast", 10_000, "ACK", None),
]


def test_a_native_producer_is_charged_refused_and_refunded_in_order() -> None:
    c = charges(records_per_s=100, burst_s=1.0)
    for i, (step, tenant, n, answer, refused) in enumerate(SCENARIO):
        key = (b"producer", bytes([i]))
        r = c.charge(tenant, key, body(n), 0.0)
        assert (r.code if r else None) == refused, step
        if refused:
            assert r is not None and r.retry_after_s >= 1 and "records_per_s" in r.message
            assert key not in c.held, step  # nothing to give back
        elif tenant == b"slow":
            assert key in c.held, step
            c.settle(key, stored_nothing=answer == "NACK")
        else:
            assert key not in c.held, step  # an unlimited tenant's body is not even read
    assert not c.held
    # one second later the bucket holds 100 again
    assert c.charge(b"slow", (b"p", b"x"), body(100), 1.0) is None


def test_bytes_limit_and_requests_lost_with_their_worker_stay_charged() -> None:
    c = charges(bytes_per_s=10 * (len(LINE) + 1), burst_s=1.0)
    assert c.charge(b"slow", (b"p", b"1"), body(10), 0.0) is None
    c.forget([(b"p", b"1")])  # WORKER_LOST: it may be stored, so its tokens stay taken
    assert not c.held
    r = c.charge(b"slow", (b"p", b"2"), body(1), 0.0)
    assert r is not None and r.code == "TENANT_RATE_LIMITED" and "bytes_per_s" in r.message


def test_a_malformed_body_of_a_limited_tenant_is_refused_as_bad_body() -> None:
    c = charges(records_per_s=100)
    r = c.charge(b"slow", (b"p", b"1"), b"\xc1", 0.0)
    assert r is not None and r.code == "BAD_BODY"


def line(service: str, **extra: object) -> bytes:
    import json

    return json.dumps({"timestamp": 1, "service": service, "message": "m", **extra}).encode()


@pytest.mark.parametrize(("body", "services"), [
    (bodies.produce_body([line("a"), line("b"), line("a")], 1), {"a", "b"}),
    (bodies.multi_produce_body([(0, [line("a")], 1, None, None, None), (1, [line("c")], 1, None, None, None)]),
     {"a", "c"}),
    (msgpack.packb({"records": [line("r"), 7]}), {"r"}),
    # a repeated key reads as the worker reads it (the last one), whatever the field order
    (bodies.produce_body([b'{"service":"first","message":"m","service":"last"}'], 1), {"last"}),
    (bodies.produce_body([b'{"message":"m","level":"x","service":"late"}'], 1), {"late"}),
    # lines msgspec cannot read fall back one by one; lines without a service string name none
    (bodies.produce_body([line("ok"), b"not json", b'{"service":5,"message":"m"}', b"[1]", line("")], 1), {"ok"}),
])
def test_the_services_of_a_body_are_read_from_its_lines(body: bytes, services: set[str]) -> None:
    found: set[str] = set()
    produce_size(body, found)
    assert found == services


def test_a_native_producer_over_max_services_is_refused_and_its_known_ones_are_not() -> None:
    c = charges(max_services=2)
    assert c.charge(b"slow", (b"p", b"1"), bodies.produce_body([line("a"), line("b")], 1), 0.0) is None
    r = c.charge(b"slow", (b"p", b"2"), bodies.produce_body([line("a"), line("c")], 1), 0.0)
    assert r is not None and r.code == "TOO_MANY_SERVICES" and "max_services" in r.message
    assert c.charge(b"slow", (b"p", b"3"), bodies.produce_body([line("b")] * 50, 1), 0.0) is None
    assert c.charge(b"other", (b"p", b"4"), bodies.produce_body([line(f"s{i}") for i in range(9)], 1), 0.0) is None
