"""zlog wire protocol v1: the only place frames are built or parsed.

A message is a list of ZeroMQ frames (after any ROUTER identity envelope):

    [PROTOCOL, COMMAND, REQUEST_ID, ROUTE, BODY]

- PROTOCOL   b"ZLOG1" (name + version; another version is rejected, never guessed at)
- COMMAND    one byte, ``Command``
- REQUEST_ID 8 bytes, unsigned big-endian, chosen by the sender; replies echo it
- ROUTE      b"" (none) | b"P" + 4-byte big-endian partition | b"K" + key bytes (router hashes)
- BODY       msgpack (b"" means an empty map)

Between router and workers one frame is prepended: REPLY_TO, the producer's identity on the
router's front socket (b"" for messages that the router or the worker originate). The worker
echoes it, so the router keeps no per-request state to route a reply.

Invariants:
- ``decode`` never trusts its input: any malformed frame list raises ``MalformedFrame`` with a
  code; nothing here asserts on peer data or raises anything else.
- ``decode`` does not unpack the body: the router forwards bodies untouched. Bodies are parsed
  only by their consumers through the ``parse_*`` functions, which validate the schema.
- Records travel as pre-encoded JSON lines (msgpack bin), so no hop re-encodes a record.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

PROTOCOL = b"ZLOG1"
MAX_BODY_BYTES = 64 * 1024 * 1024
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_MAX_REQUEST_ID = (1 << 64) - 1


class Command(IntEnum):
    PRODUCE = 0x01  # producer -> router -> worker: a batch of records for one partition
    ACK = 0x02  # worker -> router -> producer: the batch is stored (and durable per policy)
    NACK = 0x03  # any -> sender: the request failed; body says why and whether to retry
    FETCH = 0x04  # read by offset (Kafka fetch)
    SEARCH = 0x05  # filtered scan of one partition
    RESULT = 0x06  # reply to FETCH / SEARCH / STATS / METADATA
    READY = 0x07  # worker -> router: I own these partitions
    HEARTBEAT = 0x08  # both ways; any traffic also counts as liveness
    DISCONNECT = 0x09  # a peer leaves on purpose
    METADATA = 0x0A  # producer -> router: partition count and owners
    STATS = 0x0B  # -> worker (routed by partition): partition statistics


_COMMANDS = {int(c): c for c in Command}


class MalformedFrame(ValueError):
    """A peer sent something that is not a valid v1 message. ``code`` is the NACK code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Message:
    command: Command
    request_id: int
    partition: int | None
    key: bytes | None
    body: bytes

    def unpack(self) -> dict[str, Any]:
        return unpack_body(self.body)


# -- frames -------------------------------------------------------------------------------


def encode(
    command: Command,
    request_id: int,
    *,
    partition: int | None = None,
    key: bytes | None = None,
    body: bytes | dict[str, Any] = b"",
) -> list[bytes]:
    if not 0 <= request_id <= _MAX_REQUEST_ID:
        raise ValueError(f"request id out of range: {request_id}")
    if partition is not None:
        if not 0 <= partition <= 0xFFFFFFFF:
            raise ValueError(f"partition out of range: {partition}")
        route = b"P" + _U32.pack(partition)
    elif key is not None:
        route = b"K" + key
    else:
        route = b""
    if not isinstance(body, bytes):
        body = pack_body(body)
    return [PROTOCOL, bytes((command,)), _U64.pack(request_id), route, body]


def decode(frames: Sequence[bytes]) -> Message:
    if len(frames) != 5:
        raise MalformedFrame("BAD_FRAMES", f"expected 5 frames, got {len(frames)}")
    proto, cmd, rid, route, body = frames
    if proto != PROTOCOL:
        raise MalformedFrame("BAD_PROTOCOL", f"unsupported protocol {bytes(proto[:16])!r}")
    if len(cmd) != 1 or cmd[0] not in _COMMANDS:
        raise MalformedFrame("BAD_COMMAND", f"unknown command {bytes(cmd[:4])!r}")
    if len(rid) != 8:
        raise MalformedFrame("BAD_REQUEST_ID", "request id must be 8 bytes")
    partition: int | None = None
    key: bytes | None = None
    if route:
        kind = route[0]
        if kind == 0x50 and len(route) == 5:  # b"P"
            partition = _U32.unpack_from(route, 1)[0]
        elif kind == 0x4B:  # b"K"
            key = bytes(route[1:])
        else:
            raise MalformedFrame("BAD_ROUTE", "route must be empty, P+u32 or K+key")
    if len(body) > MAX_BODY_BYTES:
        raise MalformedFrame("BODY_TOO_LARGE", "body exceeds the protocol limit")
    return Message(_COMMANDS[cmd[0]], _U64.unpack(rid)[0], partition, key, bytes(body))


def with_route(frames: list[bytes], partition: int) -> list[bytes]:
    """The same message routed to an explicit partition (the router resolving a key)."""
    return [frames[0], frames[1], frames[2], b"P" + _U32.pack(partition), frames[4]]


def echo_id(frame: bytes) -> bytes:
    """The request-id frame to echo in a reply: the sender's, or zeros when it is not 8 bytes."""
    return frame if len(frame) == 8 else bytes(8)


def request_id_bytes(request_id: int) -> bytes:
    return _U64.pack(request_id & _MAX_REQUEST_ID)


# -- bodies -------------------------------------------------------------------------------


def pack_body(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise MalformedFrame("BAD_BODY", f"body is not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise MalformedFrame("BAD_BODY", "body must be a msgpack map")
    return obj


def _int(obj: dict[str, Any], name: str, default: int | None = None, *, minimum: int = 0) -> int:
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MalformedFrame("BAD_BODY", f"{name} must be an integer >= {minimum}")
    return value


def _opt_int(obj: dict[str, Any], name: str) -> int | None:
    return None if obj.get(name) is None else _int(obj, name)


@dataclass(frozen=True, slots=True)
class ProduceBody:
    records: list[bytes]
    max_timestamp: int
    producer_id: bytes | None
    sequence: int | None
    tenant: str | None


def produce_body(
    records: Sequence[bytes],
    max_timestamp: int,
    producer_id: bytes | None = None,
    sequence: int | None = None,
    tenant: str | None = None,
) -> bytes:
    obj: dict[str, Any] = {"records": list(records), "max_ts": max_timestamp}
    if producer_id is not None:
        obj["pid"] = producer_id
        obj["seq"] = sequence
    if tenant is not None:
        obj["tenant"] = tenant
    return msgpack.packb(obj, use_bin_type=True)


def parse_produce(body: bytes) -> ProduceBody:
    return produce_from(unpack_body(body))


def produce_from(obj: dict[str, Any]) -> ProduceBody:
    """A single-partition PRODUCE from its unpacked body."""
    records = obj.get("records")
    if not isinstance(records, list) or not records:
        raise MalformedFrame("BAD_BODY", "records must be a non-empty list")
    for r in records:
        if not isinstance(r, bytes):
            raise MalformedFrame("BAD_BODY", "every record must be msgpack bin (JSON line bytes)")
    pid = obj.get("pid")
    if pid is not None and (not isinstance(pid, bytes) or not 1 <= len(pid) <= 16):
        raise MalformedFrame("BAD_BODY", "pid must be 1..16 bytes")
    seq = _opt_int(obj, "seq")
    if (pid is None) != (seq is None):
        raise MalformedFrame("BAD_BODY", "pid and seq go together")
    tenant = obj.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise MalformedFrame("BAD_BODY", "tenant must be a string")
    return ProduceBody(records, _int(obj, "max_ts", 0), pid, seq, tenant)


def multi_produce_body(batches: Sequence[tuple[int, Sequence[bytes], int, bytes | None, int | None]]) -> bytes:
    """Several partitions' batches in one PRODUCE, for partitions with the same owner (Kafka's
    produce request): ``(partition, records, max_ts, producer id, sequence)`` each. The route
    frame names the first partition; the worker answers one ACK with a result per batch."""
    items = []
    for partition, records, max_ts, pid, seq in batches:
        item: dict[str, Any] = {"p": partition, "records": list(records), "max_ts": max_ts}
        if pid is not None:
            item["pid"] = pid
            item["seq"] = seq
        items.append(item)
    return msgpack.packb({"batches": items}, use_bin_type=True)


def parse_multi_produce(obj: dict[str, Any]) -> list[tuple[int, ProduceBody]]:
    """The batches of an unpacked multi-partition PRODUCE body, each validated like a single one."""
    items = obj.get("batches")
    if not isinstance(items, list) or not items:
        raise MalformedFrame("BAD_BODY", "batches must be a non-empty list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise MalformedFrame("BAD_BODY", "every batch must be a map")
        out.append((_int(item, "p"), produce_from(item)))
    return out


@dataclass(frozen=True, slots=True)
class Ack:
    partition: int
    offset: int  # base offset of the batch; -1 if a duplicate too old to remember
    count: int
    duplicate: bool = False


def ack_body(ack: Ack) -> bytes:
    return msgpack.packb(
        {"partition": ack.partition, "offset": ack.offset, "count": ack.count, "duplicate": ack.duplicate}
    )


def parse_ack(body: bytes) -> Ack:
    return _ack_from(unpack_body(body))


def _ack_from(obj: dict[str, Any]) -> Ack:
    return Ack(
        _int(obj, "partition"),
        _int(obj, "offset", minimum=-1),
        _int(obj, "count"),
        bool(obj.get("duplicate", False)),
    )


@dataclass(frozen=True, slots=True)
class Nack:
    code: str
    message: str
    retry: bool
    partition: int | None = None


def nack_body(nack: Nack) -> bytes:
    obj: dict[str, Any] = {"code": nack.code, "message": nack.message, "retry": nack.retry}
    if nack.partition is not None:
        obj["partition"] = nack.partition
    return msgpack.packb(obj)


def parse_nack(body: bytes) -> Nack:
    try:
        obj = unpack_body(body)
    except MalformedFrame as exc:
        return Nack("BAD_BODY", str(exc), False)
    code = obj.get("code")
    msg = obj.get("message")
    part = obj.get("partition")
    return Nack(
        code if isinstance(code, str) else "UNKNOWN",
        msg if isinstance(msg, str) else "",
        bool(obj.get("retry", False)),
        part if isinstance(part, int) and not isinstance(part, bool) else None,
    )


def nack_frames(request_id: int, code: str, message: str, *, retry: bool, partition: int | None = None) -> list[bytes]:
    return encode(Command.NACK, request_id, partition=partition, body=nack_body(Nack(code, message, retry, partition)))


def multi_ack_body(results: Sequence[Ack | Nack]) -> bytes:
    """The answer to a multi-partition PRODUCE: one ACK or NACK per batch, in request order."""
    out: list[dict[str, Any]] = []
    for r in results:
        if isinstance(r, Ack):
            out.append({"partition": r.partition, "offset": r.offset, "count": r.count, "duplicate": r.duplicate})
        else:
            out.append({"partition": r.partition, "code": r.code, "message": r.message, "retry": r.retry})
    return msgpack.packb({"results": out})


def parse_multi_ack(body: bytes) -> list[Ack | Nack]:
    obj = unpack_body(body)
    items = obj.get("results")
    if not isinstance(items, list):
        raise MalformedFrame("BAD_BODY", "results must be a list")
    out: list[Ack | Nack] = []
    for item in items:
        if not isinstance(item, dict):
            raise MalformedFrame("BAD_BODY", "every result must be a map")
        if "code" in item:
            part = item.get("partition")
            out.append(Nack(str(item["code"]), str(item.get("message", "")), bool(item.get("retry", False)),
                            part if isinstance(part, int) and not isinstance(part, bool) else None))
        else:
            out.append(_ack_from(item))
    return out


@dataclass(frozen=True, slots=True)
class Ready:
    worker_id: int
    partitions: tuple[int, ...]
    node: str = ""
    pid: int = 0
    metrics_port: int = 0


def ready_body(ready: Ready) -> bytes:
    return msgpack.packb(
        {
            "worker": ready.worker_id,
            "partitions": list(ready.partitions),
            "node": ready.node,
            "pid": ready.pid,
            "metrics_port": ready.metrics_port,
        }
    )


def parse_ready(body: bytes) -> Ready:
    obj = unpack_body(body)
    parts = obj.get("partitions")
    if not isinstance(parts, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in parts):
        raise MalformedFrame("BAD_BODY", "partitions must be a list of integers >= 0")
    node = obj.get("node", "")
    return Ready(
        _int(obj, "worker"),
        tuple(parts),
        node if isinstance(node, str) else "",
        _int(obj, "pid", 0),
        _int(obj, "metrics_port", 0),
    )
