"""A minimal protobuf wire-format reader: varints (the snappy block's size preamble, read before
anything is inflated) and fields, for small messages not worth a generated class.

Invariants:
- Pure and bounded: works on one ``bytes``/``memoryview``, never reads past its end, never
  recurses on its own (callers decode nested messages explicitly), and raises ``ProtoError`` for
  anything malformed (a truncated varint or field, a length past the end, a deprecated group
  wire type, a field number of 0); it never returns a partial field.
- Unknown fields are skipped, as protobuf requires, so newer senders stay readable.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtoError("varint longer than 10 bytes")


def fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value): ints for VARINT/I64/I32, a memoryview for LEN."""
    buf = data if isinstance(data, memoryview) else memoryview(data)
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        number, wtype = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wtype == VARINT:
            value, pos = read_varint(buf, pos)
            yield number, wtype, value
        elif wtype == LEN:
            n, pos = read_varint(buf, pos)
            if n > end - pos:
                raise ProtoError(f"field {number} claims {n} bytes, {end - pos} left")
            yield number, wtype, buf[pos:pos + n]
            pos += n
        elif wtype == I64:
            if pos + 8 > end:
                raise ProtoError("truncated fixed64")
            yield number, wtype, int.from_bytes(buf[pos:pos + 8], "little")
            pos += 8
        elif wtype == I32:
            if pos + 4 > end:
                raise ProtoError("truncated fixed32")
            yield number, wtype, int.from_bytes(buf[pos:pos + 4], "little")
            pos += 4
        else:
            raise ProtoError(f"unsupported wire type {wtype} (field {number})")


def text(value: int | memoryview, what: str) -> str:
    if not isinstance(value, memoryview):
        raise ProtoError(f"{what}: expected a length-delimited string")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtoError(f"{what}: not valid UTF-8") from None


def message(value: int | memoryview, what: str) -> memoryview:
    if not isinstance(value, memoryview):
        raise ProtoError(f"{what}: expected an embedded message")
    return value


def to_signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value
