"""The router's state: which worker owns which partition, which workers are alive, what is in flight.

Pure: no sockets and no clock. Callers pass ``now_ms`` and act on the returned values, so every
rule here is tested with a fake clock.

Invariants:
- A partition has at most one owner: the worker whose READY (or heartbeat, which carries the
  same claim) is newest. An older claimant that still lives keeps its other partitions.
- In a replicated cluster, once etcd's view is known (``follow``), the owner of a partition is
  the live worker etcd names its leader, whatever the claims say; READY then only tells which
  zmq identity is which worker id (the newest identity of an id wins). A leader etcd names that
  is not connected here is no owner.
- A worker is dead once ``liveness`` heartbeat intervals pass without any message from it, or
  when it says DISCONNECT; its partitions then have no owner until a live worker claims them.
- Every forwarded request is in exactly one worker's in-flight table until its reply passes
  back or the worker dies; on death the caller NACKs what was in flight (nothing hangs).
- In-flight tables are bounded: ``admit`` refuses beyond ``max_inflight`` per worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

InflightKey = tuple[bytes, bytes]  # (reply_to identity, request id bytes)


@dataclass(slots=True)
class WorkerState:
    identity: bytes
    worker_id: int
    partitions: tuple[int, ...]
    node: str
    pid: int
    metrics_port: int
    first_seen_ms: int
    last_seen_ms: int
    inflight: dict[InflightKey, int] = field(default_factory=dict)  # key -> partition
    host: str = ""  # the address it advertises (cluster.host)


class RoutingTable:
    def __init__(self, partitions: int, *, heartbeat_ms: int, liveness: int, max_inflight: int = 100_000) -> None:
        self.partitions = partitions
        self.expiry_ms = heartbeat_ms * liveness
        self.max_inflight = max_inflight
        self.workers: dict[bytes, WorkerState] = {}
        self.owners: list[bytes | None] = [None] * partitions  # by the workers' claims
        self.ids: dict[int, bytes] = {}  # worker id -> its newest identity
        self.leaders: list[int | None] | None = None  # by etcd (replicated clusters), once known

    # -- membership ----------------------------------------------------------------------

    def claim(
        self,
        identity: bytes,
        worker_id: int,
        partitions: tuple[int, ...],
        now_ms: int,
        *,
        node: str = "",
        pid: int = 0,
        metrics_port: int = 0,
        host: str = "",
    ) -> list[int]:
        """A READY (or a heartbeat carrying the claim). Returns the partitions newly owned."""
        w = self.workers.get(identity)
        if w is None:
            w = self.workers[identity] = WorkerState(
                identity, worker_id, (), node, pid, metrics_port, now_ms, now_ms, host=host
            )
        w.last_seen_ms = now_ms
        self.ids[worker_id] = identity
        valid = tuple(p for p in partitions if 0 <= p < self.partitions)
        w.partitions = valid
        taken = []
        for p in valid:
            if self.owners[p] != identity:
                self.owners[p] = identity
                taken.append(p)
        return taken

    def seen(self, identity: bytes, now_ms: int) -> bool:
        """Any message from a worker proves it lives. False if the worker is unknown."""
        w = self.workers.get(identity)
        if w is None:
            return False
        w.last_seen_ms = now_ms
        return True

    def remove(self, identity: bytes) -> WorkerState | None:
        """The worker is gone (DISCONNECT, expiry or unreachable). Returns it with its in-flight table."""
        w = self.workers.pop(identity, None)
        if w is not None:
            if self.ids.get(w.worker_id) == identity:
                del self.ids[w.worker_id]
            for p in range(self.partitions):
                if self.owners[p] == identity:
                    self.owners[p] = None
        return w

    def expired(self, now_ms: int) -> list[bytes]:
        """Workers silent for longer than the liveness window; the caller ``remove``s them."""
        return [w.identity for w in self.workers.values() if now_ms - w.last_seen_ms > self.expiry_ms]

    # -- requests ------------------------------------------------------------------------

    def follow(self, leaders: list[int | None]) -> list[int]:
        """etcd's leaders (worker ids, by partition) from now on; returns the partitions whose
        leader changed."""
        before = self.leaders
        self.leaders = (leaders + [None] * self.partitions)[: self.partitions]
        return [p for p in range(self.partitions) if before is None or before[p] != self.leaders[p]]

    def identity_of(self, worker_id: int) -> bytes | None:
        return self.ids.get(worker_id)

    def owner(self, partition: int) -> bytes | None:
        if not 0 <= partition < self.partitions:
            return None
        if self.leaders is not None:
            leader = self.leaders[partition]
            return None if leader is None else self.ids.get(leader)
        return self.owners[partition]

    def owned_count(self) -> int:
        return sum(1 for p in range(self.partitions) if self.owner(p) is not None)

    def admit(self, worker: bytes, key: InflightKey, partition: int) -> bool:
        w = self.workers.get(worker)
        if w is None or len(w.inflight) >= self.max_inflight:
            return False
        w.inflight[key] = partition
        return True

    def settle(self, worker: bytes, key: InflightKey) -> None:
        w = self.workers.get(worker)
        if w is not None:
            w.inflight.pop(key, None)

    def inflight_count(self) -> int:
        return sum(len(w.inflight) for w in self.workers.values())

    def alive_count(self) -> int:
        return len(self.workers)

    def snapshot(self, now_ms: int) -> dict[str, object]:
        """Metadata for producers and ``zlog status``."""
        return {
            "partitions": self.partitions,
            "owners": [
                None if o is None or o not in self.workers else self.workers[o].worker_id
                for o in map(self.owner, range(self.partitions))
            ],
            "workers": [
                {
                    "worker": w.worker_id,
                    "partitions": list(w.partitions),
                    "node": w.node,
                    "host": w.host,
                    "pid": w.pid,
                    "metrics_port": w.metrics_port,
                    "last_seen_ms_ago": now_ms - w.last_seen_ms,
                    "uptime_ms": now_ms - w.first_seen_ms,
                    "inflight": len(w.inflight),
                }
                for w in sorted(self.workers.values(), key=lambda w: w.worker_id)
            ],
        }
