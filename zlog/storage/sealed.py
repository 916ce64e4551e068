"""Sealed segments: ``<base>.jsonl.zst``, a closed segment's lines as independent zstd frames
followed by the segment's own index, so ``zstdcat <base>.jsonl.zst | jq`` reads it as is.

Layout: block frames (each a zstd frame with content size and content checksum, holding whole
lines), then a skippable frame (magic 0x184D2A5E) with the index, then a 24-byte skippable frame
(magic 0x184D2A5F) whose payload is the index frame's position and ``ZLOGSEAL``. The index:
a header, one entry per block ``(first_rel, lines, raw_pos, file_pos, comp_len, raw_len, min_ts,
max_ts, xxh3 of the frame)``, the block token filter (``zlog.storage.tokens``) and the xxh3 of
all of that. ``raw_pos`` is the block's position in the plain segment: offsets, positions and
the offset/time indexes a ``SealedSegment`` exposes are those of the plain form, so the scan code
reads both forms alike and every read it makes (block boundary to block boundary) decompresses
whole blocks only.

Invariants:
- Blocks are cut as the offset index cuts them: a block starting at ``s`` ends after the first
  line whose newline sits at or after ``s + block_bytes - 1``; sealing is a pure function of the
  plain segment's bytes (and the level), so two replicas seal to identical files.
- Every block read checks its frame's xxh3 before decompressing (zstd checks the content
  checksum after); a mismatch raises ``CorruptBlock`` naming the file and the block, and other
  blocks stay readable.
- The file is written whole (``seal`` in sealer.py: temp file, fsync, rename) and never modified.
"""

from __future__ import annotations

import mmap
import os
import struct
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import xxhash
import zstandard

from zlog.storage import tokens
from zlog.storage.errors import StorageError
from zlog.storage.index import OffsetIndex, TimeIndex
from zlog.storage.segment import pread_all, stem, write_all

SEALED = ".jsonl.zst"
SEALED_TMP = SEALED + ".tmp"
_SKIP = struct.Struct("<II")
_INDEX_MAGIC, _FOOTER_MAGIC = 0x184D2A5E, 0x184D2A5F
_FOOTER = struct.Struct("<IIQ8s")
_HEAD = struct.Struct("<8sHHIQQQqqI")
BLOCK = struct.Struct("<IIQQIIqqQ")
_HASH = struct.Struct("<Q")
_ID = b"ZLOGIDX1"
_TAIL = b"ZLOGSEAL"
_CACHE_BLOCKS = 4

Block = tuple[int, int, int, int, int, int, int, int, int]


class CorruptBlock(StorageError):
    """A sealed block (or index) fails its checksum; the message names the file and the block."""

    code = "CORRUPT_DATA"


@dataclass(frozen=True, slots=True)
class Meta:
    base: int
    count: int
    raw_size: int
    created_ms: int
    max_ts: int
    filter_m: int
    blocks: list[Block]
    filt_pos: int  # where the token filter starts in the file (read through mmap when searched)
    file_size: int
    index_bytes: int


def _cut(chunks: Iterable[bytes], block_bytes: int) -> Iterator[bytes]:
    """Whole-line chunks of a plain segment re-cut into blocks (the offset index's rule)."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        start = 0
        while True:
            j = buf.find(b"\n", start + block_bytes - 1)
            if j < 0:
                break
            yield buf[start:j + 1]
            start = j + 1
        buf = buf[start:]
    if buf:
        yield buf


def write(fd: int, base: int, created_ms: int, chunks: Iterable[bytes], block_bytes: int,
          level: int, pace: Callable[[], None] | None = None) -> Meta:
    """Write the sealed form of the plain segment whose bytes ``chunks`` yields (whole lines)."""
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    blocks: list[Block] = []
    keysets: list[set[int]] = []
    rel = raw = pos = 0
    max_ts = -1
    cache: dict[tuple[str, bool], frozenset[int]] = {}
    for data in _cut(chunks, block_bytes):
        frame = cctx.compress(data)
        lines = data.split(b"\n")
        lines.pop()
        keys, lo, hi = tokens.block_keys(lines, cache)
        keysets.append(keys)
        blocks.append((rel, len(lines), raw, pos, len(frame), len(data), lo, hi,
                       xxhash.xxh3_64_intdigest(frame)))
        write_all(fd, [frame])
        rel, raw, pos, max_ts = rel + len(lines), raw + len(data), pos + len(frame), max(max_ts, hi)
        if pace is not None:
            pace()
    m = tokens.filter_size([len(k) for k in keysets])
    filt = tokens.build_filter(keysets, m)
    body = b"".join([_HEAD.pack(_ID, 1, 0, len(blocks), base, rel, raw, created_ms, max_ts, m),
                     *(BLOCK.pack(*b) for b in blocks), filt])
    body += _HASH.pack(xxhash.xxh3_64_intdigest(body))
    index_pos = pos
    write_all(fd, [_SKIP.pack(_INDEX_MAGIC, len(body)), body,
                   _FOOTER.pack(_FOOTER_MAGIC, 16, index_pos, _TAIL)])
    size = index_pos + _SKIP.size + len(body) + _FOOTER.size
    filt_pos = index_pos + _SKIP.size + _HEAD.size + len(blocks) * BLOCK.size
    return Meta(base, rel, raw, created_ms, max_ts, m, blocks, filt_pos, size, size - index_pos)


def read_meta(fd: int, name: str) -> Meta:
    """The index of an open sealed file; ``CorruptBlock`` when the footer or index is damaged."""
    size = os.fstat(fd).st_size
    if size < _FOOTER.size:
        raise CorruptBlock(f"{name}: too short for a sealed segment ({size} bytes)")
    magic, n, index_pos, tail = _FOOTER.unpack(pread_all(fd, _FOOTER.size, size - _FOOTER.size))
    if magic != _FOOTER_MAGIC or n != 16 or tail != _TAIL or index_pos + _SKIP.size > size - _FOOTER.size:
        raise CorruptBlock(f"{name}: no sealed-segment footer")
    magic, length = _SKIP.unpack(pread_all(fd, _SKIP.size, index_pos))
    body = pread_all(fd, length, index_pos + _SKIP.size)
    if (magic != _INDEX_MAGIC or index_pos + _SKIP.size + length + _FOOTER.size != size
            or length < _HEAD.size + _HASH.size
            or _HASH.unpack(body[-_HASH.size:])[0] != xxhash.xxh3_64_intdigest(body[:-_HASH.size])):
        raise CorruptBlock(f"{name}: index fails its checksum")
    ident, _, _, nblocks, base, count, raw, created, max_ts, m = _HEAD.unpack_from(body)
    end = _HEAD.size + nblocks * BLOCK.size
    if ident != _ID or len(body) != end + m * ((nblocks + 7) // 8) + _HASH.size:
        raise CorruptBlock(f"{name}: index has the wrong shape")
    blocks: list[Block] = [BLOCK.unpack_from(body, _HEAD.size + i * BLOCK.size) for i in range(nblocks)]
    return Meta(base, count, raw, created, max_ts, m, blocks, index_pos + _SKIP.size + end, size, size - index_pos)


class SealedSegment:
    """A sealed segment as the scan code sees segments: plain-form offsets, positions, indexes."""

    active = False

    def __init__(self, directory: Path, meta: Meta, stats: dict[str, float] | None = None) -> None:
        self.directory = directory
        self.meta = meta
        self.base, self.count, self.size = meta.base, meta.count, meta.raw_size
        self.created_ms, self.max_ts = meta.created_ms, meta.max_ts
        self.stats = stats if stats is not None else {}
        bl = meta.blocks
        self.index = OffsetIndex([(b[0], b[2], 0) for b in bl[1:]])
        self._starts = [b[2] for b in bl]
        self._rels = [b[0] for b in bl]
        tentries: list[tuple[int, int]] = []
        for b in bl:
            if b[7] > (tentries[-1][0] if tentries else -1):
                tentries.append((b[7], b[0] + b[1] - 1))
        self.tindex = TimeIndex(tentries)
        self.fd: int | None = None
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cands: tuple[object, int] | None = None
        self._dctx = zstandard.ZstdDecompressor()
        self._map: mmap.mmap | None = None  # the token filter is read in place, not kept in memory

    def path(self, suffix: str = SEALED) -> Path:
        return self.directory / (stem(self.base) + suffix)

    @property
    def next_offset(self) -> int:
        return self.base + self.count

    @property
    def stored_bytes(self) -> int:
        return self.meta.file_size

    def data_fd(self) -> int:
        if self.fd is None:
            self.fd = os.open(self.path(), os.O_RDONLY | os.O_CLOEXEC)
        return self.fd

    def block(self, i: int) -> bytes:
        """Block ``i``'s lines, checked; ``CorruptBlock`` when its bytes fail a checksum."""
        data = self._cache.get(i)
        if data is not None:
            self._cache.move_to_end(i)
            return data
        _, lines, _, fpos, clen, rlen, _, _, h = self.meta.blocks[i]
        frame = pread_all(self.data_fd(), clen, fpos)
        if xxhash.xxh3_64_intdigest(frame) != h:
            self.stats["checksum_failures"] = self.stats.get("checksum_failures", 0) + 1
            raise CorruptBlock(f"{self.path()}: block {i} (offsets {self.base + self.meta.blocks[i][0]}.."
                               f"{self.base + self.meta.blocks[i][0] + lines - 1}) fails its checksum")
        try:
            data = self._dctx.decompress(frame, max_output_size=rlen)
        except zstandard.ZstdError as exc:
            raise CorruptBlock(f"{self.path()}: block {i} does not decompress: {exc}") from None
        self.stats["blocks_read"] = self.stats.get("blocks_read", 0) + 1
        self._cache[i] = data
        if len(self._cache) > _CACHE_BLOCKS:
            self._cache.popitem(last=False)
        return data

    def pread(self, pos: int, end: int) -> bytes:
        """Plain-form bytes ``[pos, min(end, size))``; ``pos`` is a block boundary."""
        end = min(end, self.size)
        if end <= pos:
            return b""
        i = bisect_right(self._starts, pos) - 1
        first = self._starts[i]
        parts = []
        while i < len(self._starts) and self._starts[i] < end:
            parts.append(self.block(i))
            i += 1
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return data[pos - first:end - first]

    # -- skipping blocks -------------------------------------------------------------------

    def _candidates(self, needles: tokens.Needles | None, since: int | None, until: int | None) -> int:
        key = (needles, since, until)
        if self._cands is not None and self._cands[0] == key:
            return self._cands[1]
        bl = self.meta.blocks
        n = len(bl)
        if needles:
            if self._map is None:
                self._map = mmap.mmap(self.data_fd(), 0, access=mmap.ACCESS_READ)
            size = self.meta.filter_m * ((n + 7) // 8)
            with memoryview(self._map) as view:
                filt = view[self.meta.filt_pos:self.meta.filt_pos + size]
                try:
                    cands = tokens.candidates(filt, self.meta.filter_m, n, needles.keys())
                finally:
                    filt.release()
        else:
            cands = (1 << n) - 1
        for i, b in enumerate(bl):
            if (since is not None and b[7] < since) or (until is not None and b[6] >= 0 and b[6] > until):
                cands &= ~(1 << i)
        self._cands = (key, cands)
        return cands

    def skip(self, rel: int, backward: bool, needles: tokens.Needles | None, since: int | None,
             until: int | None) -> int:
        """The nearest relative offset from ``rel`` on (backward: at or before) inside a block that
        may match; ``count`` (backward: -1) when no block that way may."""
        cands = self._candidates(needles, since, until)
        i = bisect_right(self._rels, rel) - 1
        if (cands >> i) & 1:
            return rel
        n = len(self._rels)
        if backward:
            below = cands & ((1 << i) - 1)
            skipped = i - below.bit_length() + 1 if below else i + 1
            j = below.bit_length() - 1
            out = self._rels[j] + self.meta.blocks[j][1] - 1 if below else -1
        else:
            above = cands >> (i + 1)
            j = i + 1 + ((above & -above).bit_length() - 1) if above else n
            skipped = j - i
            out = self._rels[j] if above else self.count
        self.stats["blocks_skipped"] = self.stats.get("blocks_skipped", 0) + skipped
        return out

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self._cache.clear()

    def delete(self) -> None:
        self.close()
        for suffix in (SEALED, ".batches"):
            try:
                self.path(suffix).unlink()
            except FileNotFoundError:
                pass


def open_sealed(directory: Path, base: int, stats: dict[str, float] | None = None) -> SealedSegment:
    path = directory / (stem(base) + SEALED)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        meta = read_meta(fd, str(path))
    except BaseException:
        os.close(fd)
        raise
    if meta.base != base:
        os.close(fd)
        raise CorruptBlock(f"{path}: index says base {meta.base}")
    seg = SealedSegment(directory, meta, stats)
    seg.fd = fd
    return seg


def iter_blocks(path: Path) -> Iterator[bytes]:
    """Every block of a sealed file, checked, in order (tools that read segment files directly)."""
    directory, name = path.parent, path.name
    seg = open_sealed(directory, int(name[:20]))
    try:
        for i in range(len(seg.meta.blocks)):
            yield seg.block(i)
    finally:
        seg.close()
