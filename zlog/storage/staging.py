"""A partition's staged batches: checked, given offsets, not yet written.

Invariants:
- Offsets are assigned in staging order from ``next_offset`` (one past the last staged record, or
  the log's next offset when nothing is staged), densely: a batch of n records takes n offsets.
- A batch whose (producer id, sequence) the producer table already holds is not staged: its
  answer is the original's place (``duplicate``), and the ``duplicates`` stat counts it.
- ``groups`` splits what is staged, in order, where the active segment would exceed its size
  limit; ``clear`` drops everything staged (written or not) and the producer table's staged view.
- Pure: no files, sockets or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from zlog.storage.producers import ProducerBatch, ProducerTable
from zlog.storage.segment import Staged


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int  # -1: a duplicate too old to remember where it went
    count: int
    duplicate: bool = False


class Staging:
    def __init__(self, producers: ProducerTable, stats: dict[str, float]) -> None:
        self.producers = producers
        self.stats = stats
        self.batches: list[Staged] = []
        self.next_offset = 0

    def __bool__(self) -> bool:
        return bool(self.batches)

    def stage(self, data: bytes, n: int, max_timestamp: int, producer: ProducerBatch | None,
              data_hash: int) -> AppendResult:
        if producer is not None:
            dup = self.producers.check(producer)
            if dup is not None:
                self.stats["duplicates"] += 1
                return AppendResult(dup[0], dup[1] if dup[0] >= 0 else n, True)
        base = self.next_offset
        if producer is None:
            self.batches.append(Staged(base, n, data, max_timestamp, data_hash=data_hash))
        else:
            self.batches.append(Staged(base, n, data, max_timestamp, producer.producer_id, producer.sequence,
                                       data_hash))
            self.producers.stage(producer, base, n)
        self.next_offset = base + n
        return AppendResult(base, n)

    def groups(self, active_size: int, limit: int) -> list[list[Staged]]:
        """Staged batches split where the active segment (now ``active_size`` bytes) would exceed
        ``limit`` bytes; the first group is empty when the first batch does not fit."""
        groups: list[list[Staged]] = [[]]
        size = active_size
        for b in self.batches:
            if size and size + len(b.data) > limit:
                groups.append([])
                size = 0
            groups[-1].append(b)
            size += len(b.data)
        return groups

    def clear(self, next_offset: int) -> None:
        self.batches.clear()
        self.producers.drop_staged()
        self.next_offset = next_offset
