"""Paging across partitions: cursors, the k-way page merge, and the stored-line helpers it uses (pure).

``/v1/logs`` asks each partition in scope for a SEARCH answer and merges them with ``PageMerge``
into one page plus a ``Cursor`` to resume from; a live tail's event ids are forward cursors too.

Invariants:
- Pure: no sockets, files or clocks.
- A cursor is opaque (base64url of JSON) and holds, per partition, the offset to resume from:
  for ``backward`` the next offset to examine going down (``-1`` = exhausted), for ``forward`` the
  next offset to examine going up. It also binds the direction and a digest of the filter, so a
  cursor replayed with other filters is refused instead of silently skipping records, and the
  tenant that made it (``t``; a cursor without one is the default tenant's), which the gateway
  checks: another tenant's cursor is not found (404), never read with the caller's data.
- A cursor this server did not make is ``BadParameter`` naming the parameter it came in (HTTP 400).
- A page never repeats or skips a record relative to the previous page's cursor, although
  timestamps are not monotonic within a partition (see ``PageMerge``).
- Stored lines are never re-encoded: ``with_position`` splices ``partition`` and ``offset`` into
  the bytes, and ``timestamp_of`` reads the leading ``timestamp`` without a full parse when it can.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from zlog.protocol.errors import BadParameter

EXHAUSTED = -1

_TS_PREFIX = b'{"timestamp":'


# -- stored lines -------------------------------------------------------------------------


def timestamp_of(line: bytes) -> int:
    """The record's timestamp; fast for lines that start with it (all of ours), 0 if unreadable."""
    if line.startswith(_TS_PREFIX):
        end = line.find(b",", 13)
        if end > 13:
            digits = line[13:end]
            if digits.isdigit():
                return int(digits)
    try:
        rec = loads_record(line)
    except ValueError:
        return 0
    ts = rec.get("timestamp")
    return ts if type(ts) is int else 0


def loads_record(line: bytes) -> dict[str, Any]:
    rec = orjson.loads(line)
    if type(rec) is not dict:
        raise ValueError("a stored line is not a JSON object")
    return rec


def with_position(line: bytes, partition: int, offset: int) -> bytes:
    """The stored JSON object with ``partition`` and ``offset`` added, without re-encoding it."""
    line = line.rstrip(b"\n")
    tail = b'"partition":%d,"offset":%d}' % (partition, offset)
    if line.endswith(b"{}") and len(line) == 2:
        return b"{" + tail
    return line[:-1] + b"," + tail


def page_order(item: tuple[int, int, bytes]) -> tuple[int, int, int]:
    """The order of a page's (partition, offset, line) items: by timestamp, then partition, offset."""
    return timestamp_of(item[2]), item[0], item[1]


# -- cursors ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """Per partition, the offset to resume from (see the module invariants)."""

    backward: bool
    positions: Mapping[int, int]
    filter_digest: str = ""
    tenant: str | None = None

    def encode(self) -> str:
        obj: dict[str, Any] = {
            "v": 1,
            "d": "b" if self.backward else "f",
            "f": self.filter_digest,
            "p": {str(p): o for p, o in sorted(self.positions.items())},
        }
        if self.tenant is not None:
            obj["t"] = self.tenant
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    def exhausted(self) -> bool:
        return self.backward and all(o == EXHAUSTED for o in self.positions.values())


def decode_cursor(text: str, name: str = "cursor") -> Cursor:
    if len(text) > 8192:
        raise BadParameter(name, "too long")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        obj = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise BadParameter(name, "not a cursor this server made") from None
    if not isinstance(obj, dict) or obj.get("v") != 1 or obj.get("d") not in ("b", "f"):
        raise BadParameter(name, "not a cursor this server made")
    parts = obj.get("p")
    digest = obj.get("f", "")
    tenant = obj.get("t")
    if not isinstance(parts, dict) or not isinstance(digest, str) or not isinstance(tenant, str | None):
        raise BadParameter(name, "not a cursor this server made")
    positions: dict[int, int] = {}
    for k, v in parts.items():
        if not k.isdigit() or type(v) is not int or v < EXHAUSTED:
            raise BadParameter(name, "not a cursor this server made")
        positions[int(k)] = v
    return Cursor(obj["d"] == "b", positions, digest, tenant)


# -- merging partitions into one page -----------------------------------------------------


@dataclass(slots=True)
class _Lane:
    pos: int | None  # start of this partition's next SEARCH; None: from the newest (or oldest)
    buf: list[tuple[int, bytes]] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    i: int = 0
    after: int | None = None  # where to resume once ``buf`` is wholly consumed
    done: bool = False
    first_hw: int | None = None
    unavailable: bool = False  # its owner did not answer: left out of this page, position kept


class PageMerge:
    """A k-way merge of per-partition SEARCH answers into one page, newest (or oldest) first.

    Each partition's answer is in offset order; the merge repeatedly takes the best head by
    ``(timestamp, partition, offset)`` (descending for backward), so what it takes from each
    partition is a prefix of that partition's answer. The cursor keeps, per partition, the
    offset after the last record taken (or the answer's ``next`` when all of it was taken):
    the next page resumes exactly there, with no gap and no repeat, although timestamps are
    not monotonic within a partition. A partition whose answer is used up before the page is
    full must be asked again (``wanted``) before the merge goes on, so a budget-limited answer
    never lets another partition's older records jump ahead of it.
    """

    def __init__(self, partitions: Iterable[int], backward: bool, limit: int, cursor: Cursor | None,
                 digest: str, tenant: str | None = None) -> None:
        self.backward = backward
        self.limit = limit
        self.digest = digest
        self.tenant = tenant
        self.started_fresh = cursor is None
        self.lanes: dict[int, _Lane] = {}
        for p in partitions:
            pos = cursor.positions.get(p) if cursor is not None else None
            self.lanes[p] = _Lane(pos, done=backward and pos == EXHAUSTED)
        self.out: list[tuple[int, int, bytes]] = []  # (partition, offset, line)

    def wanted(self) -> dict[int, int | None]:
        """Partitions to ask now, with the offset to start from."""
        return {p: lane.pos for p, lane in self.lanes.items() if not lane.done and lane.i >= len(lane.buf)}

    def feed(self, partition: int, records: list[tuple[int, bytes]], nxt: int | None, high_watermark: int) -> None:
        lane = self.lanes[partition]
        if lane.first_hw is None:
            lane.first_hw = high_watermark
        lane.buf, lane.i = records, 0
        lane.stamps = [timestamp_of(line) for _, line in records]
        lane.after = (EXHAUSTED if nxt is None else nxt) if self.backward else (high_watermark if nxt is None else nxt)
        if not records:
            self._settle(lane)

    def skip(self, partition: int) -> None:
        """Leave out a partition whose owner could not answer: the page is made of the others,
        and the cursor keeps this partition's position, so a later page still starts it there."""
        lane = self.lanes[partition]
        lane.unavailable = lane.done = True
        lane.buf, lane.i = [], 0

    @property
    def unavailable(self) -> list[int]:
        return [p for p, lane in self.lanes.items() if lane.unavailable]

    def _settle(self, lane: _Lane) -> None:
        lane.pos = lane.after
        if self.backward:
            lane.done = lane.after == EXHAUSTED
        else:
            lane.done = lane.first_hw is not None and lane.after is not None and lane.after >= (lane.first_hw or 0)

    def run(self) -> bool:
        """Merge as far as the answers allow; True when the page is complete."""
        out, lanes, limit = self.out, self.lanes, self.limit
        sign = 1 if self.backward else -1
        while len(out) < limit:
            best: tuple[int, int, int] | None = None
            best_p = -1
            for p, lane in lanes.items():
                if lane.done:
                    continue
                if lane.i >= len(lane.buf):
                    return False  # ask this partition again before going on
                off = lane.buf[lane.i][0]
                key = (sign * lane.stamps[lane.i], sign * p, sign * off)
                if best is None or key > best:
                    best, best_p = key, p
            if best is None:
                return True
            lane = lanes[best_p]
            off, line = lane.buf[lane.i]
            lane.i += 1
            out.append((best_p, off, line))
            if lane.i >= len(lane.buf):
                self._settle(lane)
            else:
                lane.pos = off - 1 if self.backward else off + 1
        return True

    def more(self) -> bool:
        return any(not lane.done or lane.unavailable for lane in self.lanes.values())

    def cursor(self) -> Cursor:
        positions = {p: lane.pos for p, lane in self.lanes.items() if lane.pos is not None}
        return Cursor(self.backward, positions, self.digest, self.tenant)

    def tail_cursor(self) -> Cursor | None:
        """A forward cursor at the end of every partition as first seen: where a live tail picks up."""
        if not self.started_fresh or any(lane.first_hw is None for lane in self.lanes.values()):
            return None
        return Cursor(False, {p: lane.first_hw or 0 for p, lane in self.lanes.items()}, self.digest, self.tenant)
