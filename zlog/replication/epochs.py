"""The leader-epoch cache of one replica and the truncation rule of KIP-101 (with KIP-279's fix).

A leader epoch is a number etcd hands out, one per leadership term of a partition. Every replica
keeps, per partition, the list ``(epoch, start_offset)``: the first offset written in each epoch
it holds records of. A follower that (re)starts asks the leader "where did my latest epoch end
on your log?" and truncates to that before it fetches, so a tail that no leader ever
acknowledged (written by a leader that died before replicating it) never survives a failover;
truncating to the high watermark instead loses acknowledged records or keeps divergent ones
(KIP-101's two scenarios).

Invariants:
- Entries are strictly increasing in epoch and non-decreasing in start offset; an epoch's records
  are the offsets ``[start, next entry's start)`` (the last one up to the log end offset).
- ``assign`` of an epoch whose start is at or below existing entries' starts drops those
  entries (their records were truncated away before the new epoch's first record).
- ``end_offset(e, leo)`` is the first offset *after* the records of the largest epoch <= e, as
  ``(that epoch, offset)``; for an epoch older than every entry, ``(e, first entry's start)``
  (Kafka's answer: none of this log's records from there on are of epoch e or older);
  ``UNDEFINED`` for e < 0 or an empty cache.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from pathlib import Path

UNDEFINED = (-1, -1)


class EpochCache:
    def __init__(self, entries: Iterable[tuple[int, int]] = ()) -> None:
        self.entries: list[tuple[int, int]] = []
        for epoch, start in entries:
            self.assign(epoch, start)

    def __repr__(self) -> str:
        return f"EpochCache({self.entries})"

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else -1

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``. True when the cache changed."""
        if self.entries and epoch <= self.entries[-1][0]:
            return False  # an epoch we know (or an older one): its start is already recorded
        while self.entries and self.entries[-1][1] >= start_offset:
            self.entries.pop()
        self.entries.append((epoch, start_offset))
        return True

    def end_offset(self, epoch: int, leo: int) -> tuple[int, int]:
        """Where the records of the largest epoch <= ``epoch`` end (``leo`` for the latest)."""
        i = bisect_right([e for e, _ in self.entries], epoch)
        if i == 0:
            # A log that began after that epoch (a tenant's log first written in a later term):
            # whatever the asker holds of it, from the first known start on, is not ours.
            return (epoch, self.entries[0][1]) if self.entries and epoch >= 0 else UNDEFINED
        found = self.entries[i - 1][0]
        end = self.entries[i][1] if i < len(self.entries) else leo
        return found, end

    def epoch_of(self, offset: int) -> int:
        """The epoch in which ``offset`` was written (-1 before the first entry)."""
        i = bisect_right([s for _, s in self.entries], offset)
        return self.entries[i - 1][0] if i else -1

    def truncate_from(self, offset: int) -> None:
        """The log was cut to end at ``offset``: forget epochs that started at or after it."""
        while self.entries and self.entries[-1][1] >= offset:
            self.entries.pop()

    # -- the checkpoint file: one "epoch start" line per entry, replaced atomically --------

    def dump(self) -> bytes:
        return b"".join(b"%d %d\n" % e for e in self.entries)

    @classmethod
    def parse(cls, data: bytes) -> EpochCache:
        entries = []
        for line in data.splitlines():
            parts = line.split()
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                break  # a torn checkpoint ends where it stops making sense
            entries.append((int(parts[0]), int(parts[1])))
        return cls(entries)

    @classmethod
    def load(cls, path: Path) -> EpochCache:
        try:
            return cls.parse(path.read_bytes())
        except FileNotFoundError:
            return cls()

    def save(self, path: Path) -> None:
        import os

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(self.dump())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def truncation_offset(follower: EpochCache, follower_leo: int, leader_answer: tuple[int, int]) -> int:
    """Where a follower cuts its log before fetching, given the leader's answer to
    ``end_offset(follower.latest_epoch)``.

    The leader answers with the largest epoch it knows that is <= ours and where it ends. If it
    does not know our epoch (we led a term whose records no one else got), the answer's epoch is
    smaller, and our own records of that smaller epoch may end earlier than the leader's: cut
    at the smaller of the two (KIP-279). An undefined answer (the leader has no epoch that old,
    e.g. retention removed it) means nothing of ours can be trusted beyond what we have seen
    acknowledged, which the caller bounds separately; here it keeps the log as is.
    """
    epoch, end = leader_answer
    if (epoch, end) == UNDEFINED:
        return follower_leo
    if not follower.entries or follower.entries[0][0] > epoch:
        return 0  # we hold nothing of any epoch the leader knows: start over
    _, own_end = follower.end_offset(epoch, follower_leo)
    return min(end, own_end, follower_leo)
