"""Recovery on open: torn tails, corrupt blocks, lost or damaged indexes, foreign files."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from storage_helpers import FakeClock, files, rec, tiny

from zlog.config import StorageConfig
from zlog.storage import PartitionLog, ProducerBatch

SEG = 100_000  # one segment: the cuts below all land in the active one


def build(d: Path, cfg: StorageConfig, batches: list[list[bytes]], clock: FakeClock) -> None:
    with PartitionLog.open(d, cfg, clock=clock) as log:
        for k, lines in enumerate(batches):
            log.append(lines, 1_000_000 + 10 * k, ProducerBatch(b"p", k))
            log.commit()


def batches_of(n: int, size: int = 2) -> list[list[bytes]]:
    return [[rec(i * size + j) for j in range(size)] for i in range(n)]


def surviving(batches: list[list[bytes]], data_len: int) -> int:
    """How many whole batches fit in the first data_len bytes."""
    pos = k = 0
    for lines in batches:
        pos += sum(len(x) + 1 for x in lines)
        if pos > data_len:
            break
        k += 1
    return k


def check_recovered(d: Path, cfg: StorageConfig, batches: list[list[bytes]], k: int, clock: FakeClock,
                    ref_root: Path) -> None:
    """The log in d holds exactly batches[:k], its files equal a log built from them, it appends."""
    ref = ref_root / f"ref{k}"
    if not ref.exists():
        build(ref, cfg, batches[:k], clock)
    want = [x for b in batches[:k] for x in b]
    with PartitionLog.open(d, cfg, clock=clock) as log:
        assert log.read(0, 10**6, 10**9) == list(enumerate(want))
        assert log.next_offset == len(want)
    assert files(d) == files(ref)
    with PartitionLog.open(d, cfg, clock=clock) as log:
        assert log.append(batches[k - 1] if k else [b"{}"], 1, ProducerBatch(b"p", max(k - 1, 0))).duplicate == (k > 0)
        r = log.append([b'{"after":1}'], 2, ProducerBatch(b"p", k))
        assert (r.base_offset, r.duplicate) == (len(want), False)
        log.commit()
        assert log.read(len(want), 5, 10**6) == [(len(want), b'{"after":1}')]


@pytest.mark.parametrize("which", [".jsonl", ".batches"])
def test_cut_tail_at_every_byte(tmp_path: Path, clock: FakeClock, which: str) -> None:
    cfg = tiny(segment_bytes=SEG, index_interval_bytes=64)
    batches = batches_of(12)
    orig = tmp_path / "orig"
    build(orig, cfg, batches, clock)
    name = f"{0:020d}{which}"
    full = (orig / name).read_bytes()
    tail = sum(len(x) + 1 for b in batches[-3:] for x in b) if which == ".jsonl" else 3 * 74
    for cut in range(len(full) - tail, len(full) + 1):
        d = tmp_path / "work"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(orig, d)
        os.truncate(d / name, cut)
        k = surviving(batches, cut) if which == ".jsonl" else (cut - 74) // 74
        check_recovered(d, cfg, batches, k, clock, tmp_path)


def test_cut_tail_without_batch_file_keeps_whole_lines(tmp_path: Path, clock: FakeClock) -> None:
    cfg = tiny(segment_bytes=SEG, index_interval_bytes=64)
    lines = [rec(i) for i in range(20)]
    orig = tmp_path / "orig"
    orig.mkdir()
    (orig / f"{0:020d}.jsonl").write_bytes(b"".join(x + b"\n" for x in lines))
    full = (orig / f"{0:020d}.jsonl").read_bytes()
    for cut in range(len(full) - 250, len(full) + 1):
        d = tmp_path / "work"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(orig, d)
        os.truncate(d / f"{0:020d}.jsonl", cut)
        whole = full[:cut].count(b"\n")
        with PartitionLog.open(d, cfg, clock=clock) as log:
            assert log.read(0, 100, 10**9) == list(enumerate(lines[:whole]))
            log.append([b"{}"], 1)
        with PartitionLog.open(d, cfg, clock=clock) as log:
            assert log.next_offset == whole + 1
            assert log.stats["recovery_truncated_bytes"] == 0


@pytest.mark.parametrize("with_batches", [True, False])
def test_flipped_byte_is_detected_and_cut(tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture,
                                          with_batches: bool) -> None:
    cfg = tiny(segment_bytes=SEG, index_interval_bytes=256)
    batches = batches_of(30)
    build(tmp_path, cfg, batches, clock)
    if not with_batches:
        (tmp_path / f"{0:020d}.batches").unlink()
    data = tmp_path / f"{0:020d}.jsonl"
    raw = bytearray(data.read_bytes())
    where = len(raw) // 2
    raw[where] ^= 0x20
    data.write_bytes(bytes(raw))
    with caplog.at_level(logging.ERROR, logger="zlog.storage"), PartitionLog.open(tmp_path, cfg, clock=clock) as log:
        assert log.stats["checksum_failures"] == 1
        assert any(r.levelno == logging.ERROR for r in caplog.records)
        got = log.read(0, 10**6, 10**9)
        assert len(got) > 0 and log.size_bytes <= where
        assert got == list(enumerate(x for b in batches for x in b))[:len(got)]
        assert log.stats["recovery_truncated_bytes"] == len(raw) - log.size_bytes
        if with_batches:
            assert len(got) % 2 == 0  # whole batches only
        fill_after = log.append([b"{}"], 1)
        log.commit()
        assert fill_after.base_offset == len(got)


def test_indexes_deleted_or_damaged_are_rebuilt_identical(tmp_path: Path, clock: FakeClock) -> None:
    cfg = tiny(segment_bytes=2000, index_interval_bytes=150)
    orig = tmp_path / "orig"
    build(orig, cfg, batches_of(60, 3), clock)
    want = files(orig)
    segs = sorted(p.stem for p in orig.glob("*.jsonl"))
    assert len(segs) >= 4
    damages = [
        lambda p: p.unlink(),
        lambda p: os.truncate(p, 0),
        lambda p: os.truncate(p, max(0, p.stat().st_size - 7)),  # torn entry
        lambda p: os.truncate(p, max(0, p.stat().st_size - 20 if p.suffix == ".index" else p.stat().st_size - 12)),
        lambda p: p.write_bytes(b"\x01" * 40),
    ]
    for damage in damages:
        for stem in (segs[0], segs[len(segs) // 2], segs[-1]):
            for suffix in (".index", ".timeindex"):
                d = tmp_path / "work"
                shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(orig, d)
                damage(d / (stem + suffix))
                with PartitionLog.open(d, cfg, clock=clock) as log:
                    assert log.next_offset == 180
                assert files(d) == want, (stem, suffix)


def test_unknown_files_are_left_alone(tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tiny()
    build(tmp_path, cfg, batches_of(40), clock)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / f"{0:020d}.jsonl.bak").write_text("{}\n")
    (tmp_path / "subdir").mkdir()
    (tmp_path / f"{999:020d}.index").write_bytes(b"")  # an index without data: leftover of a delete
    (tmp_path / f"{999:020d}.batches.tmp").write_bytes(b"x")  # an unfinished roll
    with caplog.at_level(logging.WARNING, logger="zlog.storage"), PartitionLog.open(tmp_path, cfg, clock=clock) as log:
        assert log.next_offset == 80
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / f"{0:020d}.jsonl.bak").exists() and (tmp_path / "subdir").is_dir()
    assert not (tmp_path / f"{999:020d}.index").exists()
    assert not (tmp_path / f"{999:020d}.batches.tmp").exists()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "notes.txt" in warned and "subdir" in warned


def test_reopen_after_clean_close_rewrites_nothing(tmp_path: Path, clock: FakeClock) -> None:
    cfg = tiny(index_interval_bytes=100)
    build(tmp_path, cfg, batches_of(50), clock)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with PartitionLog.open(tmp_path, cfg, clock=clock) as log:
        assert log.next_offset == 100
        assert log.stats["recovery_truncated_bytes"] == 0 and log.stats["checksum_failures"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
