"""Rollups: exact per slot, counted incrementally in bounded steps, saved for closed segments, rebuilt
when their files are missing or wrong, forgotten by retention."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
from storage_helpers import FakeClock, tiny

from zlog.storage import PartitionLog
from zlog.storage.rollup import SLOT_MS, cells_of

SERVICES = ["auth", 'we"ird\\svc', "billing"]
LEVELS = ["INFO", "ERROR", "warn"]


def line(i: int) -> bytes:
    return orjson.dumps({"timestamp": 1_700_000_000_000 + i * 3_700, "service": SERVICES[i % 3],
                         "level": LEVELS[i % 7 % 3], "message": f"m{i}" + "x" * (i % 31), "labels": {}})


def expected(lines: list[bytes]) -> Counter[tuple[int, str, str]]:
    out: Counter[tuple[int, str, str]] = Counter()
    for raw in lines:
        r = orjson.loads(raw)
        out[(r["timestamp"] // SLOT_MS, r["service"], r["level"])] += 1
    return out


def rolled(plog: PartitionLog) -> Counter[tuple[int, str, str]]:
    assert plog.rollup.catch_up(plog.segments, 1 << 40)
    out: Counter[tuple[int, str, str]] = Counter()
    for slot, svc, lvl, c in plog.rollup.rows(s.base for s in plog.segments):
        out[(slot, svc, lvl)] += c
    return out


def fill(plog: PartitionLog, n: int, batch: int = 4) -> list[bytes]:
    lines = [line(i) for i in range(n)]
    for i in range(0, n, batch):
        chunk = lines[i:i + batch]
        plog.append(chunk, max(orjson.loads(x)["timestamp"] for x in chunk))
        plog.commit()
    return lines


def test_rollup_counts_every_record_across_rolls_and_reopen(tmp_path: Path, clock: FakeClock) -> None:
    cfg = tiny()
    with PartitionLog.open(tmp_path, cfg, clock=clock) as plog:
        lines = fill(plog, 120)
        assert plog.segment_count > 3
        assert rolled(plog) == expected(lines)
    saved = sorted(p.name for p in tmp_path.glob("*.rollup"))
    assert len(saved) >= 3  # every closed segment has its file
    with PartitionLog.open(tmp_path, cfg, clock=clock) as plog:
        assert rolled(plog) == expected(lines)


def test_catch_up_is_bounded_and_incremental(tmp_path: Path, clock: FakeClock) -> None:
    with PartitionLog.open(tmp_path, tiny(), clock=clock) as plog:
        lines = fill(plog, 60)
        steps = 0
        while not plog.rollup.catch_up(plog.segments, 300):  # a few blocks per step
            steps += 1
        assert steps > 3
        more = [line(i) for i in range(60, 70)]
        plog.append(more, max(orjson.loads(x)["timestamp"] for x in more))
        plog.commit()
        assert rolled(plog) == expected(lines + more)  # only the new records were counted again


def test_rollup_rebuilt_when_missing_torn_or_stale(tmp_path: Path, clock: FakeClock) -> None:
    cfg = tiny()
    with PartitionLog.open(tmp_path, cfg, clock=clock) as plog:
        lines = fill(plog, 80)
        rolled(plog)
    files = sorted(tmp_path.glob("*.rollup"))
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes()[:7])  # torn
    stale = orjson.loads(files[2].read_bytes())
    stale["records"] += 1
    files[2].write_bytes(orjson.dumps(stale))
    with PartitionLog.open(tmp_path, cfg, clock=clock) as plog:
        assert rolled(plog) == expected(lines)
    assert files[0].exists()  # rebuilt and saved again


def test_retention_forgets_deleted_segments(tmp_path: Path, clock: FakeClock) -> None:
    cfg = tiny(retention_bytes=3000)
    with PartitionLog.open(tmp_path, cfg, clock=clock) as plog:
        fill(plog, 100)
        deleted = plog.enforce_retention()
        assert deleted
        kept = [orjson.dumps(orjson.loads(x)) for s in plog.segments for x in s.pread(0, s.size).splitlines()]
        assert rolled(plog) == expected(kept)
        for base in deleted:
            assert not (tmp_path / f"{base:020d}.rollup").exists()


def test_fast_and_slow_paths_agree() -> None:
    lines = [line(i) for i in range(50)]
    data = b"\n".join(lines) + b"\n"
    fast = Counter(cells_of(data, 50))
    # An odd line (not in the stored shape) sends the whole batch down the exact path.
    odd = b'{"service":"auth","timestamp":1700000000000,"level":"INFO","message":"m"}'
    slow = Counter(cells_of(data + odd + b"\n", 51))
    assert sum(fast.values()) == 50 and sum(slow.values()) == 51
    assert slow - fast == Counter({(b"170000000", b"auth", b"INFO"): 1})


def test_counting_in_steps_between_commits_and_across_a_seal_counts_each_record_once(
        tmp_path: Path, clock: FakeClock) -> None:
    with PartitionLog.open(tmp_path, tiny(), clock=clock) as plog:
        lines = fill(plog, 40)
        assert not plog.rollup.catch_up(plog.segments, 200)  # part of the oldest segment counted
        assert plog.seal_closed(block_bytes=256, level=1) >= 1  # ... which is now read from its blocks
        for step in range(6):
            more = [line(i) for i in range(40 + step * 5, 45 + step * 5)]
            plog.append(more, max(orjson.loads(x)["timestamp"] for x in more))
            plog.commit()
            lines += more
            plog.rollup.catch_up(plog.segments, 150)
        assert rolled(plog) == expected(lines)


def test_a_repeated_key_is_counted_as_a_decoder_reads_it() -> None:
    """A producer's line may repeat the service key; every decoder takes the last one, and so must
    the rollup (or a tenant could show services in counts that its limits never saw)."""
    head = b'{"timestamp":1700000000000,"service":"seen","level":"INFO","message":"m"'
    repeated = head + b',"service":"real"}'
    labelled = head + b',"labels":{"service":"a-label","level":"x"}}'
    plain = [line(i) for i in range(3)]
    for odd, cell in [(repeated, (b"170000000", b"real", b"INFO")), (labelled, (b"170000000", b"seen", b"INFO"))]:
        assert orjson.loads(odd)["service"] == cell[1].decode()  # what a decoder reads
        data = b"\n".join([*plain, odd, *plain]) + b"\n"
        counted = Counter(cells_of(data, 7))
        assert counted[cell] == 1 and sum(counted.values()) == 7
        assert counted - Counter({cell: 1}) == Counter(cells_of(b"\n".join(plain * 2) + b"\n", 6))
