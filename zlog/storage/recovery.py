"""Opening segments after any stop, clean or not: verify, cut, rebuild.

The active (last) segment is checked completely; it never depends on a clean close:
- With a ``.batches`` file, the committed batches are the truth. Each BATCH entry must continue
  the offsets, end inside the data file, end on a newline, hold ``count`` lines and match its
  xxh3 hash. The data is cut after the last batch that passes; entries after it are dropped.
  Bytes past the last complete entry were never acknowledged (an ack waits for both writes), so
  cutting them makes every batch all-or-nothing and a retried batch is stored exactly once. A
  hash mismatch is corruption: logged at ERROR and counted.
- Without a ``.batches`` file (data written by something else), the data is trusted: a torn last
  line is cut, and existing offset-index entries are verified block by block; the first failing
  block is cut off (ERROR, counted). A ``.batches`` file describing the kept data is then written.
- The offset index is rebuilt from the kept bytes and the time index from the kept batches, and
  each file is rewritten only when it differs, so a rebuild is byte-identical to the original.

Closed segments were sealed (fsynced) before their successor existed. Opening them reads only
their index files: an index that is torn, out of bounds or missing entries (the tail after its
last entry would have closed a block) or whose last block's hash fails is rebuilt from the data; a
time index whose last entry is not the segment's max timestamp (from the ``.batches`` tail) is
rebuilt from the ``.batches`` file. Closed data is never cut: corruption there is logged, counted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import xxhash

from zlog.storage import batches as bf
from zlog.storage.batchdata import is_stored_batch
from zlog.storage.index import (
    INDEX_ENTRY,
    TIME_ENTRY,
    IndexBuilder,
    IndexEntry,
    OffsetIndex,
    TimeEntry,
    TimeIndex,
    TimeIndexBuilder,
    block_hash,
    decode_index,
    decode_time,
    encode_index,
    encode_time,
)
from zlog.storage.segment import BATCHES, DATA, INDEX, TIMEINDEX, Segment, pread_all, write_all

log = logging.getLogger("zlog.storage")
_CHUNK = 1 << 20


@dataclass(slots=True)
class Report:
    truncated_bytes: int = 0
    checksum_failures: int = 0
    producer_entries: list[bf.BatchEntry] = field(default_factory=list)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _chunks(fd: int, start: int, end: int) -> Iterator[bytes]:
    while start < end:
        data = pread_all(fd, min(_CHUNK, end - start), start)
        if not data:
            return
        yield data
        start += len(data)


def _replace_if_different(path: Path, expected: bytes, what: str) -> None:
    old = _read(path)
    if old == expected:
        return
    if old:
        log.warning("%s: %s differs from its rebuild (%d vs %d bytes); rewritten", path, what,
                    len(old), len(expected))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, [expected])
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_line_end(fd: int, size: int) -> int:
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        j = pread_all(fd, pos - start, start).rfind(b"\n")
        if j >= 0:
            return start + j + 1
        pos = start
    return 0


def _max_timestamp(fd: int, end: int) -> int:
    """The largest ``timestamp`` field of the lines before ``end`` (foreign data only)."""
    best = 0
    tail = b""
    for chunk in _chunks(fd, 0, end):
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        for line in lines:
            try:
                ts = orjson.loads(line).get("timestamp")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if isinstance(ts, int) and ts > best:
                best = ts
    return best


def recover_active(directory: Path, base: int, interval: int, now_ms: int, report: Report) -> Segment:
    seg = Segment(directory, base, interval)
    fd = os.open(seg.path(DATA), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        size = os.fstat(fd).st_size
        builder, tb = IndexBuilder(interval), TimeIndexBuilder(interval)
        ientries: list[IndexEntry] = []
        tentries: list[TimeEntry] = []
        raw = _read(seg.path(BATCHES))
        if raw is not None:
            entries, _ = bf.decode(raw)
            head = [e for e in entries if e.kind != bf.BATCH]
            batch_list = [e for e in entries if e.kind == bf.BATCH]
            seg.created_ms = entries[0].max_ts if entries and entries[0].kind == bf.HEADER else now_ms
            report.producer_entries = [e for e in head if e.kind == bf.PRODUCER]
            pos = rel = good = 0
            for e in batch_list:
                if e.base_offset != base + rel or e.count <= 0 or not pos < e.end_pos <= size:
                    break
                data = pread_all(fd, e.end_pos - pos, pos)
                if not is_stored_batch(data, e.count, e.data_hash):
                    report.checksum_failures += 1
                    log.error("%s: batch at offset %d fails its checksum; segment cut at byte %d",
                              seg.path(DATA), e.base_offset, pos)
                    break
                ientries += builder.feed(data)
                te = tb.add(rel + e.count - 1, e.end_pos, e.max_ts)
                if te is not None:
                    tentries.append(te)
                pos, rel, good = e.end_pos, rel + e.count, good + 1
            valid_end = pos
            keep = (len(head) + good) * bf.ENTRY_SIZE
            if keep < len(raw):
                log.warning("%s: dropped %d bytes of unfinished batch entries", seg.path(BATCHES), len(raw) - keep)
                os.truncate(seg.path(BATCHES), keep)
            report.producer_entries += batch_list[:good]
        else:
            seg.created_ms = now_ms
            valid_end = _last_line_end(fd, size)
            prev = 0
            for _, p, h in decode_index(_read(seg.path(INDEX)) or b""):
                if p > valid_end or p <= prev:
                    break
                if block_hash(pread_all(fd, p - prev, prev)) != h:
                    report.checksum_failures += 1
                    log.error("%s: block [%d, %d) fails its checksum; segment cut at byte %d",
                              seg.path(DATA), prev, p, prev)
                    valid_end = prev
                    break
                prev = p
            whole = xxhash.xxh3_64()
            for chunk in _chunks(fd, 0, valid_end):
                ientries += builder.feed(chunk)
                whole.update(chunk)
            entries = [bf.BatchEntry(bf.HEADER, base, max_ts=now_ms)]
            if valid_end:
                mts = _max_timestamp(fd, valid_end)
                te = tb.add(builder.lines - 1, valid_end, mts)
                tentries.append(te) if te is not None else None
                entries.append(bf.BatchEntry(bf.BATCH, base, builder.lines, valid_end, mts, mts,
                                             whole.intdigest()))
            _replace_if_different(seg.path(BATCHES), b"".join(e.encode() for e in entries), "batch list")
        if valid_end < size:
            report.truncated_bytes += size - valid_end
            log.warning("%s: cut %d bytes of unacknowledged or torn data at byte %d",
                        seg.path(DATA), size - valid_end, valid_end)
            os.ftruncate(fd, valid_end)
            os.fsync(fd)
    finally:
        os.close(fd)
    _replace_if_different(seg.path(INDEX), encode_index(ientries), "offset index")
    _replace_if_different(seg.path(TIMEINDEX), encode_time(tentries), "time index")
    seg.size, seg.count = valid_end, builder.lines
    seg.index, seg.tindex, seg.max_ts = OffsetIndex(ientries), TimeIndex(tentries), tb.max_ts
    seg.open_writer(builder, tb)
    return seg


def _index_ok(seg: Segment, raw: bytes | None, report: Report) -> bool:
    if raw is None or len(raw) % INDEX_ENTRY.size:
        return False
    entries = decode_index(raw)
    last_rel, last_pos = (entries[-1][0], entries[-1][1]) if entries else (0, 0)
    if last_pos > seg.size or last_rel > seg.count or seg.size - last_pos >= seg.interval:
        return False
    if entries:
        prev = entries[-2][1] if len(entries) > 1 else 0
        if block_hash(pread_all(seg.data_fd(), last_pos - prev, prev)) != entries[-1][2]:
            report.checksum_failures += 1
            log.error("%s: last indexed block [%d, %d) fails its checksum", seg.path(DATA), prev, last_pos)
            return False
    seg.index = OffsetIndex(entries)
    return True


def load_closed(directory: Path, base: int, next_base: int, interval: int, report: Report) -> Segment:
    seg = Segment(directory, base, interval)
    seg.size = os.stat(seg.path(DATA)).st_size
    seg.count = next_base - base
    if not _index_ok(seg, _read(seg.path(INDEX)), report):
        builder = IndexBuilder(interval)
        ientries: list[IndexEntry] = []
        for chunk in _chunks(seg.data_fd(), 0, seg.size):
            ientries += builder.feed(chunk)
        _replace_if_different(seg.path(INDEX), encode_index(ientries), "offset index")
        seg.index = OffsetIndex(ientries)
    raw = _read(seg.path(TIMEINDEX))
    bpath = seg.path(BATCHES)
    seg_max = None
    if os.path.exists(bpath) and os.path.getsize(bpath) >= bf.ENTRY_SIZE:
        with open(bpath, "rb") as f:
            f.seek((os.path.getsize(bpath) // bf.ENTRY_SIZE - 1) * bf.ENTRY_SIZE)
            tail, _ = bf.decode(f.read(bf.ENTRY_SIZE))
        seg_max = tail[0].seg_max_ts if tail and tail[0].kind == bf.BATCH else None
    tentries = decode_time(raw or b"")
    if raw is None or len(raw) % TIME_ENTRY.size or (seg_max is not None and (
            not tentries or tentries[-1][0] != seg_max)):
        tentries = _rebuild_time(seg, interval)
        _replace_if_different(seg.path(TIMEINDEX), encode_time(tentries), "time index")
    seg.tindex = TimeIndex(tentries)
    seg.max_ts = seg.tindex.last_ts
    return seg


def _rebuild_time(seg: Segment, interval: int) -> list[TimeEntry]:
    entries, _ = bf.decode(_read(seg.path(BATCHES)) or b"")
    tb = TimeIndexBuilder(interval)
    out: list[TimeEntry] = []
    for e in entries:
        if e.kind == bf.BATCH:
            te = tb.add(e.base_offset + e.count - 1 - seg.base, e.end_pos, e.max_ts)
            out += [te] if te is not None else []
    if not out and seg.count:
        te = tb.add(seg.count - 1, seg.size, _max_timestamp(seg.data_fd(), seg.size))
        out += [te] if te is not None else []
    te = tb.finish(seg.count - 1)
    return out + ([te] if te is not None else [])
