"""The replication shell of a storage worker: roles from etcd, the replication sockets, hooks.

``zlog.worker.process`` calls it at a few points (and only when R > 1): before staging a batch
(``check_produce``), before answering a PRODUCE (``hold``), after each group commit
(``after_commit``), for reads (``view``, ``describe``), for the READY claim (``led``), on its
sockets' events and on every loop turn (``tick``).

Invariants:
- This worker leads partition p in epoch e only while etcd says so, the epoch was won by this
  process (``Membership.won``) and its lease is safe (not fenced); it claims p in READY only
  then, and every held acknowledgement is NACKed the moment any of that stops being true.
- It follows p only from the leader etcd names, in that leader's epoch.
- The partitions it holds are those etcd lists it among the replicas of (a reassignment adds
  and removes them while it runs; ``zlog.replication.moves``), plus, before etcd knows a
  partition, the ones placement gives it. A partition it is removed from is no longer followed
  or led; its files stay until the operator removes them.
- Every read of a replicated partition is bounded by the high watermark (``view``).
- Malformed replication messages are counted and dropped; nothing here raises into the loop.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import zmq

from zlog.config import Config, ConfigError
from zlog.protocol import bodies
from zlog.replication import messages as rm
from zlog.replication.control import handoff_target, partition_name, replicas_of
from zlog.replication.coordination import Coordinator, PartitionState, WorkerInfo, call_timeout
from zlog.replication.epochs import EpochCache, truncation_offset
from zlog.replication.etcd_server import local_endpoints
from zlog.replication.follower import Following
from zlog.replication.isr import LeaderState
from zlog.replication.leader import Led, Waiter
from zlog.replication.logfiles import Diverged, apply, truncate
from zlog.replication.membership import Membership
from zlog.replication.metrics import ReplicationMetrics
from zlog.replication.view import BoundedLog
from zlog.security.curve import Authenticator, check_bind, keys_dir, serve_curve
from zlog.storage import PartitionLog
from zlog.storage.sync import sync_partitions

log = logging.getLogger("zlog.replication")


def _ms() -> float:
    return time.monotonic() * 1000


def replica_partitions(cfg: Config, worker: int) -> list[int]:
    """The partitions worker ``worker`` holds a replica of."""
    c = cfg.cluster
    return [p for p in range(c.partitions)
            if worker in replicas_of(p, c.partitions, c.workers, cfg.storage.replication_factor)]


class ReplicaManager:
    def __init__(self, worker: Any, cfg: Config) -> None:
        self.worker = worker
        self.cfg = cfg
        self.me: int = worker.worker_id
        c = cfg.cluster
        self.partitions = replica_partitions(cfg, self.me)
        self.names = {p: partition_name(p) for p in self.partitions}
        self.by_name = {n: p for p, n in self.names.items()}
        self.endpoint = f"tcp://{c.host}:{c.replication_port_base + self.me}"
        self.ctx: zmq.Context[zmq.Socket[bytes]] = worker.ctx
        refusal = check_bind(self.endpoint, cfg.cluster.curve)
        if refusal:
            raise ConfigError(refusal)
        self.server = self.ctx.socket(zmq.ROUTER)
        self.server.setsockopt(zmq.LINGER, 0)
        self.auth: Authenticator | None = None
        if cfg.cluster.curve:  # followers are workers: the ZAP thread admits worker keys only
            self.auth = Authenticator(self.ctx, keys_dir(cfg))
            self.auth.start()
            serve_curve(self.server, cfg, "replica")
        self.server.bind(self.endpoint)
        self.links: dict[int, tuple[str, zmq.Socket[bytes]]] = {}
        self.metrics = ReplicationMetrics(worker.metrics.registry)
        self.led_parts: dict[int, Led] = {}
        self.following: dict[int, Following] = {}
        self.views: dict[int, BoundedLog] = {}
        self.caches: dict[int, EpochCache] = {}
        self.states: dict[int, PartitionState] = {}
        self.poller: zmq.Poller | None = None
        self._rid = 0
        self._owed: list[int] = []
        self._refetch: list[Following] = []
        self._handing: dict[int, float] = {}  # partitions whose leadership this worker is giving away
        self._last_handoff_check = 0.0
        self._version = 0
        self._fenced = True
        self._down_since: dict[int, float] = {}
        coord = Coordinator(local_endpoints(cfg), cfg.cluster.etcd_prefix, call_timeout(c.lease_ttl_ms))
        info = WorkerInfo(self.me, c.host, os.getpid(), self.endpoint, cfg.worker_metrics_port(self.me))
        mine = {self.names[p]: replicas_of(p, c.partitions, c.workers, cfg.storage.replication_factor)
                for p in self.partitions}
        self.membership = Membership(coord, info, mine, c.lease_ttl_ms)
        self.membership.start()

    # -- files ----------------------------------------------------------------------------

    def epoch_path(self, p: int) -> Path:
        return Path(self.worker.storage_dir) / "replication" / f"{self.names[p]}.epochs"

    def cache(self, p: int) -> EpochCache:
        c = self.caches.get(p)
        if c is None:
            c = self.caches[p] = EpochCache.load(self.epoch_path(p))
        return c

    def view(self, p: int) -> BoundedLog:
        v = self.views.get(p)
        plog = self.worker.logs[p]
        if v is None:
            v = self.views[p] = BoundedLog(plog, 0)
        v.plog = plog
        return v

    # -- hooks: produce ---------------------------------------------------------------------

    def check_produce(self, p: int, acks: str) -> bodies.Nack | None:
        led = self.led_parts.get(p)
        if led is None or self.membership.fenced():
            return bodies.Nack("NOT_OWNER", f"worker {self.me} does not lead partition {p} now", True, p)
        if acks == "all" and len(led.state.isr) < self.cfg.min_isr:
            return bodies.Nack("NOT_ENOUGH_REPLICAS",
                               f"partition {p} has {len(led.state.isr)} in-sync replicas, acks=all needs "
                               f"{self.cfg.min_isr}", True, p)
        return None

    def hold(self, reply: Any) -> bool:
        """True when the reply must wait for the high watermark (it is answered later)."""
        if self.membership.fenced():
            self._fail(reply, "the leader's etcd lease could not be renewed")
            return False
        if reply.acks != "all":
            return False
        w = Waiter(reply)
        for r in reply.results:
            if isinstance(r, bodies.Ack) and r.offset >= 0:
                led = self.led_parts.get(r.partition)
                end = r.offset + r.count
                if led is None:
                    self._fail(reply, "leadership moved before the write was replicated")
                    return False
                if led.state.hw < end:
                    w.outstanding += 1
                    led.waiting.append((end, w))
        return w.outstanding > 0

    def _fail(self, reply: Any, why: str) -> None:
        reply.results = [bodies.Nack("NOT_OWNER", why, True, r.partition) if isinstance(r, bodies.Ack) else r
                         for r in reply.results]

    def after_commit(self, parts: set[int]) -> None:
        now = _ms()
        for p in parts:
            led = self.led_parts.get(p)
            if led is None:
                continue
            if led.state.appended(self.worker.logs[p].next_offset):
                self._advanced(led)
            parked, led.parked = led.parked, []
            for x in parked:
                self._serve(x.ident, x.request, now)

    def _advanced(self, led: Led) -> None:
        self.view(led.partition).hw = led.state.hw
        for w in led.release():
            if not w.failed:
                self.worker.answer(w.reply)

    # -- hooks: reads and claims ------------------------------------------------------------

    def led(self) -> tuple[int, ...]:
        if self.membership.fenced():
            return ()
        return tuple(sorted(self.led_parts))

    def describe(self, p: int) -> dict[str, Any]:
        st = self.states.get(p)
        led = self.led_parts.get(p)
        return {"leader": st.leader if st else None, "replicas": list(st.replicas) if st else [],
                "isr": sorted(led.state.isr) if led else (list(st.isr) if st else []),
                "leader_epoch": st.epoch if st else -1, "high_watermark": self.view(p).next_offset,
                "reassigning": bool(st and st.target), "adding": list(st.adding) if st else [],
                "removing": list(st.removing) if st else [],
                "draining": sorted(snap.drains) if (snap := self.membership.snapshot) else []}

    # -- sockets ----------------------------------------------------------------------------

    def sockets(self) -> list[zmq.Socket[bytes]]:
        return [self.server, *(s for _, s in self.links.values())]

    def on_events(self, socks: list[zmq.Socket[bytes]]) -> None:
        now = _ms()
        # followed partitions written this turn, fetched again after one sync
        self._owed, self._refetch = [], []
        for sock in socks:
            for _ in range(1024):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    if sock is self.server and len(frames) == 2:
                        self._serve(frames[0], rm.parse_request(frames[1]), now)
                    elif sock is not self.server and len(frames) == 1:
                        self._on_reply(rm.parse_reply(frames[0]), now)
                    else:
                        self.metrics.errors.labels(kind="malformed").inc()
                except rm.BadMessage:
                    self.metrics.errors.labels(kind="malformed").inc()
        if self._owed:
            # One filesystem sync for every followed partition written this turn (group commit).
            t0 = time.perf_counter()
            logs = [self.worker.logs[p] for p in self._owed]
            try:
                sync_partitions(logs)
            except OSError as exc:
                log.critical("fsync failed; exiting before the leader counts these records",
                             extra={"detail": str(exc)})
                os._exit(70)
            for plog in logs:
                plog.synced(time.perf_counter() - t0)
        for f in self._refetch:
            self._ask(f, now)
        self._owed, self._refetch = [], []

    def _send_server(self, ident: bytes, body: bytes) -> None:
        try:
            self.server.send_multipart([ident, body], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.metrics.errors.labels(kind="reply_dropped").inc()

    def _serve(self, ident: bytes, req: rm.Request, now: float) -> None:
        p = self.by_name.get(req.partition)
        led = self.led_parts.get(p) if p is not None else None
        if p is None or led is None or self.membership.fenced():
            self._send_server(ident, rm.error_reply(req, "NOT_LEADER", -1))
            return
        plog = self.worker.logs[p]
        if req.kind == "epoch":
            self._send_server(ident, led.answer_epoch(req, plog))
            return
        body, moved = led.answer_fetch(ident, req, plog, now)
        if moved:
            self._advanced(led)
        if body is not None:
            self._send_server(ident, body)

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

    def _ask(self, f: Following, now: float) -> None:
        sock = self._link(f.leader)
        if sock is None:
            return
        self._rid += 1
        req = f.request(self._rid, self.me, self.cache(f.partition).latest_epoch,
                        self.worker.logs[f.partition].next_offset, now)
        try:
            sock.send(rm.request(req), zmq.NOBLOCK)
        except zmq.ZMQError:
            f.inflight = None

    def _on_reply(self, r: rm.Reply, now: float) -> None:
        p = self.by_name.get(r.partition)
        f = self.following.get(p) if p is not None else None
        if f is None or p is None or r.id != f.inflight:
            return
        f.inflight = None
        if r.error is not None:
            f.refused(r.error, now)
            return
        plog = self.worker.logs[p]
        cache = self.cache(p)
        if r.kind == "epoch":
            cut = truncation_offset(cache, plog.next_offset, (r.epoch, r.end))
            if cut < plog.next_offset:
                log.warning("truncating a divergent tail", extra={"partition": p, "from": plog.next_offset,
                                                                   "to": cut, "leader": f.leader})
                self.metrics.truncated.inc(plog.next_offset - cut)
                self.worker.logs[p] = truncate(plog, cut, self.cfg.storage)
                cache.truncate_from(cut)
                cache.save(self.epoch_path(p))
            f.phase = "fetch"
            self._ask(f, now)
            return
        try:
            changed = False
            for b, epoch in r.batches:
                changed = cache.assign(epoch, b.base) or changed
            if changed:
                cache.save(self.epoch_path(p))
            if apply(plog, [b for b, _ in r.batches], defer_sync=True):
                self._owed.append(p)
        except (Diverged, OSError, ValueError) as exc:
            log.error("replicated batch refused; asking where the epoch ends again",
                      extra={"partition": p, "detail": str(exc)})
            f.phase = "epoch"
            self._ask(f, now)
            return
        f.hw = r.hw
        v = self.view(p)
        v.hw = max(v.hw, min(r.hw, plog.next_offset))
        self.metrics.lag_records.labels(partition=str(p)).set(max(0, r.leo - plog.next_offset))
        self._refetch.append(f)  # after this turn's sync: the fetch offset says "durable"

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
        if fenced and self.led_parts:
            log.warning("lease not renewed in time: no longer acknowledging as leader",
                        extra={"partitions": sorted(self.led_parts)})
            for p in list(self.led_parts):
                self._step_down(p)
            self.worker.heartbeat()
        if any(now - t > 3000 for t in self._handing.values()):
            self._version = -1  # a handoff that did not happen: decide the roles again
        if now - self._last_handoff_check > 500 and m.snapshot is not None:
            self._last_handoff_check = now
            for p, led in list(self.led_parts.items()):
                target = handoff_target(m.snapshot, self.me, led.name, led.epoch)
                if target is not None:
                    log.info("handing leadership over", extra={"partition": p, "to": target, "epoch": led.epoch,
                                                               "drained": self.me in m.snapshot.drains})
                    self._handing[p] = now
                    self._step_down(p)  # stop acknowledging first: never two leaders
                    m.propose_handoff(led.name, led.epoch, target)
                    self.worker.heartbeat()
        for led in self.led_parts.values():
            if led.parked:
                keep = []
                for x in led.parked:
                    if x.deadline_ms <= now:
                        self._send_server(x.ident, rm.fetch_reply(x.request, led.state.hw,
                                                                  self.worker.logs[led.partition].next_offset, [], []))
                    else:
                        keep.append(x)
                led.parked = keep
            want = led.state.wanted_isr(now)
            if want != led.state.isr and (want != led.proposed or now - led.proposed_ms > 1000):
                led.proposed, led.proposed_ms = want, now
                m.propose_isr(led.name, led.epoch, want)
        for f in self.following.values():
            if f.due(now):
                self._ask(f, now)

    def _adopt(self, name: str) -> None:
        """A replica a reassignment added to this worker: open (or create) its log."""
        try:
            p = int(name)
        except ValueError:
            return
        if not 0 <= p < self.cfg.cluster.partitions:
            return
        if p not in self.worker.logs:
            self.worker.logs[p] = PartitionLog.open(Path(self.worker.storage_dir) / name, self.cfg.storage)
        log.info("replica added to this worker", extra={"partition": p})
        self.partitions.append(p)
        self.names[p] = name
        self.by_name[name] = p

    def _reconcile(self, now: float) -> None:
        snap = self.membership.snapshot
        if snap is None:
            return
        for name, (st, _) in sorted(snap.partitions.items()):
            if self.me in st.replicas and name not in self.by_name:
                self._adopt(name)
        claimed = False
        for p in self.partitions:
            name = self.names[p]
            entry = snap.partitions.get(name)
            if entry is None:
                continue
            state = entry[0]
            self.states[p] = state
            if self.me not in state.replicas:  # moved off this worker
                if p in self.led_parts:
                    self._step_down(p)
                    claimed = True
                self.following.pop(p, None)
                continue
            handing = self._handing.get(p)
            if handing is not None and (state.leader != self.me or now - handing > 3000):
                del self._handing[p]  # done (or the transaction lost: lead again)
                handing = None
            leading = (state.leader == self.me and self.membership.won.get(name) == state.epoch
                       and not self.membership.fenced() and handing is None)
            if state.leader is None or state.leader not in snap.workers:
                self._down_since.setdefault(p, now)
            if leading:
                led = self.led_parts.get(p)
                if led is None or led.epoch != state.epoch:
                    if led is not None:
                        self._step_down(p)
                    self.following.pop(p, None)
                    self._become_leader(p, state, now)
                    claimed = True
                    continue
                moved = False
                if led.state.replicas != state.replicas:  # a reassignment added or removed one
                    moved = led.state.set_replicas(state.replicas, now)
                if frozenset(state.isr) | {self.me} != led.state.isr:
                    grew = len(state.isr) > len(led.state.isr)
                    (self.metrics.isr_expands if grew else self.metrics.isr_shrinks).inc()
                    moved = led.state.set_isr(frozenset(state.isr)) or moved
                if moved:
                    self._advanced(led)
                continue
            if p in self.led_parts:
                self._step_down(p)
                claimed = True
            if state.leader is not None and state.leader != self.me and state.leader in snap.workers:
                self._down_since.pop(p, None)
                f = self.following.get(p)
                if f is None or f.leader != state.leader or f.epoch != state.epoch:
                    f = self.following[p] = Following(p, name, state.leader, state.epoch)
                    self._ask(f, now)
            else:
                self.following.pop(p, None)
        if claimed:
            self.worker.heartbeat()

    def _become_leader(self, p: int, state: PartitionState, now: float) -> None:
        plog = self.worker.logs[p]
        cache = self.cache(p)
        if cache.assign(state.epoch, plog.next_offset):
            cache.save(self.epoch_path(p))
        view = self.view(p)
        st = LeaderState(self.me, state.replicas, frozenset(state.isr), plog.next_offset, plog.next_offset,
                         self.cfg.storage.replica_lag_ms, now, hw=min(view.hw, plog.next_offset))
        self.led_parts[p] = Led(p, self.names[p], state.epoch, st, cache)
        view.hw = st.hw
        self.metrics.elections.inc()
        since = self._down_since.pop(p, None)
        if since is not None:
            self.metrics.failover_seconds.observe((now - since) / 1000)
        log.info("leading partition", extra={"partition": p, "epoch": state.epoch, "isr": sorted(st.isr),
                                               "log_end": plog.next_offset, "high_watermark": st.hw})

    def _step_down(self, p: int) -> None:
        led = self.led_parts.pop(p, None)
        if led is None:
            return
        log.info("no longer leading partition", extra={"partition": p, "epoch": led.epoch})
        for w in led.abandon():
            self._fail(w.reply, f"worker {self.me} stopped leading partition {p} before the write was replicated")
            self.worker.answer(w.reply)

    def gauges(self) -> None:
        m = self.metrics
        m.under_replicated.set(sum(1 for led in self.led_parts.values()
                                   if len(led.state.isr) < len(led.state.replicas)))
        m.leading.set(len(self.led_parts))
        for led in self.led_parts.values():
            for r in led.state.followers:
                m.follower_lag.labels(partition=str(led.partition), replica=str(r)).set(led.state.lag(r))

    def close(self) -> None:
        for p in list(self.led_parts):
            self._step_down(p)
        self.membership.stop(revoke=True)
        for _, s in self.links.values():
            s.close(0)
        self.server.close(0)
        if self.auth is not None:
            self.auth.stop()
