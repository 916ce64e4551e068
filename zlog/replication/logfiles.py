"""A replica's log as whole batches: read them for followers, cut the log back for truncation.

A follower must store the same bytes at the same offsets as its leader, batch for batch, so that
its ``.batches`` files (and with them producer deduplication) are the leader's. The leader reads
committed batches from each segment's ``.batches`` file (the byte range of every batch, its
producer id and sequence); the follower appends them through ``PartitionLog.append`` with the same
producer id and sequence, which assigns the same offsets because its log is the same up to there.
A batch travels with the hash its leader's entry holds: the follower checks the bytes against it
(and the line count) instead of validating every record again, as recovery checks its own files.

Invariants:
- ``read_batches`` returns only committed batches (their entries are written after their data
  and a reader in the same thread never sees a half commit), starting exactly at ``offset``, which
  must be a batch boundary (a follower's log end always is); at least one batch when one exists.
- ``truncate`` keeps ``[0, offset)`` and nothing after it: later segments are deleted (newest
  first, data file first, as retention does), and the segment holding ``offset`` keeps the batch
  entries below it; reopening the log then cuts its data and rebuilds its indexes (recovery), so a
  crash at any step leaves a log that opens, with at most more of the old tail to cut next time.
- ``restart`` (the leader's log starts beyond this one's end: retention deleted what it lacks)
  deletes every segment, newest first, then starts an empty log at the leader's log start; a
  crash in between leaves a shorter log that is restarted again at the next fetch.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from zlog.config import StorageConfig
from zlog.storage import PartitionLog, ProducerBatch
from zlog.storage import batches as bf
from zlog.storage.scan import AnySegment
from zlog.storage.sealed import SEALED
from zlog.storage.segment import BATCHES, DATA, SUFFIXES, create_batches_file, fsync_dir, stem


class NotABoundary(ValueError):
    """The offset asked for is not where a batch starts on this log."""


@dataclass(frozen=True, slots=True)
class Batch:
    base: int
    count: int
    data: bytes
    max_ts: int
    producer_id: bytes
    sequence: int  # -1: no producer
    segment: int  # base offset of the leader's segment holding it
    data_hash: int = -1  # xxh3_64 of data, from the leader's batch entry (-1: not sent)


class _SegmentBatches:
    """The BATCH entries of one segment's ``.batches`` file, read incrementally."""

    __slots__ = ("bases", "entries", "read_bytes")

    def __init__(self) -> None:
        self.entries: list[bf.BatchEntry] = []
        self.bases: list[int] = []
        self.read_bytes = 0

    def refresh(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            raw = os.pread(fd, 1 << 24, self.read_bytes)
        finally:
            os.close(fd)
        entries, used = bf.decode(raw)
        self.read_bytes += used
        for e in entries:
            if e.kind == bf.BATCH:
                self.entries.append(e)
                self.bases.append(e.base_offset)


class BatchReader:
    """Reads whole committed batches of one partition; caches each segment's batch list."""

    def __init__(self) -> None:
        self._cache: dict[int, _SegmentBatches] = {}

    def forget(self) -> None:
        self._cache.clear()

    def read(self, plog: PartitionLog, offset: int, max_bytes: int) -> list[Batch]:
        if offset >= plog.next_offset:
            return []
        segs = plog.segments
        i = max(0, bisect_right([s.base for s in segs], offset) - 1)
        out: list[Batch] = []
        used = 0
        while i < len(segs):
            seg = segs[i]
            got = self._from_segment(seg, offset, max_bytes - used)
            out += got
            used += sum(len(b.data) for b in got)
            if not got or used >= max_bytes:
                break
            offset = got[-1].base + got[-1].count
            if offset < seg.next_offset:
                break  # budget reached inside the segment
            i += 1
        return out

    def _from_segment(self, seg: AnySegment, offset: int, budget: int) -> list[Batch]:
        if offset >= seg.next_offset:
            return []
        sb = self._cache.get(seg.base)
        if sb is None:
            sb = self._cache[seg.base] = _SegmentBatches()
        if not sb.bases or sb.bases[-1] + sb.entries[-1].count < seg.next_offset:
            sb.refresh(seg.path(BATCHES))
        j = bisect_right(sb.bases, offset) - 1
        if j < 0 or sb.bases[j] != offset:
            raise NotABoundary(f"offset {offset} is not the start of a batch in segment {stem(seg.base)}")
        out: list[bf.BatchEntry] = []
        pos = sb.entries[j - 1].end_pos if j > 0 else 0
        end = pos
        for e in islice(sb.entries, j, None):
            if e.base_offset >= seg.next_offset or (out and e.end_pos - pos > budget):
                break
            end = e.end_pos
            out.append(e)
        data = seg.pread(pos, end)
        batches: list[Batch] = []
        at = 0
        start = pos
        for e in out:
            n = e.end_pos - start
            batches.append(Batch(e.base_offset, e.count, data[at:at + n], e.max_ts, e.producer_id,
                                 e.sequence, seg.base, e.data_hash))
            at += n
            start = e.end_pos
        return batches


class Diverged(RuntimeError):
    """A replicated batch did not land where the leader has it: the logs differ below it."""


def apply(plog: PartitionLog, batches: list[Batch], *, defer_sync: bool = False) -> bool:
    """Append the leader's batches at the same offsets and commit (fsync per policy). A new
    segment starts where the leader's did. With ``defer_sync`` the fsync the policy wants is the
    caller's, who owes it (True returned) before telling the leader, then calls ``synced``.
    A batch refused (``Diverged``, or bytes that fail their check: ``InvalidRecord``) raises after
    the batches before it are committed (and synced), so nothing stays staged."""
    try:
        _stage(plog, batches)
    except Exception:
        plog.commit()
        raise
    return plog.commit(defer_sync=defer_sync)


def _stage(plog: PartitionLog, batches: list[Batch]) -> None:
    for b in batches:
        if b.base != plog.staging.next_offset:
            raise Diverged(f"batch at {b.base} but the log ends at {plog.staging.next_offset}")
        if b.segment == b.base and plog.active.base != b.base and plog.active.count:
            plog.commit()
            plog._roll()  # the leader rolled here (by age or size): keep the same segment files
        producer = ProducerBatch(b.producer_id, b.sequence) if b.sequence >= 0 else None
        if b.data_hash >= 0:
            r = plog.append_replica(b.data, b.count, b.max_ts, producer, b.data_hash)
        else:
            r = plog.append_data(b.data, b.max_ts, producer)
        if r.duplicate or r.base_offset != b.base:
            raise Diverged(f"batch at {b.base} landed at {r.base_offset} (duplicate: {r.duplicate})")


def truncate(plog: PartitionLog, offset: int, config: StorageConfig) -> PartitionLog:
    """Close ``plog``, keep ``[0, offset)`` of it, and open it again (returned)."""
    directory = plog.directory
    if offset >= plog.next_offset:
        return plog
    bases = [s.base for s in plog.segments]
    plog.close()
    for base in reversed(bases):
        if base >= offset and base != bases[0]:
            _delete(directory, base)
            continue
        path = directory / (stem(base) + BATCHES)
        raw = path.read_bytes()
        entries, _ = bf.decode(raw)
        keep = sum(1 for e in entries if e.kind != bf.BATCH or e.base_offset + e.count <= offset)
        with open(path, "r+b") as f:
            f.truncate(keep * bf.ENTRY_SIZE)
            f.flush()
            os.fsync(f.fileno())
        break
    fsync_dir(directory)
    return PartitionLog.open(directory, config)


def _delete(directory: Path, base: int) -> None:
    for suffix in (DATA, SEALED, *[s for s in SUFFIXES if s != DATA]):  # data first, as retention does
        (directory / (stem(base) + suffix)).unlink(missing_ok=True)


def first_producers(plog: PartitionLog) -> list[tuple[bytes, int, int, int]]:
    """The producer snapshot (pid, sequence, base, count) the log's first segment starts with."""
    try:
        raw = plog.segments[0].path(BATCHES).read_bytes()
    except FileNotFoundError:
        return []
    entries, _ = bf.decode(raw)
    return [(e.producer_id, e.sequence, e.base_offset, e.count) for e in entries if e.kind == bf.PRODUCER]


def restart(plog: PartitionLog, start: int, config: StorageConfig, now_ms: int,
            producers: Sequence[tuple[bytes, int, int, int]] = ()) -> PartitionLog:
    """Close ``plog``, delete all of it, and open an empty log whose first offset is ``start``
    (Kafka's truncate-fully-and-start-at the leader's log start) and whose producer table is
    ``producers`` (the leader's snapshot there, so deduplication answers as the leader's), returned."""
    directory = plog.directory
    bases = [s.base for s in plog.segments]
    plog.close()
    for base in reversed(bases):
        _delete(directory, base)
    create_batches_file(directory, start, now_ms, producers)
    fd = os.open(directory / (stem(start) + DATA), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    os.close(fd)
    fsync_dir(directory)
    return PartitionLog.open(directory, config)
