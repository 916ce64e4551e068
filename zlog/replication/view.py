"""A partition log as readers may see it: only the records below the high watermark.

Every read of a replicated partition (FETCH by offset, SEARCH, tail, STATS counts) goes through
this view, so no reader sees a record that a failover could take back. It has the reading
surface of ``PartitionLog`` that ``zlog.worker.reads`` uses; writes go to the log itself.

Invariants:
- ``next_offset`` is ``min(high watermark, log end)``; ``read`` and ``scan`` never return an
  offset at or above it, and a forward scan that reaches it answers ``next = next_offset``.
- One view per partition lives as long as its log (the read path caches per object).
"""

from __future__ import annotations

from collections.abc import Callable

from zlog.storage import PartitionLog
from zlog.storage.scan import ScanResult
from zlog.storage.tokens import Needles


class BoundedLog:
    def __init__(self, plog: PartitionLog, hw: int = 0) -> None:
        self.plog = plog
        self.hw = hw

    def __getattr__(self, name: str) -> object:
        return getattr(self.plog, name)  # the rest of the reading surface (segments, rollups)

    @property
    def next_offset(self) -> int:
        return min(self.hw, self.plog.next_offset)

    @property
    def lowest_offset(self) -> int:
        return self.plog.lowest_offset

    @property
    def size_bytes(self) -> int:
        return self.plog.size_bytes

    @property
    def segment_count(self) -> int:
        return self.plog.segment_count

    @property
    def max_timestamp(self) -> int:
        return self.plog.max_timestamp

    def read(self, offset: int, max_records: int, max_bytes: int) -> list[tuple[int, bytes]]:
        end = self.next_offset
        if offset >= end:
            return []
        return self.plog.read(offset, min(max_records, end - max(offset, self.lowest_offset)), max_bytes)

    def scan(self, *, backward: bool = True, start: int | None = None, since_ms: int | None = None,
             until_ms: int | None = None, predicate: Callable[[bytes], bool] | None = None,
             limit: int = 100, budget_bytes: int = 8 * 1024 * 1024, needles: Needles | None = None) -> ScanResult:
        end = self.next_offset
        if backward:
            start = end - 1 if start is None else min(start, end - 1)
            if start < self.lowest_offset:
                return ScanResult([], None, 0, 0)
            return self.plog.scan(backward=True, start=start, since_ms=since_ms, until_ms=until_ms,
                                  predicate=predicate, limit=limit, budget_bytes=budget_bytes, needles=needles)
        if start is not None and start >= end:
            return ScanResult([], None, 0, 0)
        r = self.plog.scan(backward=False, start=start, since_ms=since_ms, until_ms=until_ms,
                           predicate=predicate, limit=limit, budget_bytes=budget_bytes, needles=needles)
        kept = [x for x in r.records if x[0] < end]
        if len(kept) < len(r.records) or (r.next is not None and r.next > end) or r.next is None:
            return ScanResult(kept, None, r.scanned_records, r.scanned_bytes)
        return r
