"""Sealed segments read exactly as their plain form did: fetch, scans both ways, after reopen,
and with standard tools (zstdcat)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
from storage_helpers import FakeClock, fill, tiny

from zlog.read.query import Filter, compile_filter
from zlog.storage import PartitionLog
from zlog.storage.sealed import SEALED, SealedSegment
from zlog.storage.tokens import needles


def paged(log: PartitionLog, **kw: Any) -> list[tuple[int, bytes]]:
    """Every record a scan yields, resumed through ``next`` to the end (pages of ``limit``)."""
    out: list[tuple[int, bytes]] = []
    start = kw.pop("start", None)
    while True:
        r = log.scan(start=start, **kw)
        out += r.records
        if r.next is None:
            return out
        start = r.next


def _everything(log: PartitionLog) -> tuple[list[object], ...]:
    reads: list[object] = [log.read(o, k, 1 << 20) for o in range(0, log.next_offset, 7) for k in (1, 5, 40)]
    reads.append(log.read(5, 1000, 500))
    scans: list[object] = []
    for pred in (None, lambda line: b"svc2" in line, lambda line: b"xxxxxxxxxxxxx" in line):
        for limit in (1, 9, 1000):
            scans.append(paged(log, backward=False, start=3, predicate=pred, limit=limit))
            scans.append(paged(log, start=log.next_offset - 2, predicate=pred, limit=limit, budget_bytes=700))
    for lo, hi in ((0, 0), (150, 300), (390, 780), (20, 60)):
        def in_range(line: bytes, lo: int = lo, hi: int = hi) -> bool:
            return 1_000_000 + lo <= orjson.loads(line)["timestamp"] <= 1_000_000 + hi

        for b in (True, False):  # the time bounds prune; the predicate is exact
            scans.append(paged(log, since_ms=1_000_000 + lo, until_ms=1_000_000 + hi, predicate=in_range,
                               limit=50, backward=b))
    return reads, scans


def test_sealed_segments_read_like_plain(tmp_path: Path, clock: FakeClock) -> None:
    cfg = tiny()
    with PartitionLog.open(tmp_path, cfg, clock=clock) as log:
        fill(log, 400, batch=4)
        assert log.segment_count > 5
        before = _everything(log)
        plain_bytes = {s.base: s.pread(0, s.size) for s in log.segments[:-1]}
        assert log.seal_closed(block_bytes=300, level=3) == log.segment_count - 1
        assert all(isinstance(s, SealedSegment) for s in log.segments[:-1])
        assert _everything(log) == before
        fill(log, 60, batch=4, start=400)  # appends go on beside sealed segments
        more = _everything(log)
        assert log.stored_bytes < log.size_bytes
    with PartitionLog.open(tmp_path, cfg, clock=clock) as log:
        assert _everything(log) == more
        assert log.next_offset == 460
    names = sorted(p.name for p in tmp_path.iterdir())
    for base, data in plain_bytes.items():
        stem = f"{base:020d}"
        assert f"{stem}{SEALED}" in names and f"{stem}.jsonl" not in names and f"{stem}.index" not in names
        out = subprocess.run([shutil.which("zstdcat") or "zstdcat", str(tmp_path / f"{stem}{SEALED}")],
                             capture_output=True, check=True).stdout
        assert out == data


def test_log_cut_back_into_a_sealed_segment_continues_plain(tmp_path: Path, clock: FakeClock) -> None:
    """A replica's truncation may delete every segment after a sealed one: that one becomes the
    newest again and is unsealed, its records intact, and appends continue after it."""
    with PartitionLog.open(tmp_path, tiny(), clock=clock) as log:
        lines = fill(log, 200, batch=4)
        log.seal_closed(block_bytes=300, level=3)
        keep = log.segments[-2]
        assert isinstance(keep, SealedSegment)
        last = log.segments[-1].base
    for p in tmp_path.glob(f"{last:020d}.*"):
        p.unlink()
    with PartitionLog.open(tmp_path, tiny(), clock=clock) as log:
        assert log.next_offset == keep.next_offset and not isinstance(log.segments[-1], SealedSegment)
        assert [line for _, line in log.read(0, 1000, 1 << 30)] == lines[:keep.next_offset]
        more = fill(log, 10, start=500)
        assert [line for _, line in log.read(keep.next_offset, 1000, 1 << 30)] == more
    assert not list(tmp_path.glob(f"{keep.base:020d}.jsonl.zst"))


def test_foreign_lines_seal_and_search(tmp_path: Path, clock: FakeClock) -> None:
    """Lines the gateway would never write (non-string fields, odd labels) seal and read back."""
    odd = [b'{"message":["x"],"labels":{"a":[1],"b":"Zz top"},"service":{"x":1}}', b'{"timestamp":"soon"}',
           b'{"message":"plain Zz","level":7,"labels":null}']
    with PartitionLog.open(tmp_path, tiny(), clock=clock) as log:
        lines = fill(log, 100)
        log.append(odd, 0)
        log.commit()
        lines += odd
        fill(log, 100, start=100)
        log.seal_closed(block_bytes=300, level=3)
        assert [line for _, line in log.read(0, 1000, 1 << 30)][:len(lines)] == lines
        pred = compile_filter(Filter(words=("zz",)))
        assert paged(log, backward=False, predicate=pred, limit=10, needles=needles(["zz"])) == [
            (100, odd[0]), (102, odd[2])]


def test_replication_reads_the_same_batches_across_a_sealed_boundary(tmp_path: Path, clock: FakeClock) -> None:
    """A follower fetching whole batches by offset gets the same bytes from sealed segments."""
    from zlog.replication.logfiles import BatchReader

    def batches(log: PartitionLog) -> list[object]:
        out, off, reader = [], 0, BatchReader()
        while off < log.next_offset:
            got = reader.read(log, off, 700)
            out += got
            off = got[-1].base + got[-1].count
        return out

    with PartitionLog.open(tmp_path, tiny(), clock=clock) as log:
        fill(log, 300, batch=4)
        before = batches(log)
        log.seal_closed(block_bytes=300, level=3)
        assert batches(log) == before and len(before) == 75
