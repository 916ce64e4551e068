"""The replication shell of a storage worker: roles from etcd, the replication sockets, hooks.

``zlog.worker.process`` calls it at a few points (and only when R > 1): before staging a batch
(``check_produce``), before answering a PRODUCE (``hold``), after each group commit
(``after_commit``), for reads (``view_of``, ``describe``), for the READY claim (``led``), on its
sockets' events and on every loop turn (``tick``). The work is done by three parts it composes:
``Replicas`` (the partitions held: logs, epoch caches, views), ``Leading`` (the partitions led)
and ``Fetching`` (the partitions followed); this module decides, from each etcd snapshot, which
partition is in which.

Invariants:
- This worker leads partition p in epoch e only while etcd says so, the epoch was won by this
  process (``Membership.won``) and its lease is safe (not fenced); it claims p in READY only
  then, and every held acknowledgement is NACKed the moment any of that stops being true.
- It follows p only from the leader etcd names, in that leader's epoch.
- The partitions it holds are those etcd lists it among the replicas of (a reassignment adds
  and removes them while it runs; ``zlog.replication.moves``), plus, before etcd knows a
  partition, the ones placement gives it. A partition it is removed from is no longer followed,
  led or read (its logs are closed, ``Replicas.drop``); its files stay until the operator
  removes them.
- A partition is replicated as all of its logs, the default tenant's and each declared tenant's
  (``zlog.replication.logset``): led, followed and stepped down from together, in one ISR; each
  log is fetched, truncated (KIP-101) and bounded by its own high watermark.
- Every read of a replicated partition is bounded by its log's high watermark (``view_of``).
- Malformed replication messages are counted and dropped; nothing here raises into the loop.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import zmq

from zlog.config import Config, ConfigError
from zlog.protocol import bodies
from zlog.replication import messages as rm
from zlog.replication.coordination import Coordinator, WorkerInfo, call_timeout
from zlog.replication.etcd_server import local_endpoints
from zlog.replication.fetching import Fetching
from zlog.replication.leading import Leading
from zlog.replication.logset import LogKey, log_name
from zlog.replication.membership import Membership
from zlog.replication.metrics import ReplicationMetrics
from zlog.replication.replicas import Replicas, replica_partitions
from zlog.replication.view import BoundedLog
from zlog.security.curve import Authenticator, check_bind, keys_dir, serve_curve
from zlog.storage import PartitionLog

__all__ = ["ReplicaManager", "replica_partitions"]

log = logging.getLogger("zlog.replication")


def _ms() -> float:
    return time.monotonic() * 1000


class ReplicaManager:
    def __init__(self, worker: Any, cfg: Config) -> None:
        self.worker = worker
        self.cfg = cfg
        self.me: int = worker.worker_id
        c = cfg.cluster
        self.replicas = Replicas(worker, cfg)
        self.endpoint = f"tcp://{c.host}:{c.replication_port_base + self.me}"
        ctx: zmq.Context[zmq.Socket[bytes]] = worker.ctx
        refusal = check_bind(self.endpoint, cfg.cluster.curve)
        if refusal:
            raise ConfigError(refusal)
        self.server = ctx.socket(zmq.ROUTER)
        self.server.setsockopt(zmq.LINGER, 0)
        self.auth: Authenticator | None = None
        if cfg.cluster.curve:  # followers are workers: the ZAP thread admits worker keys only
            self.auth = Authenticator(ctx, keys_dir(cfg))
            self.auth.start()
            serve_curve(self.server, cfg, "replica")
        self.server.bind(self.endpoint)
        self.metrics = ReplicationMetrics(worker.metrics.registry)
        self._version = 0
        self._fenced = True
        self._down_since: dict[int, float] = {}
        coord = Coordinator(local_endpoints(cfg), cfg.cluster.etcd_prefix, call_timeout(c.lease_ttl_ms))
        info = WorkerInfo(self.me, c.host, os.getpid(), self.endpoint, cfg.worker_metrics_port(self.me))
        self.membership = Membership(coord, info, self.replicas.placement(), c.lease_ttl_ms,
                                     dead_after_ms=cfg.storage.replica_dead_after_ms, metrics=self.metrics)
        self.leading = Leading(worker, cfg, self.replicas, self.membership, self.metrics, self.server)
        self.fetching = Fetching(worker, self.replicas, self.membership, self.metrics)
        self.membership.start()

    @property
    def poller(self) -> zmq.Poller | None:
        return self.fetching.poller

    @poller.setter
    def poller(self, poller: zmq.Poller | None) -> None:
        self.fetching.poller = poller  # links to new leaders are registered with it

    # -- hooks ------------------------------------------------------------------------------

    def check_produce(self, p: int, acks: str) -> bodies.Nack | None:
        return self.leading.check_produce(p, acks)

    def hold(self, reply: Any) -> bool:
        """True when the reply must wait for the high watermark (it is answered later)."""
        return self.leading.hold(reply)

    def after_commit(self, keys: set[LogKey]) -> None:
        """The logs (tenant, partition; None: the default tenant) this turn's commit wrote."""
        self.leading.after_commit(keys, _ms())

    def view_of(self, tenant: str | None, p: int) -> BoundedLog | None:
        return self.replicas.view_of(tenant, p)

    def follows(self, tenant: str | None, p: int) -> bool:
        """Whether this worker follows ``tenant``'s partition ``p`` now (reads go to its leader)."""
        return log_name(tenant, p) in self.fetching.following

    def led(self) -> tuple[int, ...]:
        if self.membership.fenced():
            return ()
        return tuple(sorted(self.leading.parts))

    def describe(self, p: int, tenant: str | None = None) -> dict[str, Any]:
        """Partition ``p``'s replication state; the high watermark is ``tenant``'s log's."""
        st = self.replicas.states.get(p)
        led = self.leading.parts.get(p)
        view = self.view_of(tenant, p)
        return {"leader": st.leader if st else None, "replicas": list(st.replicas) if st else [],
                "isr": sorted(led.isr) if led else (list(st.isr) if st else []),
                "leader_epoch": st.epoch if st else -1, "high_watermark": view.next_offset if view else 0,
                "reassigning": bool(st and st.target), "adding": list(st.adding) if st else [],
                "removing": list(st.removing) if st else [],
                "draining": sorted(snap.drains) if (snap := self.membership.snapshot) else []}

    # -- sockets ----------------------------------------------------------------------------

    def sockets(self) -> list[zmq.Socket[bytes] | int]:
        """What the loop polls for this shell: the replication sockets, and the membership
        thread's wake-up (a new etcd snapshot or the lease safe again: roles decided at once)."""
        return [self.server, *self.fetching.sockets(), self.membership.wake_fd]

    def on_events(self, socks: list[Any]) -> None:
        self.receive(socks)
        self.finish()

    def receive(self, socks: list[Any]) -> None:
        """Serve followers' requests and apply the leaders' replies ready on ``socks``; what that
        wrote is owed a sync (the turn's group commit takes it: ``take_owed``; else ``finish``).
        The membership's wake-up needs only emptying: the loop's ``tick`` that follows acts on it."""
        now = _ms()
        for sock in socks:
            if sock == self.membership.wake_fd:
                self.membership.woken()
                continue
            for _ in range(1024):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    if sock is self.server and len(frames) == 2:
                        self.leading.serve(frames[0], rm.parse_request(frames[1]), now)
                    elif sock is not self.server and len(frames) == 1:
                        self.fetching.on_reply(rm.parse_reply(frames[0]), now)
                    else:
                        self.metrics.errors.labels(kind="malformed").inc()
                except rm.BadMessage:
                    self.metrics.errors.labels(kind="malformed").inc()

    def take_owed(self) -> list[PartitionLog]:
        return self.fetching.take_owed()

    def finish(self) -> None:
        # followed partitions written this turn: one sync (unless the group commit's covered
        # them), then fetched again
        self.fetching.flush(_ms())

    # -- roles ------------------------------------------------------------------------------

    def tick(self) -> None:
        now = _ms()
        m = self.membership
        fenced = m.fenced()
        if fenced != self._fenced:
            self._fenced = fenced
            self._version = -1  # etcd answers again (or not): decide every role afresh
        if m.version != self._version and not fenced:
            self._version = m.version
            self._reconcile(now)
        if fenced and self.leading.parts:
            log.warning("lease not renewed in time: no longer acknowledging as leader",
                        extra={"partitions": sorted(self.leading.parts)})
            for p in list(self.leading.parts):
                self.leading.step_down(p)
            self.worker.heartbeat()
        if self.leading.handoff_stale(now):
            self._version = -1  # a handoff that did not happen: decide the roles again
        if self.leading.tick(now):
            self.worker.heartbeat()
        self.fetching.due(now)

    def next_due(self) -> float | None:
        """When the worker's loop should call ``tick`` again at the latest, on ``_ms``'s clock
        (None: the loop's own tick is soon enough); noted by the last ``tick``."""
        return self.fetching.retry_at

    def _reconcile(self, now: float) -> None:
        snap = self.membership.snapshot
        if snap is None:
            return
        rs, leading = self.replicas, self.leading
        for name, (st, _) in sorted(snap.partitions.items()):
            if self.me in st.replicas and name not in rs.by_name:
                rs.adopt(name)
        claimed = False
        for p in list(rs.partitions):
            name = rs.names[p]
            entry = snap.partitions.get(name)
            if entry is None:
                continue
            state = entry[0]
            rs.states[p] = state
            if self.me not in state.replicas:  # moved off this worker (perhaps while it was away)
                if p in leading.parts:
                    leading.step_down(p)
                    claimed = True
                self.fetching.stop(p)
                rs.drop(p)
                continue
            handing = leading.handing_over(p, state, now)
            is_leader = (state.leader == self.me and self.membership.won.get(name) == state.epoch
                         and not self.membership.fenced() and not handing)
            if state.leader is None or state.leader not in snap.workers:
                self._down_since.setdefault(p, now)
            if is_leader:
                led = leading.parts.get(p)
                if led is None or led.epoch != state.epoch:
                    if led is not None:
                        leading.step_down(p)
                    self.fetching.stop(p)
                    leading.become(p, state, now)
                    since = self._down_since.pop(p, None)
                    if since is not None:
                        self.metrics.failover_seconds.observe((now - since) / 1000)
                    claimed = True
                else:
                    leading.update(led, state, now)
                continue
            if p in leading.parts:
                leading.step_down(p)
                claimed = True
            if state.leader is not None and state.leader != self.me and state.leader in snap.workers:
                self._down_since.pop(p, None)
                self.fetching.follow(p, state.leader, state.epoch, now)
            else:
                self.fetching.stop(p)
        if claimed:
            self.worker.heartbeat()

    def gauges(self) -> None:
        self.leading.gauges()
        self.metrics.lost_workers.set(len(self.membership.lost))

    def close(self) -> None:
        for p in list(self.leading.parts):
            self.leading.step_down(p)
        self.membership.stop(revoke=True)
        self.fetching.close()
        self.server.close(0)
        if self.auth is not None:
            self.auth.stop()
