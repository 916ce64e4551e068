"""Offset index and time index of one segment: entry codecs, builders and lookups (no file I/O).

Offset index (``<base>.index``): fixed 20-byte entries ``(rel, pos, xxh3_64)``, little endian. An
entry says "record ``base + rel`` starts at byte ``pos``" and carries the hash of the block it
closes, the bytes ``[previous entry's pos (or 0), pos)``.

Time index (``<base>.timeindex``): fixed 12-byte entries ``(max_ts, rel)``: every record at relative
offset ``<= rel`` has a timestamp ``<= max_ts`` (unix ms). ``max_ts`` strictly increases.

Invariants:
- Both indexes are pure functions of the segment's content (and, for the time index, of the batch
  list in ``<base>.batches``), so a rebuild reproduces them byte for byte:
  * a block starting at ``s`` ends after the first line whose ``\\n`` sits at or after
    ``s + interval - 1``; the split never depends on how bytes were batched or chunked;
  * after each batch, a time entry ``(max so far, last rel of the batch)`` is added when the max
    grew and it is the first entry or ``interval`` bytes passed since the last one; a segment that
    is closed (rolled) gets a final entry when its max grew after the last entry.
- Entries are only ever appended; files are never pre-grown, so a file cut anywhere is a prefix
  of entries plus at most one torn entry, which loaders drop.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right

import xxhash

INDEX_ENTRY = struct.Struct("<IQQ")
TIME_ENTRY = struct.Struct("<qI")

IndexEntry = tuple[int, int, int]  # rel, pos, hash
TimeEntry = tuple[int, int]  # max_ts, rel


def block_hash(data: bytes | memoryview) -> int:
    return xxhash.xxh3_64_intdigest(data)


class IndexBuilder:
    """Cuts a stream of segment bytes into blocks and yields one offset-index entry per block."""

    __slots__ = ("block_start", "hasher", "interval", "lines", "pos")

    def __init__(self, interval: int) -> None:
        self.interval = max(1, interval)
        self.pos = 0  # bytes fed so far
        self.lines = 0  # newlines fed so far
        self.block_start = 0
        self.hasher = xxhash.xxh3_64()

    def copy(self) -> IndexBuilder:
        new = IndexBuilder(self.interval)
        new.pos, new.lines, new.block_start = self.pos, self.lines, self.block_start
        new.hasher = self.hasher.copy()
        return new

    def feed(self, data: bytes) -> list[IndexEntry]:
        out: list[IndexEntry] = []
        view = memoryview(data)
        base = self.pos
        find, count = data.find, data.count
        i = 0
        j = find(b"\n", max(0, self.block_start + self.interval - 1 - base))
        if j >= 0:
            # The open block (begun in earlier bytes) ends here; every later block begins and
            # ends in ``data`` and is hashed in one call.
            end = j + 1
            self.hasher.update(view[:end])
            lines = self.lines + count(b"\n", 0, end)
            out.append((lines, base + end, self.hasher.intdigest()))
            self.hasher.reset()
            i = end
            step = self.interval - 1
            while (j := find(b"\n", i + step)) >= 0:
                end = j + 1
                lines += count(b"\n", i, end)
                out.append((lines, base + end, block_hash(view[i:end])))
                i = end
            self.lines = lines
            self.block_start = base + i
        if i < len(data):
            self.hasher.update(view[i:])
            self.lines += count(b"\n", i)
        self.pos = base + len(data)
        return out


class TimeIndexBuilder:
    """Turns the sequence of committed batches into sparse time-index entries."""

    __slots__ = ("interval", "last_pos", "last_ts", "max_ts")

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.max_ts = -1  # -1: no record yet
        self.last_ts: int | None = None
        self.last_pos = 0

    def copy(self) -> TimeIndexBuilder:
        new = TimeIndexBuilder(self.interval)
        new.max_ts, new.last_ts, new.last_pos = self.max_ts, self.last_ts, self.last_pos
        return new

    def add(self, last_rel: int, end_pos: int, max_ts: int) -> TimeEntry | None:
        if max_ts > self.max_ts:
            self.max_ts = max_ts
        if self.last_ts is None or (self.max_ts > self.last_ts and end_pos - self.last_pos >= self.interval):
            self.last_ts, self.last_pos = self.max_ts, end_pos
            return (self.max_ts, last_rel)
        return None

    def finish(self, last_rel: int) -> TimeEntry | None:
        if self.last_ts is not None and self.max_ts > self.last_ts:
            self.last_ts = self.max_ts
            return (self.max_ts, last_rel)
        return None


def encode_index(entries: list[IndexEntry]) -> bytes:
    pack = INDEX_ENTRY.pack
    return b"".join([pack(r, p, h) for r, p, h in entries])


def encode_time(entries: list[TimeEntry]) -> bytes:
    pack = TIME_ENTRY.pack
    return b"".join([pack(t, r) for t, r in entries])


def decode_index(data: bytes) -> list[IndexEntry]:
    usable = len(data) - len(data) % INDEX_ENTRY.size
    return list(INDEX_ENTRY.iter_unpack(data[:usable]))


def decode_time(data: bytes) -> list[TimeEntry]:
    usable = len(data) - len(data) % TIME_ENTRY.size
    return list(TIME_ENTRY.iter_unpack(data[:usable]))


class OffsetIndex:
    """In-memory sparse offset index: two parallel arrays, searched by bisection."""

    __slots__ = ("poss", "rels")

    def __init__(self, entries: list[IndexEntry] = ()) -> None:  # type: ignore[assignment]
        self.rels = array("q", [e[0] for e in entries])
        self.poss = array("q", [e[1] for e in entries])

    def __len__(self) -> int:
        return len(self.rels)

    def extend(self, entries: list[IndexEntry]) -> None:
        for r, p, _ in entries:
            self.rels.append(r)
            self.poss.append(p)

    def truncate(self, n: int) -> None:
        del self.rels[n:]
        del self.poss[n:]

    def floor_rel(self, rel: int) -> tuple[int, int]:
        """The last block boundary at or before record ``rel``: (rel, pos); (0, 0) when none."""
        i = bisect_right(self.rels, rel)
        return (self.rels[i - 1], self.poss[i - 1]) if i else (0, 0)

    def floor_pos(self, pos: int) -> tuple[int, int]:
        """The last block boundary at or before byte ``pos``: (rel, pos); (0, 0) when none."""
        i = bisect_right(self.poss, pos)
        return (self.rels[i - 1], self.poss[i - 1]) if i else (0, 0)

    def ceil_pos(self, pos: int) -> tuple[int, int] | None:
        """The first block boundary at or after byte ``pos``, None when there is none."""
        i = bisect_right(self.poss, pos - 1)
        return (self.rels[i], self.poss[i]) if i < len(self.poss) else None


class TimeIndex:
    """In-memory sparse time index; ``floor_before(ts)`` finds records that are all older than ts."""

    __slots__ = ("rels", "tss")

    def __init__(self, entries: list[TimeEntry] = ()) -> None:  # type: ignore[assignment]
        self.tss = array("q", [e[0] for e in entries])
        self.rels = array("q", [e[1] for e in entries])

    def __len__(self) -> int:
        return len(self.tss)

    def append(self, entry: TimeEntry) -> None:
        self.tss.append(entry[0])
        self.rels.append(entry[1])

    def truncate(self, n: int) -> None:
        del self.tss[n:]
        del self.rels[n:]

    @property
    def last_ts(self) -> int:
        return self.tss[-1] if self.tss else -1

    def older_than(self, ts: int) -> int:
        """The largest rel such that every record at or before it is older than ``ts``; -1 if none."""
        i = bisect_right(self.tss, ts - 1)
        return self.rels[i - 1] if i else -1
