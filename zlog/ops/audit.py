"""The exactly-once checker: every acknowledged record is stored once, in order, and nothing is lost.

A load generator tags each record with one label, ``<label>: "<key>:<index>"``: ``key`` names one
acknowledgeable unit (an HTTP request, a producer ``send``) and ``index`` the record's position in
it. The generator reports each acknowledged unit (``acknowledge(key, count)``); the checker then
reads stored lines (an iterator, or a data directory of segments) and compares.

Invariants:
- Pure-ish: no sockets and no clock; the only I/O is ``scan_dir`` reading segment files.
- Memory is one counter byte per acknowledged record (``bytearray`` per key), so tens of millions
  of records fit; counters saturate at 255, which still reads as "duplicated".
- Verdicts: ``lost`` = acknowledged, never stored; ``duplicated`` = stored more than once (counted
  once per extra copy); ``out_of_order`` = within one partition, the first copies of a unit's
  records appear with a decreasing index (a duplicate is not also counted as a reordering);
  ``unacknowledged`` = stored but never acknowledged (legal: a request that timed out may still
  have been stored) — reported, not a failure.
- Stored lines without the tag label are ignored (they belong to someone else).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlog.storage.sealed import SEALED, iter_blocks

DEFAULT_LABEL = "zb"
MAX_EXAMPLES = 5


def tag(key: str, index: int) -> str:
    """The label value of record ``index`` of unit ``key`` (``key`` must hold no quote or backslash)."""
    return f"{key}:{index}"


@dataclass(slots=True)
class AuditReport:
    acknowledged: int = 0
    stored: int = 0  # tagged lines seen, duplicates included
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unacknowledged: int = 0
    malformed: int = 0  # tag present but not "<key>:<index>"
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0 and self.malformed == 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "acknowledged": self.acknowledged, "stored": self.stored, "lost": self.lost,
                "duplicated": self.duplicated, "out_of_order": self.out_of_order,
                "unacknowledged": self.unacknowledged, "malformed": self.malformed, "examples": self.examples}

    def summary(self) -> str:
        verdict = "OK: every acknowledged record is stored exactly once" if self.ok else "FAILED"
        return (f"{verdict} (acknowledged {self.acknowledged:,}, stored {self.stored:,}, lost {self.lost:,}, "
                f"duplicated {self.duplicated:,}, out of order {self.out_of_order:,}, "
                f"stored but unacknowledged {self.unacknowledged:,})")


class Audit:
    """Accumulates acknowledgements and stored tags; ``report()`` compares them."""

    def __init__(self, label: str = DEFAULT_LABEL) -> None:
        self.label = label
        self._pattern = re.compile(b'"' + re.escape(label.encode()) + b'":"([^"\\\\]*)"')
        self._acked: dict[str, int] = {}
        self._seen: dict[str, bytearray] = {}
        self._extra: dict[str, int] = {}  # stored tags of unacknowledged units, by tag
        self._last: dict[tuple[int, str], int] = {}  # (partition, key) -> last index seen
        self._stored = 0
        self._out_of_order = 0
        self._malformed = 0
        self._examples: dict[str, list[str]] = {}

    def _example(self, kind: str, text: str) -> None:
        ex = self._examples.setdefault(kind, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(text)

    # -- what was acknowledged ------------------------------------------------------------

    def acknowledge(self, key: str, count: int) -> None:
        """Unit ``key`` of ``count`` records (indices 0..count-1) was acknowledged."""
        if key in self._acked:
            raise ValueError(f"unit {key!r} acknowledged twice")
        self._acked[key] = count

    @property
    def acknowledged(self) -> int:
        return sum(self._acked.values())

    # -- what is stored -------------------------------------------------------------------

    def observe(self, partition: int, value: str) -> None:
        """One stored record whose tag label is ``value``."""
        key, sep, idx = value.rpartition(":")
        if not sep or not idx.isdigit():
            self._malformed += 1
            self._example("malformed", value)
            return
        i = int(idx)
        self._stored += 1
        n = self._acked.get(key)
        if n is None or i >= n:
            copies = self._extra[value] = self._extra.get(value, 0) + 1
        else:
            seen = self._seen.get(key)
            if seen is None:
                seen = self._seen[key] = bytearray(n)
            copies = seen[i] = min(255, seen[i] + 1)
        if copies > 1:
            return  # a duplicate is a duplicate, not also a reordering
        last = self._last.get((partition, key), -1)
        if i < last:
            self._out_of_order += 1
            self._example("out_of_order", f"partition {partition}: {value} after index {last}")
        else:
            self._last[(partition, key)] = i

    def scan_bytes(self, partition: int, data: bytes) -> None:
        """Every tagged record in a chunk of whole stored lines, in stored order."""
        for m in self._pattern.finditer(data):
            self.observe(partition, m.group(1).decode("utf-8", "replace"))

    def scan_lines(self, lines: Iterable[tuple[int, bytes]]) -> None:
        """(partition, line) pairs, in offset order per partition."""
        for partition, line in lines:
            self.scan_bytes(partition, line)

    def scan_dir(self, data_dir: Path, chunk_bytes: int = 16 << 20) -> None:
        """Every segment of every partition under ``data_dir`` (``<partition>/<base>.jsonl`` or
        ``.jsonl.zst``)."""
        for pdir in sorted(data_dir.iterdir(), key=lambda p: p.name):
            if not (pdir.is_dir() and pdir.name.isdigit()):
                continue
            partition = int(pdir.name)
            for seg in sorted([*pdir.glob("*.jsonl"), *pdir.glob(f"*{SEALED}")], key=lambda p: p.name[:20]):
                if seg.name.endswith(SEALED):  # a sealed segment: its checked blocks, whole lines each
                    for block in iter_blocks(seg):
                        self.scan_bytes(partition, block)
                    continue
                with seg.open("rb") as f:
                    rest = b""
                    while chunk := f.read(chunk_bytes):
                        data = rest + chunk
                        cut = data.rfind(b"\n") + 1
                        self.scan_bytes(partition, data[:cut])
                        rest = data[cut:]
                    if rest:
                        self.scan_bytes(partition, rest)

    # -- the verdict ----------------------------------------------------------------------

    def report(self) -> AuditReport:
        r = AuditReport(acknowledged=self.acknowledged, stored=self._stored, out_of_order=self._out_of_order,
                        malformed=self._malformed)
        for key, n in self._acked.items():
            seen = self._seen.get(key)
            if seen is None:
                r.lost += n
                self._example("lost", f"{tag(key, 0)}..{tag(key, n - 1)} (the whole unit)")
                continue
            missing = seen.count(0)
            if missing:
                r.lost += missing
                self._example("lost", tag(key, seen.index(0)))
            if missing + seen.count(1) < n:
                for i, c in enumerate(seen):
                    if c > 1:
                        r.duplicated += c - 1
                        self._example("duplicated", f"{tag(key, i)} x{c}")
        for value, c in self._extra.items():
            r.unacknowledged += c
            if c > 1:
                r.duplicated += c - 1
                self._example("duplicated", f"{value} x{c} (unacknowledged)")
        r.examples = {k: list(v) for k, v in self._examples.items()}
        return r
