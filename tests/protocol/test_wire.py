"""Wire protocol v1: every message and body round-trips; every malformed input is a MalformedFrame.

Invariants:
- ``decode`` and the ``parse_*`` functions raise ``MalformedFrame`` (with a NACK code) on any bad
  input and never anything else: a peer can never crash a process with a frame.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.protocol import bodies, wire
from zlog.protocol.bodies import Ack, Nack, Ready
from zlog.protocol.errors import KINDS
from zlog.protocol.wire import Command, MalformedFrame

RID = 0x0102030405060708


@pytest.mark.parametrize("command", list(Command))
@pytest.mark.parametrize(
    ("route", "partition", "key"),
    [({}, None, None), ({"partition": 3}, 3, None), ({"partition": 2**32 - 1}, 2**32 - 1, None),
     ({"key": b"auth_service"}, None, b"auth_service"), ({"key": b""}, None, b"")],
)
def test_every_command_and_route_round_trips(
    command: Command, route: dict[str, Any], partition: int | None, key: bytes | None
) -> None:
    frames = wire.encode(command, RID, body={"x": 1}, **route)
    assert len(frames) == 5 and frames[0] == wire.PROTOCOL
    msg = wire.decode(frames)
    assert (msg.command, msg.request_id, msg.partition, msg.key) == (command, RID, partition, key)
    assert msg.unpack() == {"x": 1}


def test_request_ids_cover_the_u64_range() -> None:
    for rid in (0, 1, 2**63, 2**64 - 1):
        assert wire.decode(wire.encode(Command.HEARTBEAT, rid)).request_id == rid
    assert wire.request_id_bytes(2**64 + 5) == wire.request_id_bytes(5)


def test_with_route_resolves_a_key_without_touching_the_body() -> None:
    body = bodies.produce_body([b'{"a":1}'], 7)
    frames = wire.encode(Command.PRODUCE, RID, key=b"svc", body=body)
    routed = wire.with_route(frames, 2)
    msg = wire.decode(routed)
    assert msg.partition == 2 and msg.key is None and msg.body == body
    assert routed[4] is frames[4]


def test_empty_body_is_an_empty_map() -> None:
    assert wire.decode(wire.encode(Command.HEARTBEAT, 1)).unpack() == {}


@pytest.mark.parametrize(
    ("pid", "seq", "tenant"), [(None, None, None), (b"p" * 16, 0, None), (b"\x00", 2**40, "acme")]
)
def test_produce_body_round_trips(pid: bytes | None, seq: int | None, tenant: str | None) -> None:
    lines = [b'{"timestamp":1,"service":"s","level":"","message":"m","labels":{}}', b"{}"]
    got = bodies.parse_produce(bodies.produce_body(lines, 1795675988031, pid, seq, tenant))
    assert got.records == lines
    assert (got.max_timestamp, got.producer_id, got.sequence, got.tenant) == (1795675988031, pid, seq, tenant)


def test_records_travel_as_one_blob_and_the_list_form_is_still_read() -> None:
    lines = [b'{"a":1}', b'{"b":2}']
    assert msgpack.unpackb(bodies.produce_body(lines, 1))["data"] == b'{"a":1}\n{"b":2}\n'
    assert bodies.produce_body(b'{"a":1}\n{"b":2}\n', 1) == bodies.produce_body(lines, 1)
    legacy = msgpack.packb({"records": lines, "max_ts": 1})
    assert bodies.parse_produce(legacy).data == b'{"a":1}\n{"b":2}\n'


@pytest.mark.parametrize("ack", [Ack(0, 0, 1), Ack(3, 2**40, 1000), Ack(1, -1, 5, duplicate=True)])
def test_ack_round_trips(ack: Ack) -> None:
    assert bodies.parse_ack(bodies.ack_body(ack)) == ack


@pytest.mark.parametrize("nack", [Nack("NO_OWNER", "partition 2 has no owner", True, 2), Nack("BAD_BODY", "x", False),
                                  Nack("TENANT_RATE_LIMITED", "over", True, 1, retry_after=3)])
def test_nack_round_trips(nack: Nack) -> None:
    assert bodies.parse_nack(bodies.nack_body(nack)) == nack
    msg = wire.decode(bodies.nack_frames(9, nack.code, nack.message, retry=nack.retry, partition=nack.partition,
                                         retry_after=nack.retry_after))
    assert msg.command is Command.NACK and msg.request_id == 9
    assert bodies.parse_nack(msg.body) == nack


def test_nack_of_garbage_is_still_a_nack() -> None:
    assert bodies.parse_nack(b"\xc1").code == "BAD_BODY"
    assert bodies.parse_nack(msgpack.packb({"code": 5, "partition": True})) == Nack("UNKNOWN", "", False, None)
    for wait in (True, -1, 0, "2", 10**6):  # a retry_after that is not a sane wait is no wait at all
        assert bodies.parse_nack(msgpack.packb({"code": "X", "retry_after": wait})).retry_after == 0


@pytest.mark.parametrize("ready", [Ready(0, (0, 1)), Ready(7, (), "node-a", 1234, 9117), Ready(3, (2,), "n", 1, 2, "10.0.0.7")])
def test_ready_round_trips(ready: Ready) -> None:
    assert bodies.parse_ready(bodies.ready_body(ready)) == ready


GOOD = wire.encode(Command.PRODUCE, RID, partition=1, body=bodies.produce_body([b"{}"], 0))


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([], "BAD_FRAMES"),
        (GOOD[:4], "BAD_FRAMES"),
        ([*GOOD, b""], "BAD_FRAMES"),
        ([b"", *GOOD], "BAD_FRAMES"),  # an identity envelope left on
        ([b"ZLOG2", *GOOD[1:]], "BAD_PROTOCOL"),
        ([b"", *GOOD[1:]], "BAD_PROTOCOL"),
        ([GOOD[0], b"", *GOOD[2:]], "BAD_COMMAND"),
        ([GOOD[0], b"\x00", *GOOD[2:]], "BAD_COMMAND"),
        ([GOOD[0], b"\xff", *GOOD[2:]], "BAD_COMMAND"),
        ([GOOD[0], b"\x01\x01", *GOOD[2:]], "BAD_COMMAND"),
        ([*GOOD[:2], b"\x00" * 7, *GOOD[3:]], "BAD_REQUEST_ID"),
        ([*GOOD[:2], b"\x00" * 9, *GOOD[3:]], "BAD_REQUEST_ID"),
        ([*GOOD[:3], b"X", GOOD[4]], "BAD_ROUTE"),
        ([*GOOD[:3], b"P\x00\x00\x01", GOOD[4]], "BAD_ROUTE"),
        ([*GOOD[:3], b"P\x00\x00\x00\x01\x00", GOOD[4]], "BAD_ROUTE"),
        ([*GOOD[:4], b"\x00" * (wire.MAX_BODY_BYTES + 1)], "BODY_TOO_LARGE"),
    ],
)
def test_malformed_frames_are_named(frames: list[bytes], code: str) -> None:
    with pytest.raises(MalformedFrame) as info:
        wire.decode(frames)
    assert info.value.code == code
    assert code in KINDS  # every code maps to an HTTP status and a retry flag


def _packed(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # never-used msgpack byte
        b"\x92\x01",  # truncated array
        _packed([1, 2]),
        _packed("records"),
        _packed({1: 2}),
        _packed({}),
        _packed({"records": []}),
        _packed({"records": "x"}),
        _packed({"records": ["text, not bin"]}),
        _packed({"records": [b"{}"], "max_ts": -1}),
        _packed({"records": [b"{}"], "max_ts": "1"}),
        _packed({"records": [b"{}"], "max_ts": True}),
        _packed({"records": [b"{}"], "pid": b"x" * 17, "seq": 1}),
        _packed({"records": [b"{}"], "pid": b"", "seq": 1}),
        _packed({"records": [b"{}"], "pid": "text", "seq": 1}),
        _packed({"records": [b"{}"], "pid": b"p"}),
        _packed({"records": [b"{}"], "seq": 1}),
        _packed({"records": [b"{}"], "pid": b"p", "seq": -1}),
        _packed({"records": [b"{}"], "tenant": 5}),
        _packed({"data": b""}),
        _packed({"data": "text, not bin"}),
        _packed({"data": [b"{}\n"]}),
    ],
)
def test_malformed_produce_bodies_are_bad_body(body: bytes) -> None:
    with pytest.raises(MalformedFrame) as info:
        bodies.parse_produce(body)
    assert info.value.code == "BAD_BODY"


@pytest.mark.parametrize(
    ("parse", "body"),
    [
        (bodies.parse_ack, _packed({"partition": 0, "count": 1})),
        (bodies.parse_ack, _packed({"partition": -1, "offset": 0, "count": 1})),
        (bodies.parse_ack, _packed({"partition": 0, "offset": -2, "count": 1})),
        (bodies.parse_ack, _packed({"partition": "0", "offset": 0, "count": 1})),
        (bodies.parse_ready, _packed({"worker": 0})),
        (bodies.parse_ready, _packed({"worker": 0, "partitions": [0, -1]})),
        (bodies.parse_ready, _packed({"worker": 0, "partitions": [True]})),
        (bodies.parse_ready, _packed({"partitions": [0]})),
        (bodies.parse_ready, _packed({"worker": 0, "partitions": [0], "pid": -5})),
        (wire.unpack_body, _packed(None)),
    ],
)
def test_malformed_reply_bodies_are_bad_body(parse: Any, body: bytes) -> None:
    with pytest.raises(MalformedFrame) as info:
        parse(body)
    assert info.value.code == "BAD_BODY"


# -- nothing but MalformedFrame, whatever arrives -----------------------------------------

_PARSERS = (bodies.parse_produce, bodies.parse_ack, bodies.parse_ready, wire.unpack_body)

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
frame = st.binary(max_size=24) | st.sampled_from([wire.PROTOCOL, bytes([Command.PRODUCE]), b"P\x00\x00\x00\x01", b"K"])


def _only_malformed(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except MalformedFrame as exc:
        assert exc.code in KINDS


@settings(max_examples=400, deadline=None)
@given(st.lists(frame, max_size=7))
def test_random_frame_lists_never_raise_anything_else(frames: list[bytes]) -> None:
    try:
        msg = wire.decode(frames)
    except MalformedFrame as exc:
        assert exc.code in KINDS
        return
    for parse in _PARSERS:
        _only_malformed(parse, msg.body)
    bodies.parse_nack(msg.body)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 4), st.binary(max_size=16))
def test_a_damaged_valid_message_never_raises_anything_else(index: int, junk: bytes) -> None:
    frames = list(GOOD)
    frames[index] = junk
    _only_malformed(wire.decode, frames)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["records", "max_ts", "pid", "seq", "tenant", "partition", "offset",
                                        "count", "duplicate", "worker", "partitions", "node", "pid",
                                        "metrics_port", "code", "message", "retry"]), msgpack_values, max_size=6)
       | msgpack_values)
def test_random_bodies_never_raise_anything_else(obj: Any) -> None:
    body = _packed(obj)
    for parse in _PARSERS:
        _only_malformed(parse, body)
    bodies.parse_nack(body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_body_bytes_never_raise_anything_else(body: bytes) -> None:
    for parse in _PARSERS:
        _only_malformed(parse, body)
    bodies.parse_nack(body)
