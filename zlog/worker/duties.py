"""A storage worker's periodic duties: heartbeats, interval fsyncs and rolls, sealing, retention,
joining routers etcd lists, counting rollups when idle, gauges.

``Duties`` is the part of ``StorageWorker`` (``process.py``) that the loop runs when a duty is
due (``housekeeping``) or when no message came for a whole tick (``idle``).

Invariants:
- A heartbeat to every router carries the full READY claim (replicated: the partitions this
  worker leads now), so a restarted router learns the owners from the next heartbeat.
- Retention never deletes under the seal process's feet: a partition being sealed waits for the
  next check.
- Idle counting spends at most ``IDLE_ROLLUP_BYTES`` of one partition per turn, and only on
  partitions this worker leads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import zmq

from zlog.config import Config
from zlog.ops.metrics import WorkerMetrics
from zlog.protocol import bodies, wire
from zlog.protocol.wire import Command
from zlog.storage import PartitionLog
from zlog.worker.intake import tenant_key
from zlog.worker.sealing import SealRunner

if TYPE_CHECKING:
    from zlog.replication.manager import ReplicaManager

log = logging.getLogger("zlog.worker")

IDLE_ROLLUP_BYTES = 1024 * 1024


class Duties:
    # Set by StorageWorker.__init__.
    cfg: Config
    worker_id: int
    metrics: WorkerMetrics
    default_tenant: str
    logs: dict[int, PartitionLog]
    repl: ReplicaManager | None
    sealer: SealRunner
    ready_body: bytes
    sockets: list[zmq.Socket[bytes]]
    retention_every_ms: int
    _backs: set[str]
    _routers: set[zmq.Socket[bytes]]
    _poller: zmq.Poller | None
    _last_heartbeat: float
    _last_retention: float
    # StorageWorker's and Intake's.
    all_logs: Callable[[], list[tuple[str, int, PartitionLog]]]
    _connect: Callable[[str], zmq.Socket[bytes]]
    _send: Callable[[zmq.Socket[bytes], bytes, list[bytes]], None]

    def _ready(self, partitions: tuple[int, ...]) -> bodies.Ready:
        c = self.cfg.cluster
        return bodies.Ready(self.worker_id, partitions, c.node_id, os.getpid(),
                            self.cfg.worker_metrics_port(self.worker_id), c.host)

    def heartbeat(self, command: Command = Command.HEARTBEAT) -> None:
        body = self.ready_body
        if self.repl is not None:  # claim only the partitions this worker leads now
            body = bodies.ready_body(self._ready(self.repl.led()))
        frames = wire.encode(command, 0, body=body)
        for s in self.sockets:
            self._send(s, b"", frames)

    def housekeeping(self, now_ms: float) -> None:
        if now_ms - self._last_heartbeat >= self.cfg.router.heartbeat_ms:
            self._last_heartbeat = now_ms
            if self.repl is not None:
                self.join_routers()
            self.heartbeat()
            self.refresh_gauges()
        for _, _, plog in self.all_logs():
            plog.tick()
        if self.repl is not None:
            self.repl.tick()
        self.sealer.tick()
        if now_ms - self._last_retention >= self.retention_every_ms:
            self._last_retention = now_ms
            self.enforce_retention()

    def join_routers(self) -> None:
        """Connect to the routers etcd lists that this worker is not connected to yet."""
        assert self.repl is not None
        snap = self.repl.membership.snapshot
        if snap is None:
            return
        for r in sorted(snap.routers.values(), key=lambda r: r.id):
            if r.back in self._backs:
                continue
            s = self._connect(r.back)
            self._backs.add(r.back)
            self.sockets.append(s)
            self._routers.add(s)
            if self._poller is not None:
                self._poller.register(s, zmq.POLLIN)
            log.info("connected to a router registered in etcd", extra={"router": r.id, "back": r.back})

    def enforce_retention(self) -> None:
        """Each tenant's partitions by that tenant's own retention (``tenant_logs.storage_of``)."""
        for tenant, p, plog in self.all_logs():
            if self.sealer.busy((tenant, p)):
                continue  # not under the seal process's feet; next time
            deleted = plog.enforce_retention()
            if deleted:
                log.info("retention deleted segments", extra={"tenant": tenant, "partition": p, "segments": deleted})

    def idle(self) -> bool:
        """A quiet worker: count a little of what the rollups have not seen yet
        (zlog.storage.rollup), so that volume queries find them caught up; True once they are.
        Only leaders answer counts: a partition this worker follows is counted once it leads it
        (or is asked)."""
        for tenant, p, plog in self.all_logs():
            if self.repl is not None and self.repl.follows(tenant_key(tenant, self.default_tenant), p):
                continue
            if not plog.rollup.catch_up(plog.segments, IDLE_ROLLUP_BYTES):
                return False  # one partition's budget per idle turn keeps the next message waiting little
        return True

    def refresh_gauges(self) -> None:
        m = self.metrics
        for p, plog in self.logs.items():
            label = str(p)
            m.disk_bytes.labels(partition=label).set(plog.stored_bytes)
            m.segments.labels(partition=label).set(plog.segment_count)
            m.highest_offset.labels(partition=label).set(plog.next_offset - 1)
            m.lowest_offset.labels(partition=label).set(plog.lowest_offset)
        usage: dict[str, list[int]] = {}  # per tenant: bytes, segments, records kept
        for tenant, _, plog in self.all_logs():
            u = usage.setdefault(tenant, [0, 0, 0])
            u[0] += plog.size_bytes
            u[1] += plog.segment_count
            u[2] += plog.next_offset - plog.lowest_offset
        for tenant, (nbytes, segments, records) in usage.items():
            m.tenant_usage(tenant, nbytes, segments, records)
        if self.repl is not None:
            self.repl.gauges()
        self.sealer.refresh()
