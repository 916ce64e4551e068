"""Readers of a replicated partition see only what is below the high watermark."""

from __future__ import annotations

from pathlib import Path

from zlog.config import StorageConfig
from zlog.read.query import Filter, needles_of
from zlog.replication.view import BoundedLog
from zlog.storage import PartitionLog


def test_reads_and_scans_stop_at_the_high_watermark(tmp_path: Path) -> None:
    plog = PartitionLog.open(tmp_path / "p", StorageConfig())
    for i in range(10):
        plog.append([b'{"timestamp":%d,"service":"s","message":"m%d"}' % (i, i)], i)
    plog.commit()
    v = BoundedLog(plog, hw=6)
    assert v.next_offset == 6 and v.lowest_offset == 0 and v.segment_count == 1
    assert [o for o, _ in v.read(0, 100, 1 << 20)] == list(range(6))
    assert v.read(6, 100, 1 << 20) == []
    back = v.scan(backward=True, limit=100)
    assert [o for o, _ in back.records] == [5, 4, 3, 2, 1, 0]
    fwd = v.scan(backward=False, start=3, limit=100)
    assert [o for o, _ in fwd.records] == [3, 4, 5] and fwd.next is None
    assert v.scan(backward=False, start=6).records == []
    assert [o for o, _ in v.scan(backward=True, start=9).records] == [5, 4, 3, 2, 1, 0]
    # the read path's search passes the filter's needles (sealed blocks they rule out are skipped)
    q = needles_of(Filter(contains="m4"))
    assert [o for o, _ in v.scan(backward=True, needles=q, predicate=lambda line: b"m4" in line).records] == [4]
    assert v.scan(backward=False, start=0, needles=q, predicate=lambda line: b"m7" in line).records == []
    v.hw = 100  # past the log end: the log end bounds it
    assert v.next_offset == 10 and len(v.read(0, 100, 1 << 20)) == 10
    plog.close()
