"""One segment: ``<base>.jsonl`` plus its ``.index``, ``.timeindex`` and ``.batches`` files.

Invariants:
- ``size`` and ``count`` describe committed data only: every byte below ``size`` is a complete
  line written by a commit that returned; readers never look past ``size``.
- A write of staged batches is one ``os.write`` (or ``writev``) per file; if any of them fails,
  every file is cut back to its length before the write and the in-memory state is untouched, so
  a failed commit leaves no trace.
- Only the active (last) segment has writer state (index builders, ``.batches``/index fds). When
  it is closed by a roll its time index gets its final entry and all four files are fsynced
  before the next segment is created, so closed segments need no tail verification on open.
- Files are created empty and grow by appends only (never pre-grown).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import xxhash

from zlog.storage import batches as bf
from zlog.storage.index import (
    IndexBuilder,
    OffsetIndex,
    TimeIndex,
    TimeIndexBuilder,
    encode_index,
    encode_time,
)

DATA, INDEX, TIMEINDEX, BATCHES = ".jsonl", ".index", ".timeindex", ".batches"
SUFFIXES = (DATA, INDEX, TIMEINDEX, BATCHES)
_IOV_MAX = 1024


_datasync = getattr(os, "fdatasync", os.fsync)


def stem(base: int) -> str:
    return f"{base:020d}"


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, chunks: Sequence[bytes]) -> None:
    """Write ``chunks`` in one system call when the kernel takes it all (it does for regular files
    short of errors); a short write is finished with further calls."""
    if len(chunks) == 1:
        data = chunks[0]
        done = os.write(fd, data)
    elif len(chunks) <= _IOV_MAX:
        done = os.writev(fd, chunks)
        data = b"".join(chunks) if done < sum(map(len, chunks)) else b""
    else:
        data = b"".join(chunks)
        done = os.write(fd, data)
    while done < len(data):
        done += os.write(fd, memoryview(data)[done:])


def pread_all(fd: int, n: int, pos: int) -> bytes:
    data = os.pread(fd, n, pos)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.pread(fd, n - got, pos + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


@dataclass(slots=True)
class Staged:
    """A validated batch waiting for commit: its lines joined with a trailing newline."""

    base_offset: int
    count: int
    data: bytes
    max_ts: int
    producer_id: bytes = b""
    sequence: int = -1
    data_hash: int = -1  # xxh3_64 of ``data`` when already known (checked), -1: computed at write


class Segment:
    def __init__(self, directory: Path, base: int, interval: int) -> None:
        self.directory = directory
        self.base = base
        self.interval = interval
        self.size = 0
        self.count = 0
        self.index = OffsetIndex()
        self.tindex = TimeIndex()
        self.max_ts = -1
        self.created_ms = 0
        self.fd: int | None = None
        # writer state, active segment only
        self.builder: IndexBuilder | None = None
        self.tbuilder: TimeIndexBuilder | None = None
        self.wfds: tuple[int, int, int] | None = None  # batches, index, timeindex
        self.wsizes = [0, 0, 0]

    def path(self, suffix: str) -> Path:
        return self.directory / (stem(self.base) + suffix)

    @property
    def next_offset(self) -> int:
        return self.base + self.count

    @property
    def active(self) -> bool:
        return self.wfds is not None

    def data_fd(self) -> int:
        if self.fd is None:
            self.fd = os.open(self.path(DATA), os.O_RDONLY | os.O_CLOEXEC)
        return self.fd

    def pread(self, pos: int, end: int) -> bytes:
        """Committed bytes ``[pos, min(end, size))``."""
        end = min(end, self.size)
        return pread_all(self.data_fd(), end - pos, pos) if end > pos else b""

    # -- writing (active segment) ----------------------------------------------------------

    def open_writer(self, builder: IndexBuilder, tbuilder: TimeIndexBuilder) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        if self.fd is not None:
            os.close(self.fd)
        self.fd = os.open(self.path(DATA), flags, 0o644)
        fds = tuple(os.open(self.path(s), flags, 0o644) for s in (BATCHES, INDEX, TIMEINDEX))
        self.wfds = (fds[0], fds[1], fds[2])
        self.wsizes = [os.fstat(fd).st_size for fd in fds]
        self.builder, self.tbuilder = builder, tbuilder

    def write(self, staged: Sequence[Staged]) -> None:
        """Append committed-to-be batches to all four files; on OSError cut every file back."""
        assert self.wfds is not None and self.builder is not None and self.tbuilder is not None
        builder, tb = self.builder.copy(), self.tbuilder.copy()
        ientries = []
        tentries = []
        bentries = []
        pos, rel = self.size, self.count
        h64 = xxhash.xxh3_64_intdigest
        for b in staged:
            ientries += builder.feed(b.data)
            pos += len(b.data)
            rel += b.count
            te = tb.add(rel - 1, pos, b.max_ts)
            if te is not None:
                tentries.append(te)
            bentries.append(bf.BatchEntry(
                bf.BATCH, b.base_offset, b.count, pos, b.max_ts, tb.max_ts, h64(b.data) if b.data_hash < 0 else b.data_hash,
                b.sequence, b.producer_id,
            ).encode())
        assert self.fd is not None
        bfd, ifd, tfd = self.wfds
        try:
            write_all(self.fd, [b.data for b in staged])
            write_all(bfd, [b"".join(bentries)])
            if ientries:
                write_all(ifd, [encode_index(ientries)])
            if tentries:
                write_all(tfd, [encode_time(tentries)])
        except OSError:
            self.cut_back()
            raise
        self.size, self.count = pos, rel
        self.builder, self.tbuilder = builder, tb
        self.max_ts = tb.max_ts
        self.index.extend(ientries)
        for te in tentries:
            self.tindex.append(te)
        self.wsizes[0] += len(bentries) * bf.ENTRY_SIZE
        self.wsizes[1] += len(ientries) * 20
        self.wsizes[2] += len(tentries) * 12

    def cut_back(self) -> None:
        """Truncate every file to its committed length (after a failed write)."""
        assert self.fd is not None and self.wfds is not None
        for fd, size in zip((self.fd, *self.wfds), (self.size, *self.wsizes), strict=True):
            os.ftruncate(fd, size)

    def sync(self) -> None:
        """Flush what an acknowledgement depends on: the data and the batch list. fdatasync also
        flushes the file sizes (needed to read the data back) and skips timestamps: ~3x cheaper."""
        assert self.fd is not None and self.wfds is not None
        _datasync(self.fd)
        _datasync(self.wfds[0])

    def close_writer(self, seal: bool = True) -> None:
        """fsync all four files and close the writer fds; ``seal`` (on a roll) first adds the time
        index's final entry. A partition closing without a roll does not seal: reopening then finds
        exactly the time index a rebuild would produce."""
        if self.wfds is None:
            return
        assert self.tbuilder is not None and self.fd is not None
        if seal and self.count:
            te = self.tbuilder.finish(self.count - 1)
            if te is not None:
                write_all(self.wfds[2], [encode_time([te])])
                self.tindex.append(te)
        os.fsync(self.fd)
        for fd in self.wfds:
            os.fsync(fd)
            os.close(fd)
        self.wfds = None
        self.builder = self.tbuilder = None

    def close(self) -> None:
        if self.wfds is not None:
            self.close_writer(seal=False)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def delete(self) -> None:
        """Remove the segment's files, data first: leftovers without data are cleaned on open."""
        self.close()
        for suffix in SUFFIXES:
            try:
                self.path(suffix).unlink()
            except FileNotFoundError:
                pass


def create_batches_file(directory: Path, base: int, created_ms: int,
                        producers: Sequence[tuple[bytes, int, int, int]]) -> None:
    """Write ``<base>.batches`` (header + producer snapshot) atomically: temp file, fsync, rename."""
    entries = [bf.BatchEntry(bf.HEADER, base, max_ts=created_ms)]
    entries += [bf.BatchEntry(bf.PRODUCER, b, c, sequence=s, producer_id=pid) for pid, s, b, c in producers]
    tmp = directory / (stem(base) + BATCHES + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, [b"".join(e.encode() for e in entries)])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / (stem(base) + BATCHES))
