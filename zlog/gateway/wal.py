"""The gateway's ingest write-ahead log: produce batches that storage could not take right now.

When a partition has no live owner or misses the deadline, the gateway appends the batch here
(fsynced) and answers 202; a background task replays entries in order once the owner is back.

On disk: ``<dir>/<first entry number, 20 digits>.wal`` segments of entries
``[u32 length][u32 xxh32(payload)][payload]``, payload = msgpack
``{p: partition, pid: bytes, seq: int, ts: max timestamp, r: [line bytes], t?: tenant}`` (no
``t``: the default tenant, as in logs written before tenants), and ``cursor``
(the number of the first entry not yet acknowledged by storage).

Invariants:
- ``append`` returns only after the entry is written and fsynced; it refuses (returns False)
  when the log would exceed ``max_bytes``, so the caller answers 503 instead of growing.
- Entries keep the producer id and sequence they were first sent with, so a replay of a batch
  that storage did store after all (a lost ACK) is recognised by the worker and stored once.
- Opening recovers by itself: a torn or corrupt tail is cut at the first bad entry; the cursor is
  a hint (replaying already-stored entries is harmless for the reason above), so it is written
  without fsync.
- Segments wholly below the cursor are deleted; memory holds only the entry offsets of the
  segments not yet replayed.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import xxhash

log = logging.getLogger("zlog.wal")

_HEADER = struct.Struct(">II")
SEGMENT_BYTES = 16 * 1024 * 1024
SUFFIX = ".wal"


@dataclass(slots=True)
class WalEntry:
    number: int
    partition: int
    producer_id: bytes
    sequence: int
    max_timestamp: int
    lines: list[bytes]
    tenant: str | None = None


@dataclass(slots=True)
class _Segment:
    first: int  # number of its first entry
    path: Path
    offsets: list[int]  # byte position of each entry
    size: int


class IngestWal:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segments: list[_Segment] = []
        self.truncated_bytes = 0
        for path in sorted(self.dir.glob(f"*{SUFFIX}")):
            try:
                first = int(path.stem)
            except ValueError:
                log.warning("unknown file in the WAL directory left alone", extra={"path": str(path)})
                continue
            self.segments.append(self._recover(first, path))
        self.cursor = self._read_cursor()
        self._fd: int | None = None
        self._drop_replayed()

    # -- state ----------------------------------------------------------------------------

    @property
    def next_number(self) -> int:
        if not self.segments:
            return self.cursor
        last = self.segments[-1]
        return last.first + len(last.offsets)

    @property
    def pending(self) -> int:
        """Entries appended and not yet acknowledged by storage."""
        return max(0, self.next_number - self.cursor)

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def _recover(self, first: int, path: Path) -> _Segment:
        data = path.read_bytes()
        offsets: list[int] = []
        pos = 0
        while pos + _HEADER.size <= len(data):
            length, checksum = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            if end > len(data) or xxhash.xxh32_intdigest(data[pos + _HEADER.size:end]) != checksum:
                break
            offsets.append(pos)
            pos = end
        if pos < len(data):
            self.truncated_bytes += len(data) - pos
            log.warning("cut a torn or corrupt WAL tail", extra={"path": str(path), "bytes": len(data) - pos})
            with path.open("r+b") as f:
                f.truncate(pos)
                os.fsync(f.fileno())
        return _Segment(first, path, offsets, pos)

    def _read_cursor(self) -> int:
        try:
            value = int((self.dir / "cursor").read_text().strip())
        except (OSError, ValueError):
            value = self.segments[0].first if self.segments else 0
        lowest = self.segments[0].first if self.segments else value
        return max(value, lowest)

    # -- writing --------------------------------------------------------------------------

    def append(self, partition: int, producer_id: bytes, sequence: int, max_timestamp: int,
               lines: list[bytes], tenant: str | None = None) -> bool:
        obj = {"p": partition, "pid": producer_id, "seq": sequence, "ts": max_timestamp, "r": lines}
        if tenant is not None:
            obj["t"] = tenant
        payload = msgpack.packb(obj, use_bin_type=True)
        record = _HEADER.pack(len(payload), xxhash.xxh32_intdigest(payload)) + payload
        if self.size_bytes + len(record) > self.max_bytes:
            return False
        seg = self.segments[-1] if self.segments else None
        if seg is None or (seg.size + len(record) > SEGMENT_BYTES and seg.offsets):
            seg = self._new_segment()
        fd = self._writer(seg)
        try:
            os.write(fd, record)
            os.fsync(fd)
        except OSError:
            log.exception("WAL append failed", extra={"path": str(seg.path)})
            os.ftruncate(fd, seg.size)
            return False
        seg.offsets.append(seg.size)
        seg.size += len(record)
        return True

    def _new_segment(self) -> _Segment:
        self._close_writer()
        first = self.next_number
        path = self.dir / f"{first:020d}{SUFFIX}"
        path.touch()
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        seg = _Segment(first, path, [], 0)
        self.segments.append(seg)
        return seg

    def _writer(self, seg: _Segment) -> int:
        if self._fd is None:
            self._fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)
        return self._fd

    def _close_writer(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- replay ---------------------------------------------------------------------------

    def peek(self) -> WalEntry | None:
        """The oldest entry not yet acknowledged by storage."""
        return next(self.entries(self.cursor), None)

    def entries(self, start: int) -> Iterator[WalEntry]:
        """The entries from number ``start`` on (not below the cursor), oldest first."""
        number = max(start, self.cursor)
        for seg in self.segments:
            if number >= seg.first + len(seg.offsets):
                continue
            with seg.path.open("rb") as f:
                for i in range(number - seg.first, len(seg.offsets)):
                    f.seek(seg.offsets[i])
                    length, _ = _HEADER.unpack(f.read(_HEADER.size))
                    obj = msgpack.unpackb(f.read(length), raw=False)
                    yield WalEntry(seg.first + i, obj["p"], obj["pid"], obj["seq"], obj["ts"], obj["r"], obj.get("t"))
            number = seg.first + len(seg.offsets)

    def advance(self) -> None:
        """The entry at the cursor is stored: move past it."""
        self.cursor += 1
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(str(self.cursor))
        tmp.replace(self.dir / "cursor")
        self._drop_replayed()

    def _drop_replayed(self) -> None:
        while self.segments and self.segments[0].first + len(self.segments[0].offsets) <= self.cursor:
            seg = self.segments.pop(0)
            if not self.segments:
                self._close_writer()  # the next append starts a segment at the cursor
            seg.path.unlink(missing_ok=True)

    def close(self) -> None:
        self._close_writer()
