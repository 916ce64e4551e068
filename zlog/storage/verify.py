"""Checking a partition's files end to end without changing them (``zlog verify``).

A sealed segment: the footer, the index's xxh3, then every block: its frame's xxh3, a zstd
decompression (which checks the frame's content checksum), its length and line count, and that
blocks tile the segment (offsets, plain positions and file positions continue). A plain
segment: every offset-index block's xxh3 against the data.

Invariants:
- Read-only: safe beside a running worker (a file removed meanwhile by a seal or by retention is
  reported as gone, not as damage).
- Every problem names the file and, for data, the block number and its offsets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xxhash
import zstandard

from zlog.storage.index import block_hash, decode_index
from zlog.storage.sealed import SEALED, CorruptBlock, read_meta
from zlog.storage.segment import DATA, INDEX, pread_all


@dataclass(slots=True)
class Checked:
    path: Path
    blocks: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)


def verify_sealed(path: Path) -> Checked:
    out = Checked(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return out
    try:
        try:
            meta = read_meta(fd, str(path))
        except CorruptBlock as exc:
            out.problems.append(str(exc))
            return out
        dctx = zstandard.ZstdDecompressor()
        rel = raw = pos = 0
        for i, (first, lines, rpos, fpos, clen, rlen, _, _, h) in enumerate(meta.blocks):
            where = f"{path}: block {i} (offsets {meta.base + first}..{meta.base + first + lines - 1})"
            if (first, rpos, fpos) != (rel, raw, pos):
                out.problems.append(f"{where}: does not continue the previous block")
            frame = pread_all(fd, clen, fpos)
            out.blocks += 1
            rel, raw, pos = first + lines, rpos + rlen, fpos + clen
            if xxhash.xxh3_64_intdigest(frame) != h:
                out.problems.append(f"{where}: fails its checksum")
                continue
            try:
                data = dctx.decompress(frame, max_output_size=rlen)
            except zstandard.ZstdError as exc:
                out.problems.append(f"{where}: does not decompress: {exc}")
                continue
            got = data.count(b"\n")
            if len(data) != rlen or got != lines or not data.endswith(b"\n"):
                out.problems.append(f"{where}: holds {len(data)} bytes / {got} lines, "
                                    f"the index says {rlen} / {lines}")
            out.records += lines
        if (rel, raw) != (meta.count, meta.raw_size):
            out.problems.append(f"{path}: blocks hold {rel} records / {raw} bytes, the index says "
                                f"{meta.count} / {meta.raw_size}")
    finally:
        os.close(fd)
    return out


def verify_plain(path: Path) -> Checked:
    out = Checked(path)
    try:
        raw_index = path.with_suffix(INDEX).read_bytes()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return out
    try:
        size = os.fstat(fd).st_size
        prev = prev_rel = 0
        for i, (rel, p, h) in enumerate(decode_index(raw_index)):
            out.blocks += 1
            if p > size or p <= prev:
                out.problems.append(f"{path}: index entry {i} points outside the data")
                break
            if block_hash(pread_all(fd, p - prev, prev)) != h:
                out.problems.append(f"{path}: block {i} (bytes {prev}..{p}, relative offsets "
                                    f"{prev_rel}..{rel - 1}) fails its checksum")
            prev, prev_rel = p, rel
    finally:
        os.close(fd)
    return out


def verify_tree(root: Path) -> Iterator[Checked]:
    """Every segment file under ``root`` (a file, a partition directory or a data directory)."""
    paths = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.name.endswith(SEALED) or p.suffix == DATA)
    for p in paths:
        yield verify_sealed(p) if p.name.endswith(SEALED) else verify_plain(p)
