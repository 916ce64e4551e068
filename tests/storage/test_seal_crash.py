"""Sealing survives SIGKILL at every step, and damage to a sealed block is named, not hidden."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from storage_helpers import FakeClock, fill, tiny

from zlog.ops.cli import main as cli_main
from zlog.storage import PartitionLog
from zlog.storage.sealed import SEALED, CorruptBlock, SealedSegment
from zlog.storage.sealer import CRASH_ENV, STEPS

CHILD = """
import sys
from pathlib import Path
from zlog.config import FsyncPolicy, StorageConfig
from zlog.storage import PartitionLog
cfg = StorageConfig(segment_bytes=1500, index_interval_bytes=200, fsync=FsyncPolicy("never"))
with PartitionLog.open(Path(sys.argv[1]), cfg) as log:
    log.seal_closed(block_bytes=300, level=3)
"""


def _forms(d: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in d.iterdir():
        stem, _, suffix = p.name.partition(".")
        out.setdefault(stem, set()).add(suffix)
    return out


@pytest.fixture
def filled(tmp_path: Path, clock: FakeClock) -> tuple[Path, list[bytes]]:
    d = tmp_path / "orig"
    with PartitionLog.open(d, tiny(), clock=clock) as log:
        lines = fill(log, 200, batch=4)
    return d, lines


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_every_step_leaves_one_whole_form(filled: tuple[Path, list[bytes]], tmp_path: Path,
                                                     clock: FakeClock, step: str) -> None:
    src, lines = filled
    d = tmp_path / step
    shutil.copytree(src, d)
    env = dict(os.environ, **{CRASH_ENV: step})
    r = subprocess.run([sys.executable, "-c", CHILD, str(d)], env=env, capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()
    with PartitionLog.open(d, tiny(), clock=clock) as log:
        assert [line for _, line in log.read(0, 10_000, 1 << 30)] == lines
        assert log.scan(backward=False, limit=10_000).records == list(enumerate(lines))
        kinds = [isinstance(s, SealedSegment) for s in log.segments]
        assert any(kinds) == (step not in ("tmp_written", "tmp_synced"))
        assert log.seal_closed(block_bytes=300, level=3) >= 0  # finishing afterwards works
    for stem, suffixes in _forms(d).items():
        assert not {s for s in suffixes if s.endswith("tmp")}, (stem, suffixes)
        assert ("jsonl" in suffixes) != ("jsonl.zst" in suffixes), (stem, suffixes)
        if "jsonl.zst" in suffixes:
            assert suffixes - {"rollup"} == {"jsonl.zst", "batches"}


def test_flipped_byte_is_named_by_reads_and_verify(filled: tuple[Path, list[bytes]], clock: FakeClock,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    d, lines = filled
    with PartitionLog.open(d, tiny(), clock=clock) as log:
        log.seal_closed(block_bytes=300, level=3)
        seg = log.segments[1]
        assert isinstance(seg, SealedSegment) and len(seg.meta.blocks) >= 3
        _, n, _, fpos, clen, *_ = seg.meta.blocks[1]
        first = seg.base + seg.meta.blocks[1][0]
    assert cli_main(["verify", str(d)]) == 0
    path = d / f"{seg.base:020d}{SEALED}"
    raw = bytearray(path.read_bytes())
    raw[fpos + clen // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    capsys.readouterr()
    assert cli_main(["verify", str(d)]) == 1
    out = capsys.readouterr().out
    assert path.name in out and "block 1" in out
    with PartitionLog.open(d, tiny(), clock=clock) as log:
        with pytest.raises(CorruptBlock, match=rf"{path.name}: block 1 "):
            log.read(first, 1, 1 << 20)
        with pytest.raises(CorruptBlock):
            log.scan(backward=False, limit=10_000)
        # everything outside the damaged block still reads
        good = [(o, line) for o, line in enumerate(lines) if not first <= o < first + n]
        got = [r for o in range(len(lines)) if not first <= o < first + n for r in log.read(o, 1, 1 << 20)]
        assert got == good


def test_compact_seals_offline_and_retention_deletes_sealed_segments(
        filled: tuple[Path, list[bytes]], clock: FakeClock, capsys: pytest.CaptureFixture[str]) -> None:
    d, lines = filled
    assert cli_main(["compact", str(d)]) == 0
    assert "sealed" in capsys.readouterr().out
    names = sorted(p.name for p in d.iterdir())
    assert sum(n.endswith(".jsonl") for n in names) == 1 and sum(n.endswith(SEALED) for n in names) >= 5
    with PartitionLog.open(d, tiny(retention_bytes=1), clock=clock) as log:
        assert [line for _, line in log.read(0, 10_000, 1 << 30)] == lines
        first = log.segments[0]
        assert isinstance(first, SealedSegment) and log.stored_bytes < log.size_bytes
        deleted = log.enforce_retention()
        assert deleted and deleted[0] == first.base and log.segment_count == 1
        assert log.lowest_offset == log.active.base
    assert not [p for p in d.iterdir() if p.name.endswith(SEALED) or p.name.startswith(f"{first.base:020d}")]


def test_damaged_index_is_rebuilt_from_the_blocks(filled: tuple[Path, list[bytes]], clock: FakeClock) -> None:
    d, lines = filled
    with PartitionLog.open(d, tiny(), clock=clock) as log:
        log.seal_closed(block_bytes=300, level=3)
        seg = log.segments[2]
        assert isinstance(seg, SealedSegment)
        filt_pos = seg.meta.filt_pos
    path = d / f"{seg.base:020d}{SEALED}"
    raw = bytearray(path.read_bytes())
    raw[filt_pos + 3] ^= 0x01  # inside the token filter: the index checksum fails
    path.write_bytes(bytes(raw))
    assert cli_main(["verify", str(path)]) == 1
    with PartitionLog.open(d, tiny(), clock=clock) as log:
        assert [line for _, line in log.read(0, 10_000, 1 << 30)] == lines
        assert isinstance(log.segments[2], SealedSegment)
    assert cli_main(["verify", str(d)]) == 0
