"""The partition log: an ordered list of segments, the last one active.

Invariants:
- Offsets are dense: segment ``k + 1`` starts at segment ``k``'s next offset; a record's offset is
  its segment's base plus its line number. ``next_offset`` is one past the last committed record.
- ``append`` only validates and stages (all or nothing per batch) and assigns offsets
  (``staging.py``); ``commit`` (``writer.py``, whose invariants hold here) writes, fsyncs and only
  then makes the batches visible to readers and to the producer table.
- Only the active segment is ever written; retention (``retention.expired``) deletes whole oldest
  segments, never it.
- A closed segment is plain (``Segment``) or sealed (``SealedSegment``, zlog.storage.sealed);
  ``seal_closed``/``adopt_sealed`` switch forms without changing offsets or content.
- Unknown files in the directory are logged and left alone (``opening``, which loads the segments).
- A batch's bytes are checked by ``batchdata`` before anything is staged: record by record
  (``append_data``, or they arrive as its ``Checked``), or, for a batch another replica already
  stored, against its batch entry (``append_replica``).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from zlog.config import StorageConfig
from zlog.storage import retention
from zlog.storage import scan as scanning
from zlog.storage import sealer as sealing
from zlog.storage.batchdata import Checked, checked, encode_batch, is_stored_batch
from zlog.storage.errors import InvalidRecord, StorageError
from zlog.storage.opening import open_segments
from zlog.storage.producers import ProducerBatch, ProducerTable
from zlog.storage.rollup import Rollup
from zlog.storage.scan import AnySegment, ScanResult
from zlog.storage.sealed import SEALED, SealedSegment
from zlog.storage.segment import Segment, fsync_dir, stem
from zlog.storage.staging import AppendResult, Staging
from zlog.storage.tokens import Needles
from zlog.storage.writer import Writer

log = logging.getLogger("zlog.storage")


class PartitionLog(Writer):
    def __init__(self, directory: Path, config: StorageConfig, clock: Callable[[], float]) -> None:
        self.directory = directory
        self.config = config
        self.clock = clock
        self.segments: list[AnySegment] = []
        self._bases: list[int] = []
        self.producers = ProducerTable()
        self.rollup = Rollup(directory)  # counts per time slot, service and level (zlog.storage.rollup)
        self._last_fsync = clock()
        self._device: int | None = None
        self._unsynced = False
        self.stats: dict[str, float] = dict.fromkeys((
            "records_appended", "bytes_appended", "commits", "fsyncs", "fsync_seconds_total",
            "recovery_truncated_bytes", "checksum_failures", "segments_deleted", "segments_rolled",
            "duplicates", "segments_sealed", "blocks_read", "blocks_skipped"), 0)
        self.staging = Staging(self.producers, self.stats)  # appended, not yet committed

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path, config: StorageConfig, *,
             clock: Callable[[], float] = time.time) -> PartitionLog:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self = cls(directory, config, clock)
        try:
            self.segments, report = open_segments(directory, config.index_interval_bytes, int(clock() * 1000),
                                                  self.stats)
        except OSError as exc:
            raise StorageError(f"{directory}: cannot open: {exc}") from exc
        for e in report.producer_entries:
            self.producers.restore(e.producer_id, e.sequence, e.base_offset, e.count) if e.sequence >= 0 else None
        self.stats["recovery_truncated_bytes"] = report.truncated_bytes
        self.stats["checksum_failures"] = report.checksum_failures
        self._bases = [s.base for s in self.segments]
        self.staging.next_offset = self.next_offset
        self.rollup = Rollup.open(directory, self.segments)
        return self

    # -- properties ------------------------------------------------------------------------

    @property
    def lowest_offset(self) -> int:
        return self.segments[0].base

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def stored_bytes(self) -> int:
        """Bytes of record data on disk: plain data files, sealed files (their indexes included)."""
        return sum(map(retention.stored_bytes, self.segments))

    @property
    def index_bytes(self) -> int:
        """Bytes of the sealed segments' block indexes and token filters."""
        return sum(s.meta.index_bytes for s in self.segments if isinstance(s, SealedSegment))

    def unsealed(self) -> list[Segment]:
        """Closed segments still in plain form, oldest first."""
        return [s for s in self.segments[:-1] if isinstance(s, Segment)]

    def adopt_sealed(self, base: int) -> bool:
        """Switch closed segment ``base`` to its sealed file (already renamed into place by
        ``sealer.seal``). False (and the file removed) when the segment is gone or not plain."""
        i = self._segment_index(base)
        seg = self.segments[i]
        if seg.base != base or not isinstance(seg, Segment) or i == len(self.segments) - 1:
            (self.directory / (stem(base) + SEALED)).unlink(missing_ok=True)
            return False
        self.segments[i] = sealing.swap_in(seg, self.stats)
        self.stats["segments_sealed"] += 1
        return True

    def seal_closed(self, block_bytes: int, level: int, limit: int = 1 << 30) -> int:
        """Seal up to ``limit`` plain closed segments here, in this thread (tools and tests; the
        worker seals in a child process); returns how many."""
        done = 0
        for seg in self.unsealed()[:limit]:
            sealing.seal(self.directory, seg.base, seg.size, block_bytes, level)
            done += self.adopt_sealed(seg.base)
        return done

    @property
    def segment_count(self) -> int:
        return len(self.segments)

    @property
    def max_timestamp(self) -> int:
        """The largest committed record timestamp (unix ms), -1 when empty."""
        return max(s.max_ts for s in self.segments)

    # -- writing ---------------------------------------------------------------------------

    def append(self, lines: Sequence[bytes], max_timestamp: int,
               producer: ProducerBatch | None = None) -> AppendResult:
        if len(lines) > self.config.max_batch_records:
            raise InvalidRecord(f"batch of {len(lines)} records > {self.config.max_batch_records}")
        return self.append_data(encode_batch(lines, self.config.max_record_bytes), max_timestamp, producer)

    def append_data(self, data: bytes | Checked, max_timestamp: int,
                    producer: ProducerBatch | None = None) -> AppendResult:
        """Stage a batch given as stored: newline-terminated lines, checked here (``batchdata``)
        unless they come as the ``Checked`` of that check against this log's record bound."""
        bound = self.config.max_record_bytes
        batch = data if isinstance(data, Checked) and data.max_record_bytes <= bound else None
        if batch is None:
            batch = checked(data.data if isinstance(data, Checked) else data, bound)
        data, n = batch.data, batch.records
        if n > self.config.max_batch_records:
            raise InvalidRecord(f"batch of {n} records > {self.config.max_batch_records}")
        return self.staging.stage(data, n, max_timestamp, producer, -1)

    def append_replica(self, data: bytes, count: int, max_timestamp: int, producer: ProducerBatch | None,
                       data_hash: int) -> AppendResult:
        """Stage a batch another replica stored, as its ``.batches`` entry describes it: checked
        against that entry (``is_stored_batch``: hash, line count, final newline), not record by
        record again; the replica that first stored it did that."""
        if not is_stored_batch(data, count, data_hash):
            raise InvalidRecord(f"batch of {count} records does not match its stored checksum")
        return self.staging.stage(data, count, max_timestamp, producer, data_hash)

    # -- reading ---------------------------------------------------------------------------

    def _segment_index(self, offset: int) -> int:
        return max(0, bisect_right(self._bases, offset) - 1)

    def read(self, offset: int, max_records: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """Records from ``offset`` on (Kafka fetch): at least one if any exists, then up to
        ``max_records`` and ``max_bytes`` of line bytes."""
        if offset >= self.next_offset or max_records <= 0:
            return []
        offset = max(offset, self.lowest_offset)
        return scanning.read(self.segments, self._segment_index(offset), offset, max_records, max_bytes)

    def scan(self, *, backward: bool = True, start: int | None = None, since_ms: int | None = None,
             until_ms: int | None = None, predicate: Callable[[bytes], bool] | None = None,
             limit: int = 100, budget_bytes: int = 8 * 1024 * 1024,
             needles: Needles | None = None) -> ScanResult:
        """Matching records in scan order; see ``zlog.storage.scan`` for resumption rules. The time
        bounds only prune (segments, a segment's prefix older than ``since_ms``, sealed blocks
        wholly outside the range); exact timestamps are the predicate's business. ``needles``
        (``zlog.storage.tokens.needles``: words and message substrings every match holds) let
        sealed segments skip blocks whose token filter proves no record there holds them all;
        the predicate must imply them."""
        lo, hi = self.lowest_offset, self.next_offset
        if backward:
            first = hi - 1 if start is None else min(start, hi - 1)
        else:
            first = lo if start is None else max(start, lo)
        if limit <= 0 or first < lo or first >= hi:
            return ScanResult([], None, 0, 0)
        return scanning.scan(self.segments, self._segment_index(first), first, backward, since_ms,
                             predicate, limit, budget_bytes, until_ms, needles)

    # -- retention and shutdown ------------------------------------------------------------

    def enforce_retention(self, now_ms: int | None = None) -> list[int]:
        """Delete whole oldest segments (never the active one) while the partition is over
        ``retention_bytes`` or the oldest segment's newest record is older than ``retention_ms``."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        deleted: list[int] = []
        for _ in range(retention.expired(self.segments, self.config, now_ms)):
            seg = self.segments[0]
            seg.delete()
            self.rollup.forget(seg.base)
            del self.segments[0], self._bases[0]
            deleted.append(seg.base)
        if deleted:
            fsync_dir(self.directory)
            self.stats["segments_deleted"] += len(deleted)
            log.info("%s: retention deleted segments %s", self.directory, [stem(b) for b in deleted])
        return deleted

    def close(self) -> None:
        """Commit what is staged, fsync, close every file."""
        try:
            if self.segments and self.staging:
                self.commit()
        finally:
            for seg in self.segments:
                seg.close()

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PartitionLog({self.directory}, {self.lowest_offset}..{self.next_offset})"
