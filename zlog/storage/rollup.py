"""Per-segment rollups: how many records per (10-second slot, service, level), kept incrementally.

A partition keeps one ``SegmentRollup`` per segment, covering a prefix of its records. Counting is
off the append path (a worker stores bytes without parsing them, and counting costs about as much
as the rest of an append): ``catch_up`` counts what was committed since the last call, a bounded
number of bytes at a time, when the worker is idle and before a rollup answers a count, so every
record is counted once in its life. A closed segment counted whole is saved beside it as
``<base>.rollup``; on open those files are loaded when they cover exactly the segment's record
count (else the segment is counted again), and the active segment is counted from its records, so
recovery (which may cut the active segment) and the rollup always agree.

A slot is ``timestamp // 10_000``: counting a run of lines is one C-level regex pass over the
stored bytes (the slot is the timestamp's digits but the last four) plus a Counter update.

Invariants:
- A rollup is a cache: the segment is the truth. Every record of a segment is counted exactly once
  (a line the fast pattern does not read is parsed with orjson; an unreadable one counts under
  service "" and level "" at slot 0).
- A record is counted under the service every decoder reads (the last of a repeated key): the
  pattern, which reads the first, is used only where a line has one service key.
- ``<base>.rollup`` is written whole (temp file, rename); a torn or stale file is counted again.
- Bounded: one ``catch_up`` reads about its byte budget (at least one scan chunk).
- Retention forgets a deleted segment's rollup with its files.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from zlog.storage.scan import AnySegment as Segment  # plain or sealed: read alike by the scan

log = logging.getLogger("zlog.storage")

SLOT_MS = 10_000
SUFFIX = "rollup"
# The stored line's head, as zlog.ingest.records writes it; the slot is all digits but the last four.
_HEAD = re.compile(rb'\{"timestamp":(\d+)\d{4},"service":"([^"\\]*)","level":"([^"\\]*)"')

# In a valid JSON line an unescaped `"service":` can only be a key named service, so a line that
# holds it once has no repeated service key for the pattern (which reads the first) to read
# otherwise than a decoder (which reads the last: msgspec and orjson). The service is the key
# that limits count (a tenant's max_services); a repeated level or timestamp gives a producer
# nothing it could not send plainly, so they are not looked for (each look costs ~0.12 us/record).
_SERVICE_KEY = b'"service":'

_PIECE = 256 * 1024  # bytes read and matched at once: small enough to stay in the CPU's caches
Cell = tuple[bytes, bytes, bytes]  # slot digits, service (as stored), level (as stored)


def _slow_cells(data: bytes) -> Iterator[Cell]:
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            rec = orjson.loads(line)
            ts, svc, lvl = rec.get("timestamp"), rec.get("service"), rec.get("level")
        except (orjson.JSONDecodeError, AttributeError):
            ts = svc = lvl = None
        slot = ts // SLOT_MS if type(ts) is int and ts >= 0 else 0
        yield (str(slot).encode(), _raw(svc), _raw(lvl))


def _raw(value: object) -> bytes:
    return orjson.dumps(value)[1:-1] if isinstance(value, str) else b""


def _line_cells(data: bytes) -> Iterator[Cell]:
    """Line by line: the pattern where a line has one service key, else orjson."""
    for line in data.split(b"\n"):
        if not line:
            continue
        m = _HEAD.match(line)
        if m is not None and line.count(_SERVICE_KEY) == 1:
            yield m.groups()  # type: ignore[misc]
        else:
            yield from _slow_cells(line)


def cells_of(data: bytes, count: int) -> Iterable[Cell]:
    """The cell of every line of ``data`` (``count`` newline-terminated lines), as a decoder reads
    the line: a repeated service key (or a label named service) is read by orjson."""
    found = _HEAD.findall(data)
    if len(found) == count and data.count(_SERVICE_KEY) == count:
        return found
    return list(_line_cells(data))


def _text(raw: bytes) -> str:
    if b"\\" in raw:
        try:
            return str(orjson.loads(b'"' + raw + b'"'))
        except orjson.JSONDecodeError:
            pass
    return raw.decode("utf-8", "replace")


class SegmentRollup:
    """The counts of one segment, and how many records they cover."""

    __slots__ = ("_frozen", "cells", "pos", "records")

    def __init__(self) -> None:
        self.cells: Counter[Cell] = Counter()
        self.records = 0
        self.pos = 0  # the byte of the segment where record ``records`` starts
        self._frozen: list[tuple[int, str, str, int]] | None = None

    def add(self, data: bytes, count: int) -> None:
        self.cells.update(cells_of(data, count))
        self.records += count
        self._frozen = None

    def rows(self) -> list[tuple[int, str, str, int]]:
        """(slot, service, level, count), decoded once and cached until the next add."""
        if self._frozen is None:
            self._frozen = [(int(s), _text(svc), _text(lvl), c) for (s, svc, lvl), c in self.cells.items()]
        return self._frozen

    def encode(self) -> bytes:
        return orjson.dumps({"records": self.records, "cells": [list(r) for r in self.rows()]})

    @classmethod
    def decode(cls, data: bytes) -> SegmentRollup:
        obj = orjson.loads(data)
        out = cls()
        out.records = int(obj["records"])
        for slot, svc, lvl, c in obj["cells"]:
            out.cells[(str(int(slot)).encode(), _raw(str(svc)), _raw(str(lvl)))] += int(c)
        return out


class Rollup:
    """The rollups of one partition's segments, keyed by segment base offset."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.segments: dict[int, SegmentRollup] = {}

    def path(self, base: int) -> Path:
        return self.directory / f"{base:020d}.{SUFFIX}"

    @classmethod
    def open(cls, directory: Path, segments: list[Segment]) -> Rollup:
        """Load the saved rollups of closed segments; the rest is counted by ``catch_up``."""
        self = cls(directory)
        for seg in segments[:-1]:
            r = self._load(seg)
            if r is not None:
                self.segments[seg.base] = r
        return self

    def _load(self, seg: Segment) -> SegmentRollup | None:
        try:
            r = SegmentRollup.decode(self.path(seg.base).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            log.warning("%s: unreadable rollup, rebuilding", self.path(seg.base))
            return None
        if r.records != seg.count:
            return None
        r.pos = seg.size
        return r

    def _save(self, base: int, r: SegmentRollup) -> None:
        path = self.path(base)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(r.encode())
            os.replace(tmp, path)
        except OSError as exc:  # a cache: the next open rebuilds it
            log.warning("%s: cannot save rollup: %s", path, exc)

    def catch_up(self, segments: list[Segment], budget_bytes: int) -> bool:
        """Count records not yet counted, oldest segment first, reading about ``budget_bytes``;
        True when every committed record is counted. A closed segment counted whole is saved."""
        used = 0
        for i, seg in enumerate(segments):
            r = self.segments.get(seg.base)
            if r is None:
                r = self.segments[seg.base] = SegmentRollup()
            closed = i < len(segments) - 1
            if r.records < seg.count:
                if used >= budget_bytes:
                    return False
                used += _count(seg, r, budget_bytes - used)
                if r.records < seg.count:
                    return False
                if closed:
                    self._save(seg.base, r)
        return True

    def forget(self, base: int) -> None:
        self.segments.pop(base, None)
        try:
            self.path(base).unlink()
        except FileNotFoundError:
            pass

    def rows(self, bases: Iterable[int]) -> Iterator[tuple[int, str, str, int]]:
        """Every (slot, service, level, count) of the given segments."""
        for base in bases:
            r = self.segments.get(base)
            if r is not None:
                yield from r.rows()


def _count(seg: Segment, r: SegmentRollup, budget: int) -> int:
    """Count ``seg``'s records from ``r.records`` on (they start at byte ``r.pos``), reading about
    ``budget`` bytes; bytes read. Each read ends at a boundary of the offset index (whose entry
    gives the record count there) or at the committed end, and is matched in one pattern pass:
    no line is handled on its own unless the pattern misses it."""
    done = 0
    while r.records < seg.count and done < max(budget, 1):
        nb = seg.index.ceil_pos(r.pos + min(_PIECE, max(budget - done, 1)))
        rel, end = nb if nb is not None else (seg.count, seg.size)
        data = seg.pread(r.pos, end)
        r.add(data, rel - r.records)
        r.pos = end
        done += len(data)
    return done
