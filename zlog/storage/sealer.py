"""Turning a closed plain segment into its sealed form, crash-safely, and back on open.

Steps of ``seal`` (each a point a test can stop the process at, ``ZLOG_SEAL_CRASH_AT``):
``tmp_written`` (``<base>.jsonl.zst.tmp`` holds the whole sealed form), ``tmp_synced``,
``renamed`` (now ``<base>.jsonl.zst``), ``dir_synced``. Then ``swap_in`` (by the partition's
owner, which may be reading the plain files) removes ``.jsonl`` (``plain_data_removed``), then
``.index`` and ``.timeindex`` (``plain_removed``), and fsyncs the directory.

Recovery (``resolve``, on open): a ``.tmp`` is discarded; a sealed file whose footer, index and
shape check out (same base, and count equal to the next segment's base minus its own) wins, and
the plain files left beside it are removed (the seal is finished); a sealed file that fails beside
a plain segment is removed (the plain form is kept). So exactly one form survives every stop.
A sealed file alone whose index is damaged is rebuilt from its block frames (``rebuild_index``).

Invariants:
- The ``.batches`` file (producer state, batch list) is never touched: exactly-once state is the
  same for both forms.
- The plain segment is only read: a seal that dies leaves it as it was.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from zlog.storage import batches as bf
from zlog.storage.errors import StorageError
from zlog.storage.sealed import SEALED, SEALED_TMP, CorruptBlock, Meta, SealedSegment, open_sealed, write
from zlog.storage.segment import (
    BATCHES,
    DATA,
    INDEX,
    TIMEINDEX,
    Segment,
    fsync_dir,
    pread_all,
    stem,
    write_all,
)

log = logging.getLogger("zlog.storage")
CRASH_ENV = "ZLOG_SEAL_CRASH_AT"
STEPS = ("tmp_written", "tmp_synced", "renamed", "dir_synced", "plain_data_removed", "plain_removed")
_CHUNK = 1 << 20


def _step(name: str) -> None:
    """A test hook: SIGKILL this process when ``ZLOG_SEAL_CRASH_AT`` names this step."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _created_ms(directory: Path, base: int) -> int:
    try:
        with open(directory / (stem(base) + BATCHES), "rb") as f:
            entries, _ = bf.decode(f.read(bf.ENTRY_SIZE))
    except FileNotFoundError:
        return 0
    return entries[0].max_ts if entries and entries[0].kind == bf.HEADER else 0


def _plain_chunks(fd: int, size: int) -> Iterator[bytes]:
    pos = 0
    while pos < size:
        data = pread_all(fd, min(_CHUNK, size - pos), pos)
        if not data:
            raise StorageError(f"plain segment shorter than {size} bytes")
        yield data
        pos += len(data)


def pacer(share: float) -> Callable[[], None]:
    """Sleeps so that this process uses at most ``share`` of one CPU since the pacer was made."""
    c0, t0 = time.process_time(), time.monotonic()

    def pace() -> None:
        if share >= 1:
            return
        cpu, wall = time.process_time() - c0, time.monotonic() - t0
        owed = cpu / share - wall
        if owed > 0:
            time.sleep(min(owed, 1.0))

    return pace


def seal(directory: Path, base: int, size: int, block_bytes: int, level: int,
         pace: Callable[[], None] | None = None) -> Meta:
    """Write ``<base>.jsonl.zst`` from the first ``size`` bytes of the plain ``<base>.jsonl``."""
    tmp = directory / (stem(base) + SEALED_TMP)
    src = os.open(directory / (stem(base) + DATA), os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            meta = write(fd, base, _created_ms(directory, base), _plain_chunks(src, size), block_bytes,
                         level, pace)
            _step("tmp_written")
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(src)
    _step("tmp_synced")
    os.replace(tmp, directory / (stem(base) + SEALED))
    _step("renamed")
    fsync_dir(directory)
    _step("dir_synced")
    return meta


def _remove_plain(directory: Path, base: int) -> None:
    (directory / (stem(base) + DATA)).unlink(missing_ok=True)
    _step("plain_data_removed")
    for suffix in (INDEX, TIMEINDEX):
        (directory / (stem(base) + suffix)).unlink(missing_ok=True)
    _step("plain_removed")
    fsync_dir(directory)


def swap_in(old: Segment, stats: dict[str, float]) -> SealedSegment:
    """The sealed form of closed segment ``old`` (its file already renamed into place), checked
    against the plain one; the plain files are then removed. ``StorageError`` leaves ``old``."""
    new = open_sealed(old.directory, old.base, stats)
    if (new.count, new.size) != (old.count, old.size):
        new.close()
        (old.directory / (stem(old.base) + SEALED)).unlink(missing_ok=True)
        raise StorageError(f"{new.path()}: holds {new.count} records / {new.size} bytes, the plain "
                           f"segment {old.count} / {old.size}; sealed form removed")
    old.close()
    _remove_plain(old.directory, old.base)
    return new


def resolve(directory: Path, base: int, next_base: int, has_plain: bool,
            stats: dict[str, float]) -> SealedSegment | None:
    """On open: the sealed segment ``base`` (plain leftovers removed), or None when the plain
    form stays (a sealed file that fails beside it is removed). ``StorageError`` when the only
    form is a sealed file that cannot be read."""
    path = directory / (stem(base) + SEALED)
    try:
        seg = open_sealed(directory, base, stats)
        if seg.count != next_base - base and next_base >= 0:
            seg.close()
            raise CorruptBlock(f"{path}: holds {seg.count} records, the next segment starts at {next_base}")
    except (CorruptBlock, OSError) as exc:
        if not has_plain and rebuild_index(directory, base):
            return resolve(directory, base, next_base, has_plain, stats)
        if not has_plain:
            raise StorageError(f"{path}: cannot open sealed segment: {exc}") from exc
        log.warning("%s: unfinished or damaged sealed form removed, plain segment kept (%s)", path, exc)
        path.unlink()
        fsync_dir(directory)
        return None
    if has_plain:
        log.info("%s: finishing an interrupted seal (removing the plain form)", path)
        _remove_plain(directory, base)
    else:
        for suffix in (INDEX, TIMEINDEX):
            (directory / (stem(base) + suffix)).unlink(missing_ok=True)
    return seg


def rebuild_index(directory: Path, base: int) -> bool:
    """Rewrite a sealed file whose index or footer is damaged from its block frames (each checks
    itself), crash-safely as a seal does. False when a block frame is damaged too."""
    import zstandard

    path = directory / (stem(base) + SEALED)
    try:
        data = path.read_bytes()
    except OSError:
        return False
    chunks: list[bytes] = []
    pos = 0
    while pos + 4 <= len(data) and data[pos:pos + 4] == b"\x28\xb5\x2f\xfd":  # a zstd frame, not skippable
        dobj = zstandard.ZstdDecompressor().decompressobj()
        try:
            chunks.append(dobj.decompress(data[pos:]))
        except zstandard.ZstdError:
            return False
        pos = len(data) - len(dobj.unused_data)
    raw = b"".join(chunks)
    if not raw.endswith(b"\n"):
        return False
    log.error("%s: index damaged; rebuilt from its %d blocks", path, len(chunks))
    tmp = directory / (stem(base) + SEALED_TMP)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        block = max(map(len, chunks))  # re-cut at the old size: whole blocks of whole lines
        write(fd, base, _created_ms(directory, base), [raw], block, 9)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(directory)
    return True


def unseal(directory: Path, base: int) -> None:
    """Turn sealed segment ``base`` back into a plain ``.jsonl`` (the newest segment must be plain:
    a log cut back into a sealed segment, as a replica's truncation does, continues from it).
    ``<base>.jsonl.tmp``, fsync, rename, fsync the directory, remove the sealed file; a stop
    before the rename leaves the sealed form, after it the plain one wins (``PartitionLog.open``)."""
    from zlog.storage.sealed import iter_blocks

    path = directory / (stem(base) + SEALED)
    tmp = directory / (stem(base) + DATA + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        for block in iter_blocks(path):
            write_all(fd, [block])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / (stem(base) + DATA))
    fsync_dir(directory)
    path.unlink()
    fsync_dir(directory)
    log.warning("%s: unsealed (the newest segment is always plain)", path)


def _die_with_parent() -> None:
    """A seal outliving its worker could race the restarted worker's seal of the same segment
    on the same temp file: ask Linux to kill this process when its parent dies."""
    import ctypes
    import ctypes.util

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """``main DIR BASE SIZE BLOCK_BYTES LEVEL CPU_SHARE`` (the worker runs it with ``-c``): seal one
    segment at low priority; prints ``blocks raw stored cpu_s`` on success."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    directory, base, size, block_bytes, level = Path(args[0]), *map(int, args[1:5])
    share = float(args[5])
    try:
        os.nice(19 - os.nice(0))  # the worker set it already; run by hand, be as nice anyway
    except OSError:
        pass
    meta = seal(directory, base, size, block_bytes, level, pacer(share))
    print(len(meta.blocks), meta.raw_size, meta.file_size, time.process_time(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
