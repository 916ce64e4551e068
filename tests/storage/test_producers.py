"""Idempotent producers: duplicates, gaps, restarts and rolls."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import rec, tiny

from zlog.storage import PartitionLog, ProducerBatch
from zlog.storage.errors import InvalidRecord, OutOfOrderSequence
from zlog.storage.producers import ProducerTable


def test_duplicates_and_gaps(tmp_path: Path) -> None:
    with PartitionLog.open(tmp_path, tiny()) as log:
        a, b = b"producer-a", b"producer-b"
        r0 = log.append([rec(0), rec(1)], 1, ProducerBatch(a, 5))  # any first sequence
        assert (r0.base_offset, r0.count, r0.duplicate) == (0, 2, False)
        # a retry inside the same commit window is already a duplicate
        assert log.append([rec(0), rec(1)], 1, ProducerBatch(a, 5)) == type(r0)(0, 2, True)
        log.commit()
        assert log.append([rec(0), rec(1)], 1, ProducerBatch(a, 5)) == type(r0)(0, 2, True)
        with pytest.raises(OutOfOrderSequence) as exc:
            log.append([rec(2)], 1, ProducerBatch(a, 7))
        assert exc.value.expected == 6
        assert log.append([rec(2)], 1, ProducerBatch(b, 0)).base_offset == 2  # independent producers
        for seq in range(6, 16):
            log.append([rec(seq)], 1, ProducerBatch(a, seq))
        log.commit()
        assert log.append([rec(15)], 1, ProducerBatch(a, 15)) == type(r0)(12, 1, True)
        assert log.append([rec(11)], 1, ProducerBatch(a, 11)) == type(r0)(8, 1, True)
        old = log.append([rec(0), rec(1)], 1, ProducerBatch(a, 5))  # too old to remember
        assert (old.base_offset, old.count, old.duplicate) == (-1, 2, True)
        assert log.next_offset == 13
        assert log.stats["duplicates"] == 5
        with pytest.raises(InvalidRecord):
            log.append([rec(0)], 1, ProducerBatch(b"x" * 17, 0))


def test_idempotence_survives_reopen_and_rolls(tmp_path: Path) -> None:
    cfg = tiny(segment_bytes=1024)
    with PartitionLog.open(tmp_path, cfg) as log:
        for seq in range(40):
            log.append([rec(seq), rec(seq + 1000)], 1, ProducerBatch(b"p%d" % (seq % 3), seq // 3))
            log.commit()
        assert log.segment_count > 5
    with PartitionLog.open(tmp_path, cfg) as log:
        for seq in range(40):
            pid, s = b"p%d" % (seq % 3), seq // 3
            r = log.append([rec(seq)], 1, ProducerBatch(pid, s))
            assert r.duplicate
            assert r.base_offset in (-1, 2 * seq)
            if seq >= 40 - 12:  # the last batches of each producer are remembered exactly
                assert (r.base_offset, r.count) == (2 * seq, 2)
        with pytest.raises(OutOfOrderSequence):
            log.append([rec(0)], 1, ProducerBatch(b"p0", 20))
        assert log.append([rec(0)], 1, ProducerBatch(b"p0", 14)).base_offset == 80
        log.commit()
    with PartitionLog.open(tmp_path, cfg) as log:
        assert log.append([rec(0)], 1, ProducerBatch(b"p0", 14)).base_offset == 80


def test_table_is_bounded_lru() -> None:
    t = ProducerTable(capacity=3, remember=2)
    for i in range(3):
        t.restore(b"%d" % i, 0, i, 1)
    t.restore(b"0", 1, 10, 1)  # producer 0 used recently
    t.restore(b"9", 0, 20, 1)  # evicts producer 1
    assert len(t) == 3
    assert t.check(ProducerBatch(b"1", 5)) is None  # forgotten: any sequence is accepted
    assert t.check(ProducerBatch(b"0", 1)) == (10, 1)
    t.restore(b"0", 2, 11, 1)
    t.restore(b"0", 3, 12, 1)
    assert t.check(ProducerBatch(b"0", 1)) == (-1, 0)  # only the last 2 are remembered
