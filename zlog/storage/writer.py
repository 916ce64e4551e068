"""The writer of a partition's active segment: commit what is staged, fsync as the policy says, roll.

``Writer`` is the part of ``PartitionLog`` (``partition.py``) that writes; the log opens,
stages, reads and deletes.

Invariants:
- ``commit`` writes every staged batch with one write per file, fsyncs as the policy says (or
  leaves the fsync to a caller that owes it before acknowledging, ``defer_sync``), and only then
  makes the batches visible to readers and to the producer table.
- A failed write cuts the files back and drops what was staged; the log stays usable. When a
  commit spans a roll, the batches before the roll are already durable: the raised error's
  ``committed`` attribute says how many of the staged batches (in staging order) were stored.
- A roll closes the active segment's writer, creates the next segment's ``.batches`` with a
  snapshot of the producer table and fsyncs the directory before the new segment is used; a
  failed roll leaves the old segment active.
- Only the active (last) segment is ever written.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from zlog.config import StorageConfig
from zlog.storage.errors import DiskFull, StorageError
from zlog.storage.index import IndexBuilder, TimeIndexBuilder
from zlog.storage.producers import ProducerTable
from zlog.storage.scan import AnySegment
from zlog.storage.segment import DATA, Segment, Staged, create_batches_file, fsync_dir
from zlog.storage.staging import Staging

log = logging.getLogger("zlog.storage")


def _io_error(exc: OSError, what: str, committed: int) -> StorageError:
    cls = DiskFull if exc.errno in (errno.ENOSPC, errno.EDQUOT) else StorageError
    err = cls(f"{what}: {exc}")
    err.committed = committed  # type: ignore[attr-defined]
    return err


class Writer:
    # Set by PartitionLog.__init__.
    directory: Path
    config: StorageConfig
    clock: Callable[[], float]
    segments: list[AnySegment]
    _bases: list[int]
    producers: ProducerTable
    staging: Staging
    stats: dict[str, float]
    _last_fsync: float
    _device: int | None
    _unsynced: bool

    @property
    def active(self) -> Segment:
        return cast(Segment, self.segments[-1])  # the last segment is never sealed

    @property
    def next_offset(self) -> int:
        return self.active.next_offset

    def commit(self, *, defer_sync: bool = False) -> bool:
        """Write what is staged; fsync as the policy says. With ``defer_sync`` the fsync the
        policy wants is left to the caller, who owes it before acknowledging (True returned) and
        then calls ``synced``: a worker syncs all its partitions' files with one call that way."""
        if not self.staging:
            return False
        done = 0
        owed = False
        try:
            for i, group in enumerate(self.staging.groups(self.active.size, self.config.segment_bytes)):
                if not group:
                    continue  # the first batch does not fit in the active segment
                if i > 0 or self._aged():
                    self._roll()
                owed = self._write(group, done, defer_sync) or owed
                done += len(group)
        finally:
            self.staging.clear(self.next_offset)
        return owed

    def synced(self, seconds: float) -> None:
        """The caller fsynced this partition's files (after ``commit(defer_sync=True)``)."""
        self._synced(self.clock(), seconds)

    @property
    def device(self) -> int:
        """The filesystem the partition lives on (partitions on one device share a sync); asked
        once, not at every commit."""
        if self._device is None:
            self._device = os.stat(self.directory).st_dev
        return self._device

    def sync_fd(self) -> int:
        """A file descriptor of the active segment, for a filesystem-wide sync by the caller."""
        fd = self.active.fd
        assert fd is not None
        return fd

    def _write(self, group: list[Staged], done: int, defer: bool = False) -> bool:
        seg = self.active
        policy = self.config.fsync
        now = self.clock()
        sync = policy.mode == "always" or (
            policy.mode == "interval" and (now - self._last_fsync) * 1000 >= policy.interval_ms)
        t0 = time.perf_counter()
        try:
            seg.write(group)
            if sync and not defer:
                seg.sync()
        except OSError as exc:
            try:
                seg.cut_back()
            except OSError:
                log.exception("%s: cannot cut back after a failed write", seg.path(DATA))
            raise _io_error(exc, f"{seg.path(DATA)}: commit failed", done) from exc
        if sync and not defer:
            self._synced(now, time.perf_counter() - t0)
        else:
            self._unsynced = True
        for b in group:
            if b.sequence >= 0:
                self.producers.restore(b.producer_id, b.sequence, b.base_offset, b.count)
        self.stats["records_appended"] += sum(b.count for b in group)
        self.stats["bytes_appended"] += sum(len(b.data) for b in group)
        self.stats["commits"] += 1
        return sync and defer

    def _synced(self, now: float, seconds: float) -> None:
        self._last_fsync = now
        self._unsynced = False
        self.stats["fsyncs"] += 1
        self.stats["fsync_seconds_total"] += seconds

    def sync(self) -> None:
        t0 = time.perf_counter()
        try:
            self.active.sync()
        except OSError as exc:
            raise _io_error(exc, f"{self.active.path(DATA)}: fsync failed", 0) from exc
        self._synced(self.clock(), time.perf_counter() - t0)

    def _aged(self) -> bool:
        seg = self.active
        return bool(self.config.segment_ms > 0 and seg.count
                    and self.clock() * 1000 - seg.created_ms >= self.config.segment_ms)

    def _roll(self) -> None:
        """Seal the active segment and start a new one at the next offset."""
        old = self.active
        builder, tb = old.builder, old.tbuilder
        assert builder is not None and tb is not None
        base = old.next_offset
        new = Segment(self.directory, base, self.config.index_interval_bytes)
        try:
            old.close_writer()
            self._unsynced = False
            new.created_ms = int(self.clock() * 1000)
            create_batches_file(self.directory, base, new.created_ms, self.producers.snapshot())
            new.open_writer(IndexBuilder(new.interval), TimeIndexBuilder(new.interval))
            fsync_dir(self.directory)
        except OSError as exc:
            new.delete()
            if not old.active:
                old.open_writer(builder, tb)
            raise _io_error(exc, f"{self.directory}: cannot roll a segment", 0) from exc
        self.segments.append(new)
        self._bases.append(base)
        self.stats["segments_rolled"] += 1

    def tick(self) -> None:
        """Periodic duties: a due interval fsync, the roll of an aged active segment."""
        policy = self.config.fsync
        if (self._unsynced and policy.mode == "interval"
                and (self.clock() - self._last_fsync) * 1000 >= policy.interval_ms):
            self.sync()
        if not self.staging and self._aged():
            self._roll()
