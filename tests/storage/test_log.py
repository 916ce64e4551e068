"""PartitionLog behaviour: appends, rolls, reads across segments, scans, retention."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import FakeClock, fill, rec, tiny

from zlog.storage import PartitionLog
from zlog.storage.errors import InvalidRecord, RecordTooLarge

SCENARIOS = [
    # (segment_bytes, index_interval_bytes, records, batch)
    (1500, 200, 300, 1),
    (1500, 64, 257, 7),
    (1024, 1, 120, 3),  # an index entry after every line
    (100_000, 4096, 400, 50),  # one segment, few index entries
    (300, 100, 90, 20),  # every batch bigger than a segment
]


@pytest.mark.parametrize(("seg", "interval", "n", "batch"), SCENARIOS)
def test_read_every_offset(tmp_path: Path, seg: int, interval: int, n: int, batch: int) -> None:
    cfg = tiny(segment_bytes=seg, index_interval_bytes=interval)
    with PartitionLog.open(tmp_path, cfg) as log:
        lines = fill(log, n, batch)
        assert (log.lowest_offset, log.next_offset) == (0, n)
        assert log.size_bytes == sum(len(x) + 1 for x in lines)
        if seg < 100_000:
            assert log.segment_count > 3
        for off in range(n):
            got = log.read(off, 5, 10_000)
            assert got == [(o, lines[o]) for o in range(off, min(n, off + 5))]
        assert log.read(n, 10, 10_000) == []
        assert log.read(0, 10**6, 10**9) == list(enumerate(lines))
        # at least one record even when it is bigger than max_bytes
        assert log.read(7, 10, 1) == [(7, lines[7])]
        # max_bytes stops before the record that would exceed it
        got = log.read(3, 100, len(lines[3]) + len(lines[4]) + 1)
        assert got == [(3, lines[3]), (4, lines[4])]
        # segments files are named by their base offsets
        bases = sorted(int(p.stem) for p in tmp_path.glob("*.jsonl"))
        assert bases[0] == 0 and len(bases) == log.segment_count


@pytest.mark.parametrize(("seg", "interval", "n", "batch"), SCENARIOS)
def test_scan_resumes_without_gaps_or_repeats(tmp_path: Path, seg: int, interval: int, n: int,
                                              batch: int) -> None:
    with PartitionLog.open(tmp_path, tiny(segment_bytes=seg, index_interval_bytes=interval)) as log:
        lines = fill(log, n, batch)
        pred = lambda line: b'"service":"svc1"' in line  # noqa: E731
        want = [(o, x) for o, x in enumerate(lines) if pred(x)]
        for backward in (True, False):
            for limit, budget in ((1, 10**6), (7, 10**6), (1000, 300), (3, 50)):
                got: list[tuple[int, bytes]] = []
                start = None
                scanned = 0
                for _ in range(10_000):
                    r = log.scan(backward=backward, start=start, predicate=pred, limit=limit,
                                 budget_bytes=budget)
                    assert len(r.records) <= limit
                    got += r.records
                    scanned += r.scanned_records
                    if r.next is None:
                        break
                    start = r.next
                assert got == (want[::-1] if backward else want), (backward, limit, budget)
                assert scanned <= n
        r = log.scan(limit=10)
        assert r.records == [(o, lines[o]) for o in range(n - 1, n - 11, -1)]
        assert r.next == n - 11
        r = log.scan(backward=False, start=n - 2, limit=10)
        assert [o for o, _ in r.records] == [n - 2, n - 1] and r.next is None


def test_backward_scan_reads_only_the_tail(tmp_path: Path) -> None:
    with PartitionLog.open(tmp_path, tiny(segment_bytes=1 << 20, index_interval_bytes=4096)) as log:
        fill(log, 20_000, 1000)
        r = log.scan(limit=100)
        assert [o for o, _ in r.records] == list(range(19_999, 19_899, -1))
        assert r.scanned_bytes < 100 * 1024


def test_since_ms_skips_old_segments(tmp_path: Path) -> None:
    with PartitionLog.open(tmp_path, tiny()) as log:
        lines = fill(log, 300, 3)
        since = 1_000_000 + 250
        pred = lambda line: int(line.split(b'"timestamp":')[1].split(b",")[0]) >= since  # noqa: E731
        for backward in (True, False):
            r = log.scan(backward=backward, since_ms=since, predicate=pred, limit=1000)
            assert sorted(r.records) == [(o, lines[o]) for o in range(250, 300)]
            assert r.scanned_records < 120  # older segments were never read
        assert log.scan(since_ms=2_000_000, limit=10).records == []


def test_roll_by_age_and_tick(tmp_path: Path, clock: FakeClock) -> None:
    with PartitionLog.open(tmp_path, tiny(segment_bytes=10**6, segment_ms=60_000), clock=clock) as log:
        fill(log, 10)
        log.tick()
        assert log.segment_count == 1
        clock.t += 61
        log.tick()
        assert log.segment_count == 2
        log.tick()  # an empty active segment never rolls
        clock.t += 61
        log.tick()
        assert log.segment_count == 2
        fill(log, 5, start=10)
        assert log.read(0, 100, 10**6)[-1][0] == 14


def test_retention_by_size(tmp_path: Path) -> None:
    with PartitionLog.open(tmp_path, tiny(retention_bytes=3000)) as log:
        lines = fill(log, 300, 3)
        total_before = log.size_bytes
        deleted = log.enforce_retention()
        assert deleted and deleted[0] == 0
        assert log.size_bytes <= 3000 < total_before
        assert log.lowest_offset == int(sorted(tmp_path.glob("*.jsonl"))[0].stem)
        assert log.read(0, 3, 10**6)[0][0] == log.lowest_offset
        assert log.read(0, 10**6, 10**9) == [(o, lines[o]) for o in range(log.lowest_offset, 300)]
        assert log.stats["segments_deleted"] == len(deleted)
        assert not list(tmp_path.glob(f"{0:020d}.*"))


def test_retention_by_age_never_deletes_active(tmp_path: Path, clock: FakeClock) -> None:
    with PartitionLog.open(tmp_path, tiny(retention_ms=1000), clock=clock) as log:
        fill(log, 100)  # timestamps 1_000_000 .. 1_000_099 ms
        n = log.segment_count
        assert log.enforce_retention(now_ms=1_000_000 + 500) == []
        deleted = log.enforce_retention(now_ms=1_000_050 + 1000)
        assert 0 < len(deleted) < n
        assert log.enforce_retention(now_ms=10**12) and log.segment_count == 1
        assert log.next_offset == 100
        fill(log, 3, start=100)
        assert [o for o, _ in log.read(0, 100, 10**6)] == list(range(log.lowest_offset, 103))
    with PartitionLog.open(tmp_path, tiny(retention_ms=1000), clock=clock) as log:
        assert log.next_offset == 103


@pytest.mark.parametrize(("lines", "error"), [
    ([b""], InvalidRecord),
    ([b"{}", b"{"], InvalidRecord),
    ([b'{"a":1}', b'{"a":\n1}'], InvalidRecord),
    ([b"{}", b"[]"], InvalidRecord),
    ([b"{}", b"{}\n"], InvalidRecord),
    ([], InvalidRecord),
    ([b"{" + b"x" * 300 + b"}"], RecordTooLarge),
])
def test_invalid_batches_stage_nothing(tmp_path: Path, lines: list[bytes], error: type[Exception]) -> None:
    with PartitionLog.open(tmp_path, tiny(max_record_bytes=256)) as log:
        log.append([b"{}"], 1)
        with pytest.raises(error):
            log.append(lines, 1)
        r = log.append([b'{"ok":1}'], 1)
        assert r.base_offset == 1
        log.commit()
        assert log.read(0, 10, 1000) == [(0, b"{}"), (1, b'{"ok":1}')]


@pytest.mark.parametrize(("data", "error", "index"), [
    (b"", InvalidRecord, -1),
    (b"{}", InvalidRecord, 0),  # no final newline
    (b"{}\n{}", InvalidRecord, 1),
    (b"{}\n\n{}\n", InvalidRecord, 1),
    (b"{}\n[]\n", InvalidRecord, 1),
    (b"{}\n{\n", InvalidRecord, 1),
    (b"{}\r\n{}\n", InvalidRecord, 0),
    (b"{}\n{" + b"x" * 300 + b"}\n", RecordTooLarge, 1),
    ((b"{" + b"x" * 254 + b"}\n{}\n") * 3, None, None),  # at the limit, several lines in one blob
])
def test_a_blob_is_validated_line_by_line_before_it_is_staged(tmp_path: Path, data: bytes,
                                                               error: type[Exception] | None, index: int | None) -> None:
    with PartitionLog.open(tmp_path, tiny(max_record_bytes=256)) as log:
        if error is None:
            assert log.append_data(data, 1).count == data.count(b"\n")
            log.commit()
            assert [line for _, line in log.read(0, 100, 1 << 20)] == data.split(b"\n")[:-1]
            return
        with pytest.raises(error) as info:
            log.append_data(data, 1)
        assert getattr(info.value, "index", None) == index
        log.append_data(b'{"ok":1}\n{"ok":2}\n', 1)
        log.commit()
        assert log.read(0, 10, 1000) == [(0, b'{"ok":1}'), (1, b'{"ok":2}')]


def test_max_record_bytes_reads_back(tmp_path: Path) -> None:
    big = b'{"m":"' + b"y" * (256 * 1024 - 8) + b'"}'
    with PartitionLog.open(tmp_path, StorageConfig_default()) as log:
        log.append([b"{}", big, b"{}"], 1)
        log.commit()
    with PartitionLog.open(tmp_path, StorageConfig_default()) as log:
        assert log.read(1, 1, 10) == [(1, big)]
        assert [o for o, _ in log.scan(limit=5).records] == [2, 1, 0]


def StorageConfig_default():  # type: ignore[no-untyped-def]
    return tiny(segment_bytes=128 * 1024 * 1024, index_interval_bytes=4096)


def test_properties_and_stats(tmp_path: Path) -> None:
    with PartitionLog.open(tmp_path / "new" / "dir", tiny()) as log:
        assert (log.lowest_offset, log.next_offset, log.size_bytes, log.max_timestamp) == (0, 0, 0, -1)
        assert log.read(0, 10, 100) == [] and log.scan().records == []
        r = log.append([rec(0), rec(1)], 77)
        assert (r.base_offset, r.count, r.duplicate) == (0, 2, False)
        assert log.next_offset == 0  # staged, not committed
        assert log.read(0, 10, 10**6) == []
        log.commit()
        assert log.next_offset == 2 and log.max_timestamp == 77
        assert log.stats["records_appended"] == 2
        assert log.stats["bytes_appended"] == len(rec(0)) + len(rec(1)) + 2
