"""The exactly-once checker: it must catch a dropped, a duplicated and a reordered record.

Fed by hand-built stored lines (the exact stored format) and by a real segment directory layout,
so a checker that passes everything would fail here.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from zlog.ops.audit import Audit, tag


def line(value: str, label: str = "zb") -> bytes:
    rec = {"timestamp": 1, "service": "svc", "level": "INFO", "message": "m",
           "labels": {"a": "x", label: value}, "received_at": 2, "ingested_node_id": "n", "client_ip": "127.0.0.1"}
    return orjson.dumps(rec)


def stored(pairs: list[tuple[int, str]]) -> list[tuple[int, bytes]]:
    return [(p, line(v)) for p, v in pairs]


def test_all_present_once_is_ok() -> None:
    a = Audit()
    a.acknowledge("r1", 3)
    a.acknowledge("r2", 2)
    a.scan_lines(stored([(0, "r1:0"), (1, "r2:0"), (0, "r1:1"), (1, "r2:1"), (0, "r1:2")]))
    r = a.report()
    assert r.ok, r
    assert (r.acknowledged, r.stored, r.lost, r.duplicated, r.out_of_order) == (5, 5, 0, 0, 0)


def test_a_dropped_record_is_lost() -> None:
    a = Audit()
    a.acknowledge("r1", 3)
    a.scan_lines(stored([(0, "r1:0"), (0, "r1:2")]))
    r = a.report()
    assert not r.ok
    assert r.lost == 1 and r.duplicated == 0
    assert r.examples["lost"] == ["r1:1"]


def test_a_whole_unit_never_stored_is_lost() -> None:
    a = Audit()
    a.acknowledge("r1", 2)
    a.acknowledge("r2", 4)
    a.scan_lines(stored([(0, "r1:0"), (0, "r1:1")]))
    r = a.report()
    assert r.lost == 4 and not r.ok


def test_a_duplicated_record_is_caught_and_not_also_a_reordering() -> None:
    a = Audit()
    a.acknowledge("r1", 3)
    # A retried batch stored twice: the whole run appears again.
    a.scan_lines(stored([(0, "r1:0"), (0, "r1:1"), (0, "r1:2"), (0, "r1:1"), (0, "r1:2")]))
    r = a.report()
    assert not r.ok
    assert r.duplicated == 2 and r.lost == 0 and r.out_of_order == 0
    assert r.examples["duplicated"] == ["r1:1 x2", "r1:2 x2"]


def test_reordering_within_a_partition_is_caught_but_across_partitions_is_not() -> None:
    a = Audit()
    a.acknowledge("r1", 4)
    a.scan_lines(stored([(0, "r1:1"), (0, "r1:0"), (1, "r1:3"), (2, "r1:2")]))
    r = a.report()
    assert r.out_of_order == 1 and r.lost == 0 and r.duplicated == 0
    assert not r.ok


def test_unacknowledged_records_are_reported_not_failed_unless_duplicated() -> None:
    a = Audit()
    a.acknowledge("r1", 1)
    a.scan_lines(stored([(0, "r1:0"), (0, "timed-out:0"), (0, "r1:5")]))
    r = a.report()
    assert r.ok and r.unacknowledged == 2
    a.scan_lines(stored([(0, "timed-out:0")]))
    assert a.report().duplicated == 1


def test_untagged_lines_are_ignored_and_malformed_tags_fail() -> None:
    a = Audit()
    a.acknowledge("r1", 1)
    a.scan_lines([(0, line("r1:0", label="other")), (0, line("r1:0"))])
    assert a.report().ok and a.report().stored == 1
    a.scan_lines(stored([(0, "no-index")]))
    assert a.report().malformed == 1 and not a.report().ok


def test_acknowledging_a_unit_twice_is_a_caller_bug() -> None:
    a = Audit()
    a.acknowledge("r1", 1)
    try:
        a.acknowledge("r1", 1)
    except ValueError:
        return
    raise AssertionError("a double acknowledgement must raise")


def test_scan_dir_reads_every_partition_and_segment_across_chunk_boundaries(tmp_path: Path) -> None:
    a = Audit()
    n = 5000
    a.acknowledge("big", n)
    for p in range(2):
        (tmp_path / str(p)).mkdir()
    (tmp_path / "not-a-partition").mkdir()
    (tmp_path / "0" / "00000000000000000000.index").write_bytes(b"\x00" * 64)
    half = n // 2
    # Records 0..half-1 in partition 0 over two segments, the rest in partition 1, one dropped.
    seg0 = b"".join(line(tag("big", i)) + b"\n" for i in range(0, half // 2))
    seg1 = b"".join(line(tag("big", i)) + b"\n" for i in range(half // 2, half))
    seg2 = b"".join(line(tag("big", i)) + b"\n" for i in range(half, n) if i != 4321)
    (tmp_path / "0" / "00000000000000000000.jsonl").write_bytes(seg0)
    (tmp_path / "0" / f"{half // 2:020d}.jsonl").write_bytes(seg1)
    (tmp_path / "1" / "00000000000000000000.jsonl").write_bytes(seg2 + line(tag("big", 7)))  # no final newline
    a.scan_dir(tmp_path, chunk_bytes=1000)  # chunks far smaller than the files: lines cross chunks
    r = a.report()
    assert r.lost == 1 and r.examples["lost"] == ["big:4321"]
    assert r.duplicated == 1 and r.examples["duplicated"] == ["big:7 x2"]
    assert r.stored == n
