"""Reading a partition's segments: fetch by offset, and scans forward or backward with a predicate.

Invariants:
- Every read starts and ends on a block boundary of the offset index (or a segment's start or
  committed end), so each ``pread`` returns whole lines only and no partial line is ever carried
  between reads. A record's offset is known from the boundary's relative offset plus the line number.
- Backward scans read the segment files backwards from the newest offset asked for, in chunks that
  grow from 64 KiB to 1 MiB: the newest records of any partition cost a few reads.
- ``since_ms`` prunes with the time index only where it proves every record is older (a whole
  segment whose max timestamp is smaller, or a segment's prefix); the caller's predicate decides
  the rest.
- Sealed segments (zlog.storage.sealed) read as plain ones; with ``needles`` or time bounds a scan
  asks them to skip blocks that cannot match and then reads one block at a time.
- With ``needles``, a chunk of a plain segment in which a needle occurs nowhere (a bytes search)
  is examined without calling the predicate on its lines: the predicate must imply the needles.
- ``ScanResult.next`` resumes a scan exactly after the last record examined: resuming yields no
  gap and no repeat. ``None`` means nothing is left in that direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress

from zlog.storage.sealed import SealedSegment
from zlog.storage.segment import Segment
from zlog.storage.tokens import Needles

AnySegment = Segment | SealedSegment

_FIRST_CHUNK = 64 * 1024
_MAX_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ScanResult:
    records: list[tuple[int, bytes]]
    next: int | None  # offset to resume from; None: exhausted
    scanned_records: int
    scanned_bytes: int


def _span(seg: AnySegment, pos: int, end_target: int, probe: Needles | None = None) -> tuple[list[bytes], int, bool]:
    """Whole lines from boundary ``pos`` to the first boundary at or after ``end_target``, and
    whether ``probe`` proves no line of them holds its needles."""
    nb = seg.index.ceil_pos(max(end_target, pos + 1))
    end = nb[1] if nb is not None else seg.size
    data = seg.pread(pos, end)
    lines = data.split(b"\n")
    lines.pop()
    return lines, end, probe is not None and not probe.may_be_in(data)


def read(segments: list[AnySegment], i: int, offset: int, max_records: int,
         max_bytes: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    used = 0
    while i < len(segments) and len(out) < max_records:
        seg = segments[i]
        rel = offset - seg.base
        if rel >= seg.count:
            i += 1
            continue
        erel, pos = seg.index.floor_rel(rel)
        # read about what is asked for (a guess from the mean line length), not max_bytes at once
        guess = (max_records - len(out) + rel - erel) * (seg.size // max(seg.count, 1) + 1)
        lines, _, _ = _span(seg, pos, pos + max(min(max_bytes - used, guess), 1))
        lines = lines[rel - erel:rel - erel + max_records - len(out)]
        size = sum(map(len, lines))
        if used + size <= max_bytes:
            out += zip(range(offset, offset + len(lines)), lines, strict=True)
            used += size
            offset += len(lines)
            continue
        for line in lines:
            if out and used + len(line) > max_bytes:
                return out
            out.append((offset, line))
            used += len(line)
            offset += 1
        return out
    return out


def scan(segments: list[AnySegment], i: int, first: int, backward: bool, since_ms: int | None,
         predicate: Callable[[bytes], bool] | None, limit: int, budget: int,
         until_ms: int | None = None, needles: Needles | None = None) -> ScanResult:
    records: list[tuple[int, bytes]] = []
    scanned = scanned_bytes = 0
    lowest, end = segments[0].base, segments[-1].next_offset
    off = first
    chunk = _FIRST_CHUNK
    prune = bool(needles) or since_ms is not None or until_ms is not None
    while 0 <= i < len(segments):
        seg = segments[i]
        skip = seg.skip if prune and isinstance(seg, SealedSegment) else None
        # plain segments: one C-level search of the chunk for the needles rules most chunks out
        probe = needles if needles and skip is None and predicate is not None else None
        absent = False
        stop_rel = -1  # records at or before this relative offset are all older than since_ms
        if since_ms is not None:
            stop_rel = seg.count - 1 if seg.max_ts < since_ms else seg.tindex.older_than(since_ms)
        rel = off - seg.base
        if skip is not None and 0 <= rel < seg.count:
            rel = skip(max(rel, stop_rel + 1) if not backward else rel, backward, needles, since_ms, until_ms)
        if backward:
            if rel <= stop_rel or rel < 0:
                off, i = seg.base - 1, i - 1
                continue
            erel, epos = seg.index.floor_rel(rel)
            nb = seg.index.ceil_pos(epos + 1)
            _, end_pos = nb if nb is not None else (seg.count, seg.size)
            srel, spos = seg.index.floor_pos(min(epos, end_pos - (1 if skip else chunk)))
            data = seg.pread(spos, end_pos)
            absent = probe is not None and not probe.may_be_in(data)
            lines = data.split(b"\n")
            lo = max(srel, stop_rel + 1)
            del lines[rel - srel + 1:]
            del lines[:lo - srel]
            lines.reverse()
            top = seg.base + rel  # offset of lines[0]; lines[k] has offset top - k
        else:
            rel = max(rel, stop_rel + 1)
            if rel >= seg.count:
                off, i = seg.next_offset, i + 1
                continue
            erel, pos = seg.index.floor_rel(rel)
            lines, _, absent = _span(seg, pos, pos + (1 if skip else chunk), probe)
            del lines[:rel - erel]
            top = seg.base + rel
        chunk = min(chunk * 2, _MAX_CHUNK)
        sign = -1 if backward else 1
        if predicate is None:
            hits: list[int] = list(range(len(lines)))
        elif absent:
            hits = []
        else:
            hits = list(compress(range(len(lines)), map(predicate, lines)))
        need = limit - len(records)
        if len(hits) >= need:
            hits = hits[:need]
            lines_seen = hits[-1] + 1
            records += [(top + sign * k, lines[k]) for k in hits]
            scanned += lines_seen
            scanned_bytes += sum(map(len, lines[:lines_seen]))
            nxt = top + sign * lines_seen
            return ScanResult(records, nxt if lowest <= nxt < end else None, scanned, scanned_bytes)
        records += [(top + sign * k, lines[k]) for k in hits]
        scanned += len(lines)
        scanned_bytes += sum(map(len, lines))
        off = top + sign * len(lines)
        if scanned_bytes >= budget:
            return ScanResult(records, off if lowest <= off < end else None, scanned, scanned_bytes)
    return ScanResult(records, None, scanned, scanned_bytes)
