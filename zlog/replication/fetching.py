"""The partitions a storage worker follows: one link per leader, requests out, replies applied.

Invariants:
- A partition is followed from the leader etcd names, in that leader's epoch (``follow``), as
  every log of it (each tenant's, by name: ``logset.log_name``); at most one request per log is
  in flight (``follower.Following``).
- A fetch reply's batches are appended at the leader's offsets; every followed partition written
  in one loop turn is synced once (by the turn's group commit, ``take_owed``, else ``flush``)
  before it is fetched again, so the next fetch offset tells the leader what this replica holds
  durably.
- An epoch-end answer cuts the log to it (KIP-101) before anything of that epoch is fetched.
- ``OFFSET_OUT_OF_RANGE`` (the leader's log starts beyond this log's end: retention deleted what
  this replica lacks, e.g. a new replica or one back after a long absence) restarts this log,
  empty, at the leader's log start (``logfiles.restart``), and fetching goes on from there;
  never while the seal process works on the partition.
- Malformed replies are the caller's to count; replies to anything but the request in flight
  are dropped.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import zmq

from zlog.replication import messages as rm
from zlog.replication.epochs import truncation_offset
from zlog.replication.follower import WAIT_MS, Following
from zlog.replication.logfiles import Diverged, apply, restart, truncate
from zlog.replication.membership import Membership
from zlog.replication.metrics import ReplicationMetrics
from zlog.replication.replicas import Replicas
from zlog.storage import PartitionLog
from zlog.storage.errors import StorageError
from zlog.storage.sync import sync_partitions

log = logging.getLogger("zlog.replication")


class Fetching:
    def __init__(self, worker: Any, replicas: Replicas, membership: Membership, metrics: ReplicationMetrics) -> None:
        self.worker = worker  # zlog.worker.process.StorageWorker
        self.replicas = replicas
        self.membership = membership
        self.metrics = metrics
        self.me: int = worker.worker_id
        self.ctx: zmq.Context[zmq.Socket[bytes]] = worker.ctx
        self.following: dict[str, Following] = {}  # by log name
        self.links: dict[int, tuple[str, zmq.Socket[bytes]]] = {}
        self.poller: zmq.Poller | None = None
        self._rid = 0
        self._owed: list[str] = []  # logs written this turn
        self._refetch: list[Following] = []
        self.retry_at: float | None = None  # when a followed log next asks by itself (see ``due``)

    def sockets(self) -> list[zmq.Socket[bytes]]:
        return [s for _, s in self.links.values()]

    def follow(self, p: int, leader: int, epoch: int, now: float) -> None:
        """Follow every log of ``p`` from ``leader`` in ``epoch`` (a new leader or epoch starts afresh).
        Another tenant's log is long-polled for a quarter of ``storage.replica_lag_ms`` rather
        than ``WAIT_MS``: an idle one then costs a quarter as many fetches, and each fetch still
        renews its place in the ISR four times a lag window (a write wakes it at once either way)."""
        tenant_wait = max(WAIT_MS, self.replicas.cfg.storage.replica_lag_ms // 4)
        for i, name in enumerate(self.replicas.log_names[p]):
            f = self.following.get(name)
            if f is None or f.leader != leader or f.epoch != epoch:
                f = self.following[name] = Following(p, name, leader, epoch, wait_ms=WAIT_MS if i == 0 else tenant_wait)
                self.ask(f, now)

    def stop(self, p: int) -> None:
        for name in self.replicas.log_names.get(p, ()):
            self.following.pop(name, None)

    def due(self, now: float) -> None:
        """Ask every followed log that is due, and note in ``retry_at`` when the next one falls
        due by itself (a refusal's back-off ending): the same pass, once per loop turn."""
        retry_at: float | None = None
        for f in self.following.values():
            if f.due(now):
                self.ask(f, now)
            t = f.next_due()
            if t is not None and (retry_at is None or t < retry_at):
                retry_at = t
        self.retry_at = retry_at

    def _link(self, leader: int) -> zmq.Socket[bytes] | None:
        snap = self.membership.snapshot
        info = snap.workers.get(leader) if snap else None
        if info is None:
            return None
        cur = self.links.get(leader)
        if cur is not None and cur[0] == info.endpoint:
            return cur[1]
        if cur is not None:
            if self.poller is not None:
                self.poller.unregister(cur[1])
            cur[1].close(0)
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        if self.worker.curve is not None:
            self.worker.curve.apply(s)
        s.connect(info.endpoint)
        self.links[leader] = (info.endpoint, s)
        if self.poller is not None:
            self.poller.register(s, zmq.POLLIN)
        return s

    def ask(self, f: Following, now: float) -> None:
        sock = self._link(f.leader)
        if sock is None:
            f.unsent(now)
            return
        self._rid += 1
        req = f.request(self._rid, self.me, self.replicas.cache(f.name).latest_epoch,
                        self.replicas.log(f.name).next_offset, now)
        try:
            sock.send(rm.request(req), zmq.NOBLOCK)
        except zmq.ZMQError:
            f.unsent(now)

    def on_reply(self, r: rm.Reply, now: float) -> None:
        name = r.partition  # the log's name
        f = self.following.get(name)
        if f is None or r.id != f.inflight:
            return
        f.inflight = None
        p = f.partition
        tenant = self.replicas.keys[name][0]
        plog = self.replicas.log(name)
        cache = self.replicas.cache(name)
        if r.error == "OFFSET_OUT_OF_RANGE" and r.log_start > plog.next_offset:
            if self.worker.sealer.busy((tenant or self.worker.default_tenant, p)):
                f.refused("BUSY", now)  # not under the seal process's feet; asked again shortly
                return
            log.warning("the leader's log starts beyond this replica's end: starting the log there",
                        extra={"partition": p, "tenant": tenant, "log_end": plog.next_offset,
                               "leader_log_start": r.log_start, "leader": f.leader})
            self.metrics.log_restarts.inc()
            self.replicas.replace(name, restart(plog, r.log_start, plog.config, int(time.time() * 1000), r.producers))
            cache.truncate_from(0)
            cache.save(self.replicas.epoch_path(name))
            f.phase = "fetch"
            self.ask(f, now)
            return
        if r.error is not None:
            f.refused(r.error, now)
            return
        f.answered()
        if r.kind == "epoch":
            cut = truncation_offset(cache, plog.next_offset, (r.epoch, r.end))
            if cut < plog.next_offset:
                log.warning("truncating a divergent tail", extra={"partition": p, "tenant": tenant,
                                                                   "from": plog.next_offset, "to": cut,
                                                                   "leader": f.leader})
                self.metrics.truncated.inc(plog.next_offset - cut)
                self.replicas.replace(name, truncate(plog, cut, plog.config))
                cache.truncate_from(cut)
                cache.save(self.replicas.epoch_path(name))
            f.phase = "fetch"
            self.ask(f, now)
            return
        try:
            changed = False
            for b, epoch in r.batches:
                changed = cache.assign(epoch, b.base) or changed
            if changed:
                cache.save(self.replicas.epoch_path(name))
            if apply(plog, [b for b, _ in r.batches], defer_sync=True):
                self._owed.append(name)
        except (Diverged, StorageError, OSError, ValueError) as exc:
            log.error("replicated batch refused; asking where the epoch ends again",
                      extra={"partition": p, "tenant": tenant, "detail": str(exc)})
            f.phase = "epoch"
            self.ask(f, now)
            return
        f.hw = r.hw
        v = self.replicas.view(name)
        v.hw = max(v.hw, min(r.hw, plog.next_offset))
        self.metrics.lag_records.labels(partition=name).set(max(0, r.leo - plog.next_offset))
        self._refetch.append(f)  # after this turn's sync: the fetch offset says "durable"

    def take_owed(self) -> list[PartitionLog]:
        """The followed partitions written this turn and owed a sync, handed to the caller's sync
        (the worker's group commit of the same turn), which calls their ``synced``."""
        logs = [self.replicas.log(name) for name in self._owed]
        self._owed = []
        return logs

    def flush(self, now: float) -> None:
        """End of a turn: one filesystem sync for every followed partition written in it (group
        commit), then the next fetch of each."""
        if self._owed:
            t0 = time.perf_counter()
            logs = [self.replicas.log(name) for name in self._owed]
            try:
                sync_partitions(logs)
            except OSError as exc:
                log.critical("fsync failed; exiting before the leader counts these records",
                             extra={"detail": str(exc)})
                os._exit(70)
            for plog in logs:
                plog.synced(time.perf_counter() - t0)
        for f in self._refetch:
            self.ask(f, now)
        self._owed, self._refetch = [], []

    def close(self) -> None:
        for _, s in self.links.values():
            s.close(0)
