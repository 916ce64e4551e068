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
  only by their consumers through ``zlog.protocol.bodies``, which validates each schema.
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
    ADMIT = 0x0C  # gateway -> router: may this tenant ingest this much now? (its rate limits)


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
