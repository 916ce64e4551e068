"""Idempotent producers: per producer id, the last sequence and the last few batches it wrote.

Invariants:
- A producer's sequence starts anywhere (a producer id never seen before is accepted at any
  sequence) and then grows by exactly 1 per batch; ``sequence <= last`` is a duplicate (answered
  with the remembered result, or base offset -1 when too old to remember) and ``sequence > last + 1``
  is a gap (``OutOfOrderSequence``).
- Batches appended but not yet committed live in a staged overlay that ``check`` consults too, so a
  retry arriving within the same commit window is also a duplicate; a failed commit drops the
  overlay and the committed table is untouched.
- The table is bounded (least recently used producer evicted first) and is rebuilt on open from
  the active segment's ``.batches`` file: its PRODUCER snapshot entries, then its BATCH entries.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from zlog.storage.errors import InvalidRecord, OutOfOrderSequence

Remembered = tuple[int, int, int]  # sequence, base offset, count


@dataclass(frozen=True, slots=True)
class ProducerBatch:
    producer_id: bytes  # at most 16 bytes
    sequence: int  # per producer per partition, +1 per batch


class ProducerTable:
    def __init__(self, capacity: int = 100_000, remember: int = 5) -> None:
        self.capacity = capacity
        self.remember = remember
        self._table: OrderedDict[bytes, deque[Remembered]] = OrderedDict()
        self._staged: dict[bytes, list[Remembered]] = {}

    def __len__(self) -> int:
        return len(self._table)

    def _last(self, pid: bytes) -> Remembered | None:
        staged = self._staged.get(pid)
        if staged:
            return staged[-1]
        known = self._table.get(pid)
        return known[-1] if known else None

    def check(self, batch: ProducerBatch) -> tuple[int, int] | None:
        """None for a new batch; (base offset, count) of the original for a duplicate (base -1 if
        forgotten). Raises OutOfOrderSequence on a gap."""
        pid, seq = batch.producer_id, batch.sequence
        if len(pid) > 16 or seq < 0:
            raise InvalidRecord("producer id must be <= 16 bytes and sequence >= 0")
        last = self._last(pid)
        if last is None or seq == last[0] + 1:
            return None
        if seq > last[0] + 1:
            raise OutOfOrderSequence(pid, seq, last[0] + 1)
        for s, base, count in (*self._table.get(pid, ()), *self._staged.get(pid, ())):
            if s == seq:
                return (base, count)
        return (-1, 0)

    def stage(self, batch: ProducerBatch, base: int, count: int) -> None:
        self._staged.setdefault(batch.producer_id, []).append((batch.sequence, base, count))

    def commit_staged(self) -> None:
        for pid, items in self._staged.items():
            for seq, base, count in items:
                self.restore(pid, seq, base, count)
        self._staged.clear()

    def drop_staged(self) -> None:
        self._staged.clear()

    def restore(self, pid: bytes, seq: int, base: int, count: int) -> None:
        """Record a committed batch (also used when replaying a ``.batches`` file)."""
        known = self._table.get(pid)
        if known is None:
            known = self._table[pid] = deque(maxlen=self.remember)
            if len(self._table) > self.capacity:
                self._table.popitem(last=False)
        else:
            self._table.move_to_end(pid)
        known.append((seq, base, count))

    def snapshot(self) -> list[tuple[bytes, int, int, int]]:
        """Every remembered batch, least recently used producer first, oldest batch first."""
        return [(pid, s, b, c) for pid, items in self._table.items() for s, b, c in items]
