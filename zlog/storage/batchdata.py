"""A batch's bytes as stored: newline-terminated one-line JSON objects (pure).

Invariants:
- ``checked`` accepts exactly what ``encode_batch`` produces from valid lines, and names the
  first bad line otherwise (``InvalidRecord`` / ``RecordTooLarge`` with its index).
- ``split`` gives ``checked``'s verdict from the one split a caller also needs for a line-by-line
  check of its own (the worker's record check), so the bytes are split once for both.
- A ``Checked`` holds bytes that keep the stored form, their line count and the
  ``max_record_bytes`` they were checked against.
- A handful of C-level passes over the bytes and the lines, never a Python loop per line on the
  good path.
- ``is_stored_batch`` is the check of bytes read back against their batch entry (recovery, and a
  follower taking its leader's batches): the entry's hash, the line count and the final newline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import xxhash

from zlog.storage.errors import InvalidRecord, RecordTooLarge

_LAST_BYTE = itemgetter(-1)
_CLOSING = {0x7D}  # b"}"


@dataclass(frozen=True, slots=True)
class Checked:
    """A batch's bytes in the stored form, and how many lines they hold."""

    data: bytes
    records: int
    max_record_bytes: int  # the bound its lines were checked against


def encode_batch(lines: Sequence[bytes], max_record_bytes: int) -> Checked:
    """The batch as stored: lines joined by newlines plus a trailing one, checked by ``checked``."""
    if not lines:
        raise InvalidRecord("empty batch")
    try:
        data = b"\n".join([*lines, b""])
    except TypeError:
        raise InvalidRecord("records must be bytes") from None
    return checked(data, max_record_bytes)


def split(data: bytes, max_record_bytes: int) -> tuple[list[bytes], Checked | None]:
    """The lines of a batch blob (an unterminated tail is a line too) and, when ``checked``
    accepts the blob, its ``Checked`` (None when it does not: ``checked`` names why)."""
    lines = data.split(b"\n")
    if lines[-1]:
        return lines, None  # not newline-terminated
    lines.pop()
    # Every line starts with "{" when the least and the greatest do (bytes order; this also
    # rules out empty lines), and ends with "}" when the set of last bytes is {"}"}.
    if (lines and min(lines)[:1] == b"{" and max(lines)[:1] == b"{" and set(map(_LAST_BYTE, lines)) == _CLOSING
            and (len(data) <= max_record_bytes + 1 or max(map(len, lines)) <= max_record_bytes)):
        return lines, Checked(data, len(lines), max_record_bytes)
    return lines, None


def checked(data: bytes, max_record_bytes: int) -> Checked:
    """The batch with its line count, if it is newline-terminated one-line JSON objects of at most
    ``max_record_bytes``; ``InvalidRecord`` / ``RecordTooLarge`` naming the first bad line if not."""
    lines, ok = split(data, max_record_bytes)
    if ok is not None:
        return ok
    if not data:
        raise InvalidRecord("empty batch")
    tail = len(lines) - 1 if data[-1] != 0x0A else -1  # the index of an unterminated last line
    for i, line in enumerate(lines):
        if i == tail:
            raise InvalidRecord(f"record {i}: the batch does not end with a newline", index=i)
        if len(line) > max_record_bytes:
            raise RecordTooLarge(f"record {i}: {len(line)} bytes > {max_record_bytes}", index=i)
        if line[:1] != b"{" or line[-1:] != b"}":
            raise InvalidRecord(f"record {i}: not a one-line JSON object", index=i)
    raise InvalidRecord("not newline-terminated one-line JSON objects")  # unreachable


def is_stored_batch(data: bytes, count: int, data_hash: int) -> bool:
    """Whether ``data`` is the batch a ``.batches`` entry describes: its xxh3_64, ``count``
    newline-terminated lines. Bytes that pass were checked record by record when first stored."""
    return (count > 0 and data[-1:] == b"\n" and xxhash.xxh3_64_intdigest(data) == data_hash
            and data.count(b"\n") == count)
