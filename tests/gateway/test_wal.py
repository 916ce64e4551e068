"""The ingest WAL: the engine on its own, and spool-and-replay through real processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests._cluster import Cluster, wait_until
from zlog.gateway.spool import gap_action
from zlog.gateway.wal import IngestWal, WalEntry


def lines(n: int, tag: str = "x") -> list[bytes]:
    return [json.dumps({"message": f"{tag}-{i}"}).encode() for i in range(n)]


def test_append_replay_and_reopen(tmp_path: Path) -> None:
    wal = IngestWal(tmp_path, 1 << 20)
    assert wal.peek() is None
    assert wal.append(1, b"pid-a", 0, 10, lines(3, "a"))
    assert wal.append(2, b"pid-b", 7, 20, lines(2, "b"))
    wal.close()
    wal = IngestWal(tmp_path, 1 << 20)
    e = wal.peek()
    assert e is not None and (e.partition, e.producer_id, e.sequence, e.max_timestamp) == (1, b"pid-a", 0, 10)
    assert e.lines == lines(3, "a")
    wal.advance()
    wal.close()
    wal = IngestWal(tmp_path, 1 << 20)  # the cursor survives a restart
    e = wal.peek()
    assert e is not None and e.sequence == 7
    wal.advance()
    assert wal.peek() is None and wal.pending == 0
    assert not list(tmp_path.glob("*.wal"))  # fully replayed segments are deleted
    assert wal.append(3, b"pid-c", 1, 30, lines(1))  # and appending goes on
    assert wal.peek() is not None


def test_entries_from_a_number_across_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zlog.gateway.wal.SEGMENT_BYTES", 200)  # a few entries per segment
    wal = IngestWal(tmp_path, 1 << 20)
    for i in range(9):
        assert wal.append(0, b"pid", i, i, lines(2, f"e{i}"))
    assert len(list(tmp_path.glob("*.wal"))) > 2
    assert [e.sequence for e in wal.entries(0)] == list(range(9))
    assert [(e.number, e.sequence) for e in wal.entries(5)] == [(n, n) for n in range(5, 9)]
    wal.advance()
    wal.advance()
    assert [e.sequence for e in wal.entries(0)] == list(range(2, 9))  # never below the cursor
    assert list(wal.entries(9)) == []


# After OUT_OF_ORDER_SEQUENCE on the entry at the cursor: (partition, pid, seq) of the entries
# behind it, how long it has been refused (s), and what the spool does (grace 6 s).
GAPS = [
    ("its predecessor is behind it", [(0, b"p", 28), (0, b"p", 29)], 0.0, "defer"),
    ("still behind it after the grace", [(0, b"p", 22)], 60.0, "defer"),
    ("nothing behind it: the producer may still be retrying the predecessor", [], 0.0, "wait"),
    ("only later sequences behind it", [(0, b"p", 31)], 1.0, "wait"),
    ("the same sequence of another producer id", [(0, b"q", 3)], 1.0, "wait"),
    ("the same producer id on another partition", [(1, b"p", 3)], 1.0, "wait"),
    ("refused for the whole grace: nothing can fill the gap", [(0, b"p", 31)], 6.0, "resequence"),
]


@pytest.mark.parametrize(("why", "behind", "refused_for", "action"), GAPS, ids=[g[0] for g in GAPS])
def test_an_out_of_sequence_entry_waits_for_its_predecessor(why: str, behind: list[tuple[int, bytes, int]],
                                                            refused_for: float, action: str) -> None:
    entry = WalEntry(10, 0, b"p", 30, 0, [b"{}"])
    later = [WalEntry(11 + i, p, pid, seq, 0, [b"{}"]) for i, (p, pid, seq) in enumerate(behind)]
    assert gap_action(entry, later, refused_for, 6.0) == action, why


def test_torn_tail_is_cut_at_every_byte(tmp_path: Path) -> None:
    src = tmp_path / "src"
    wal = IngestWal(src, 1 << 20)
    wal.append(0, b"p", 0, 1, lines(2, "first"))
    size_one = wal.size_bytes
    wal.append(0, b"p", 1, 1, lines(2, "second"))
    wal.close()
    (seg,) = src.glob("*.wal")
    data = seg.read_bytes()
    for cut in range(size_one, len(data)):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / seg.name).write_bytes(data[:cut])
        w = IngestWal(d, 1 << 20)
        assert w.pending == 1, cut
        e = w.peek()
        assert e is not None and e.lines == lines(2, "first")
        assert w.append(0, b"p", 1, 1, lines(1, "again"))  # appendable after the cut
        w.close()


def test_flipped_byte_is_detected(tmp_path: Path) -> None:
    wal = IngestWal(tmp_path, 1 << 20)
    wal.append(0, b"p", 0, 1, lines(2, "a"))
    first = wal.size_bytes
    wal.append(0, b"p", 1, 1, lines(2, "b"))
    wal.close()
    (seg,) = tmp_path.glob("*.wal")
    data = bytearray(seg.read_bytes())
    data[first + 12] ^= 0xFF
    seg.write_bytes(bytes(data))
    wal = IngestWal(tmp_path, 1 << 20)
    assert wal.pending == 1 and wal.truncated_bytes == len(data) - first


def test_bounded(tmp_path: Path) -> None:
    wal = IngestWal(tmp_path, 4096)
    n = 0
    while wal.append(0, b"p", n, 1, lines(10)):
        n += 1
    assert 0 < n < 20 and wal.size_bytes <= 4096


# -- through the cluster --------------------------------------------------------------------


def auth(msg: str) -> list[dict[str, object]]:
    return [{"timestamp": 1, "service": "auth_service", "message": msg}]


def test_spooled_when_the_owner_is_down_and_replayed_once_when_it_is_back(tmp_path: Path) -> None:
    with Cluster(tmp_path) as c:
        status, body = c.post(auth("before"))
        assert status == 200
        assert c.terminate("storage-1") == 0
        status, body = c.post(auth("spooled-1") + [{"timestamp": 1, "service": "event_creator", "message": "live"}])
        assert status == 202, body
        assert body["spooled_records"] == 1 and body["stored_records"] == 1
        assert body["spooled"] == [{"partition": 3, "count": 1}]
        status, body = c.post(auth("spooled-2"))
        assert status == 202
        c.start("storage-1")
        wait_until(lambda: [r["message"] for r in c.stored_records(3)] == ["before", "spooled-1", "spooled-2"],
                   timeout=15, what="the WAL to be replayed")
        status, _ = c.post(auth("after"))
        assert status == 200
        assert [r["message"] for r in c.stored_records(3)] == ["before", "spooled-1", "spooled-2", "after"]


def test_wal_survives_a_gateway_sigkill(tmp_path: Path) -> None:
    with Cluster(tmp_path) as c:
        c.kill("storage-1")
        c.env_extra["ZLOG_GATEWAY_REQUEST_TIMEOUT_MS"] = "500"
        wait_until(lambda: c.get("/ready")[0] == 503, timeout=5, what="the worker to be declared dead")
        for i in range(5):
            status, _ = c.post(auth(f"spooled-{i}"))
            assert status == 202
        c.kill("gateway-0")
        c.start("storage-1", wait=False)
        c.start("gateway-0")
        wait_until(lambda: len(c.stored_records(3)) == 5, timeout=15, what="replay after the gateway restart")
        assert [r["message"] for r in c.stored_records(3)] == [f"spooled-{i}" for i in range(5)]


def test_a_hung_worker_is_spooled_after_the_deadline_and_stored_once(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.env_extra["ZLOG_GATEWAY_REQUEST_TIMEOUT_MS"] = "700"
    with c:
        c.signal("storage-1", signal.SIGSTOP)
        status, body = c.post(auth("while-stopped"))
        assert status == 202, body  # missed the deadline: spooled, not stalled
        c.signal("storage-1", signal.SIGCONT)
        # The worker may still store the original send, and the replay too: only one copy survives.
        wait_until(lambda: [r["message"] for r in c.stored_records(3)] == ["while-stopped"], timeout=15,
                   what="the record to be stored")
        # The worker may have been declared dead while stopped: wait until it owns its partitions again.
        c.wait_ready()
        status, _ = c.post(auth("next"))
        assert status == 200
        assert [r["message"] for r in c.stored_records(3)] == ["while-stopped", "next"]


def test_wal_full_gives_503(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.env_extra["ZLOG_GATEWAY_WAL_MAX_BYTES"] = "2000"
    with c:
        c.terminate("storage-1")
        statuses = [c.post(auth("x" * 200))[0] for _ in range(20)]
        assert statuses[0] == 202
        assert statuses[-1] == 503
        status, body = c.post(auth("x" * 200))
        assert (status, body["error"]) == (503, "WAL_FULL")
        assert body["failed"][0]["partition"] == 3
        assert os.path.isdir(c.data_dir / "wal" / "gateway-0")
