"""Workers gone for good: how long each worker that holds replicas has been without its etcd
key, and which have been gone longer than ``storage.replica_dead_after_ms``. Pure.

etcd lists only live workers (a worker's key dies with its lease); a worker that a partition
still names among its replicas (or a move's target) and that has no key is *absent*. Once it has
been absent for ``dead_after_ms`` without a break it is *lost*: the controller then moves its
replicas to live workers (``moves.reassignments``), as a drain would, and the partitions get
back to their full replica count.

Invariants:
- The clock is the caller's (``now_ms``, monotonic); nothing here reads one.
- A worker's absence starts at the first snapshot that shows it holding replicas without its
  key, and ends at the first one that shows its key again (a return restarts the count).
- The count is the observer's own: a worker that becomes controller later starts counting
  then, so replicas are never moved sooner than ``dead_after_ms`` after the controller itself
  saw the worker gone.
"""

from __future__ import annotations

from zlog.replication.coordination import Snapshot


class Absences:
    def __init__(self, dead_after_ms: int) -> None:
        self.dead_after_ms = dead_after_ms
        self.since: dict[int, float] = {}  # absent worker -> when it was first seen absent

    def observe(self, snap: Snapshot, now_ms: float) -> frozenset[int]:
        """Take a new snapshot into account; the workers lost now."""
        holders = {r for s, _ in snap.partitions.values() for r in (*s.replicas, *s.target)}
        gone = holders - set(snap.workers)
        for w in [w for w in self.since if w not in gone]:
            del self.since[w]
        for w in gone:
            self.since.setdefault(w, now_ms)
        return self.lost(now_ms)

    def lost(self, now_ms: float) -> frozenset[int]:
        return frozenset(w for w, t in self.since.items() if now_ms - t >= self.dead_after_ms)
