"""Followers store the leader's batches byte for byte; truncation keeps exactly a prefix."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import msgpack
import pytest
import xxhash

from zlog.config import StorageConfig
from zlog.replication.logfiles import (
    BatchReader,
    Diverged,
    NotABoundary,
    apply,
    first_producers,
    restart,
    truncate,
)
from zlog.replication.messages import Request, fetch_reply, parse_reply
from zlog.storage import PartitionLog, ProducerBatch
from zlog.storage import batches as bf
from zlog.storage.errors import InvalidRecord

CFG = StorageConfig(segment_bytes=4096)


def line(i: int) -> bytes:
    return b'{"timestamp":%d,"service":"s","message":"record %d"}' % (1000 + i, i)


def fill(plog: PartitionLog, batches: int, start: int = 0, pid: bytes = b"p1") -> None:
    for k in range(start, start + batches):
        producer = ProducerBatch(pid, (k - start) // 2) if k % 2 == 0 else None
        plog.append([line(k * 10 + j) for j in range(1 + k % 7)], 1000 + k * 10, producer)
        plog.commit()


def replicate(leader: PartitionLog, follower: PartitionLog, reader: BatchReader, max_bytes: int = 700) -> None:
    while follower.next_offset < leader.next_offset:
        apply(follower, reader.read(leader, follower.next_offset, max_bytes))


def files(d: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(d.iterdir()):
        data = p.read_bytes()
        if p.suffix == ".batches":
            data = data[bf.ENTRY_SIZE:]  # the header holds each replica's own creation time
        out[p.name] = data
    return out


def test_a_follower_ends_with_the_leaders_files(tmp_path: Path) -> None:
    leader = PartitionLog.open(tmp_path / "a", CFG)
    follower = PartitionLog.open(tmp_path / "b", CFG)
    reader = BatchReader()
    fill(leader, 40)
    replicate(leader, follower, reader)
    fill(leader, 25, start=40, pid=b"p2")
    replicate(leader, follower, reader, max_bytes=1)  # one batch per read
    assert leader.segment_count >= 3
    assert follower.next_offset == leader.next_offset
    leader.close()
    follower.close()
    assert files(tmp_path / "a") == files(tmp_path / "b")
    again = PartitionLog.open(tmp_path / "b", CFG)  # and the producer table came along
    assert again.append([line(0)], 0, ProducerBatch(b"p2", 12)).duplicate
    again.close()


def test_reads_start_only_at_batch_boundaries(tmp_path: Path) -> None:
    leader = PartitionLog.open(tmp_path / "a", CFG)
    fill(leader, 3)  # batches of 1, 2, 3 records: boundaries 0, 1, 3, 6
    reader = BatchReader()
    assert [b.base for b in reader.read(leader, 1, 1 << 20)] == [1, 3]
    assert reader.read(leader, 6, 1 << 20) == []
    with pytest.raises(NotABoundary):
        reader.read(leader, 2, 1 << 20)
    follower = PartitionLog.open(tmp_path / "b", CFG)
    with pytest.raises(Diverged):
        apply(follower, reader.read(leader, 1, 1 << 20))
    leader.close()
    follower.close()


@pytest.mark.parametrize("cut", [0, 1, 3, 6, 28, 100])
def test_truncate_keeps_exactly_the_prefix(tmp_path: Path, cut: int) -> None:
    plog = PartitionLog.open(tmp_path / "a", CFG)
    fill(plog, 30)
    boundaries = [b.base for b in BatchReader().read(plog, 0, 1 << 30)]
    cut = max(b for b in boundaries if b <= cut)
    before = plog.read(0, 100_000, 1 << 30)
    plog = truncate(plog, cut, CFG)
    assert plog.next_offset == cut
    assert plog.read(0, 100_000, 1 << 30) == before[:cut]
    fill(plog, 2, start=100, pid=b"p2")  # and it takes appends after the cut (3 + 4 records)
    assert plog.read(cut, 10, 1 << 20)[0][1] == line(1000)
    plog.close()
    reopened = PartitionLog.open(tmp_path / "a", CFG)
    assert reopened.next_offset == cut + 7
    reopened.close()


def test_a_follower_behind_the_leaders_log_start_restarts_there_and_ends_with_its_files(tmp_path: Path) -> None:
    leader = PartitionLog.open(tmp_path / "a", CFG)
    fill(leader, 30)  # producer p1's batches all end up in segments retention deletes
    fill(leader, 30, start=30, pid=b"p2")
    sized = StorageConfig(segment_bytes=4096, retention_bytes=6000)
    leader.close()
    leader = PartitionLog.open(tmp_path / "a", sized)
    assert leader.enforce_retention() and leader.lowest_offset > 0
    start = leader.lowest_offset
    p1 = [b for pid, _, b, _ in first_producers(leader) if pid == b"p1"]
    assert p1 and max(p1) < start
    follower = PartitionLog.open(tmp_path / "b", CFG)  # a new, empty replica
    fill(follower, 2)  # ... or one back after a long absence, with an old, shorter copy
    assert follower.next_offset < start
    follower = restart(follower, start, CFG, now_ms=int(time.time() * 1000), producers=first_producers(leader))
    assert (follower.lowest_offset, follower.next_offset) == (start, start)
    reader = BatchReader()
    replicate(leader, follower, reader)
    assert follower.read(start, 10, 1 << 20) == leader.read(start, 10, 1 << 20)
    leader.close()
    follower.close()
    assert files(tmp_path / "a") == files(tmp_path / "b")
    again = PartitionLog.open(tmp_path / "b", CFG)  # it opens where it started, with every record
    assert (again.lowest_offset, again.next_offset) == (start, leader.next_offset)
    # and deduplicates as the leader does, for a producer whose last batch is before ``start``
    assert leader.producers.snapshot() and again.append([line(0)], 0, ProducerBatch(b"p1", 14)).duplicate
    again.close()


def test_a_restart_cut_short_leaves_a_log_that_opens_and_restarts_again(tmp_path: Path) -> None:
    plog = PartitionLog.open(tmp_path / "b", CFG)
    fill(plog, 30)
    bases = [s.base for s in plog.segments]
    plog.close()
    for base in bases[1:]:  # the newest segments went first, then the process died
        for f in (tmp_path / "b").glob(f"{base:020d}.*"):
            f.unlink()
    half = PartitionLog.open(tmp_path / "b", CFG)
    assert half.lowest_offset == 0 and half.next_offset == bases[1]
    again = restart(half, 500, CFG, now_ms=int(time.time() * 1000))
    assert (again.lowest_offset, again.next_offset) == (500, 500)
    assert sorted(p.name for p in (tmp_path / "b").iterdir() if not p.name.endswith(".rollup")) == [
        f"{500:020d}{s}" for s in (".batches", ".index", ".jsonl", ".timeindex")]
    again.close()


def test_a_follower_checks_the_leaders_bytes_against_their_batch_entry(tmp_path: Path) -> None:
    leader = PartitionLog.open(tmp_path / "a", CFG)
    fill(leader, 4)  # batches of 1, 2, 3, 4 records
    got = BatchReader().read(leader, 0, 1 << 20)
    assert [xxhash.xxh3_64_intdigest(b.data) for b in got] == [b.data_hash for b in got]
    follower = PartitionLog.open(tmp_path / "b", CFG)
    flipped = got[2].data.replace(b"record", b"recorD", 1)  # same length, still one-line JSON
    bad = [got[0], got[1], dataclasses.replace(got[2], data=flipped), got[3]]
    with pytest.raises(InvalidRecord):
        apply(follower, bad)
    assert follower.next_offset == 3  # the batches before the bad one, committed; nothing staged
    apply(follower, got[2:])
    assert follower.read(0, 100, 1 << 20) == leader.read(0, 100, 1 << 20)
    short = dataclasses.replace(got[3], count=3)  # a wrong line count fails with the right hash
    with pytest.raises(InvalidRecord):
        PartitionLog.open(tmp_path / "c", CFG).append_replica(short.data, 3, 0, None, short.data_hash)
    leader.close()
    follower.close()


def test_a_fetch_reply_carries_each_batchs_hash_and_one_without_is_checked_record_by_record(
        tmp_path: Path) -> None:
    leader = PartitionLog.open(tmp_path / "a", CFG)
    fill(leader, 3)
    got = BatchReader().read(leader, 0, 1 << 20)
    req = Request("fetch", 1, "0", 1, 0, 0, 1 << 20, 0)
    reply = parse_reply(fetch_reply(req, 0, leader.next_offset, got, [0] * len(got)))
    assert [b for b, _ in reply.batches] == got
    old = msgpack.unpackb(fetch_reply(req, 0, 6, got, [0] * len(got)))
    old["batches"] = [it[:8] for it in old["batches"]]  # a leader that sends no hash
    old["batches"][1][2] = b"not json\n" * 2
    unhashed = [b for b, _ in parse_reply(msgpack.packb(old)).batches]
    assert [b.data_hash for b in unhashed] == [-1, -1, -1]
    follower = PartitionLog.open(tmp_path / "b", CFG)
    with pytest.raises(InvalidRecord):
        apply(follower, unhashed)
    assert follower.next_offset == 1
    leader.close()
    follower.close()
