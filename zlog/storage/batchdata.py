"""A batch's bytes as stored: newline-terminated one-line JSON objects (pure).

Invariants:
- ``check_data`` accepts exactly what ``encode_batch`` produces from valid lines, and names the
  first bad line otherwise (``InvalidRecord`` / ``RecordTooLarge`` with its index).
- A handful of C-level passes over the bytes, never a Python loop per line on the good path.
"""

from __future__ import annotations

from collections.abc import Sequence

from zlog.storage.errors import InvalidRecord, RecordTooLarge


def encode_batch(lines: Sequence[bytes], max_record_bytes: int) -> bytes:
    """The batch as stored: lines joined by newlines plus a trailing one, checked by ``check_data``."""
    if not lines:
        raise InvalidRecord("empty batch")
    try:
        data = b"\n".join([*lines, b""])
    except TypeError:
        raise InvalidRecord("records must be bytes") from None
    check_data(data, max_record_bytes)
    return data


def check_data(data: bytes, max_record_bytes: int) -> int:
    """The number of lines of a batch as stored (newline-terminated one-line JSON objects of at most
    ``max_record_bytes``), or ``InvalidRecord`` naming the first bad line. A handful of C-level
    passes over the bytes instead of a Python loop per line."""
    if not data:
        raise InvalidRecord("empty batch")
    if len(data) <= max_record_bytes + 1:  # no line can be too long: no split needed
        n, longest = data.count(b"\n"), 0
    else:  # one split gives both the line count and the longest line
        parts = data.split(b"\n")
        n, longest = len(parts) - 1, max(map(len, parts))
    if (n and longest <= max_record_bytes and data[0] == 0x7B and data[-1] == 0x0A and data[-2] == 0x7D
            and data.count(b"}\n{") == n - 1):
        return n
    for i, line in enumerate(data.split(b"\n")):
        if i == n:
            raise InvalidRecord(f"record {i}: the batch does not end with a newline", index=i)
        if len(line) > max_record_bytes:
            raise RecordTooLarge(f"record {i}: {len(line)} bytes > {max_record_bytes}", index=i)
        if line[:1] != b"{" or line[-1:] != b"}":
            raise InvalidRecord(f"record {i}: not a one-line JSON object", index=i)
    raise InvalidRecord("not newline-terminated one-line JSON objects")  # unreachable
