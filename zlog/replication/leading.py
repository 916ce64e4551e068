"""The partitions a storage worker leads now: produce checks, held acks, followers' fetches, ISR.

Invariants:
- ``parts`` holds a partition only while this worker leads it in etcd's current epoch with a
  safe lease (the manager decides; ``become`` and ``step_down`` are the only changes); it leads
  every log of it (each tenant's) at once, with one ISR (``logset.PartitionLead``).
- An acks=all reply is held until the high watermark passes each of its batches; stepping down
  NACKs (retryable) every reply still held, once.
- A follower's fetch is answered only by the leader of that partition in that epoch and while
  the lease is safe; anything else gets ``NOT_LEADER``.
- Handing leadership over stops acknowledging *before* the handoff is proposed: never two
  leaders acknowledging at once.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from zlog.config import Config
from zlog.protocol import bodies
from zlog.replication import messages as rm
from zlog.replication.control import handoff_target
from zlog.replication.coordination import PartitionState
from zlog.replication.isr import LeaderState
from zlog.replication.leader import Led, Waiter
from zlog.replication.logset import LogKey, PartitionLead, log_name
from zlog.replication.membership import Membership
from zlog.replication.metrics import ReplicationMetrics
from zlog.replication.replicas import Replicas

log = logging.getLogger("zlog.replication")

HANDOFF_GIVE_UP_MS = 3000  # a handoff etcd has not shown by then lost its transaction: lead again


class Leading:
    def __init__(self, worker: Any, cfg: Config, replicas: Replicas, membership: Membership,
                 metrics: ReplicationMetrics, server: zmq.Socket[bytes]) -> None:
        self.worker = worker  # zlog.worker.process.StorageWorker
        self.cfg = cfg
        self.replicas = replicas
        self.membership = membership
        self.metrics = metrics
        self.server = server
        self.me: int = worker.worker_id
        self.parts: dict[int, PartitionLead] = {}
        self.handing: dict[int, float] = {}  # partitions whose leadership this worker is giving away
        self._last_handoff_check = 0.0

    # -- produce --------------------------------------------------------------------------

    def check_produce(self, p: int, acks: str) -> bodies.Nack | None:
        led = self.parts.get(p)
        if led is None or self.membership.fenced():
            return bodies.Nack("NOT_OWNER", f"worker {self.me} does not lead partition {p} now", True, p)
        if acks == "all" and len(led.isr) < self.cfg.min_isr:
            return bodies.Nack("NOT_ENOUGH_REPLICAS",
                               f"partition {p} has {len(led.isr)} in-sync replicas, acks=all needs "
                               f"{self.cfg.min_isr}", True, p)
        return None

    def hold(self, reply: Any) -> bool:
        """True when the reply must wait for the high watermark (it is answered later)."""
        if self.membership.fenced():
            fail(reply, "the leader's etcd lease could not be renewed")
            return False
        if reply.acks != "all":
            return False
        w = Waiter(reply)
        for i, r in enumerate(reply.results):
            if isinstance(r, bodies.Ack) and r.offset >= 0:
                lead = self.parts.get(r.partition)  # the batch waits for its own log's high watermark
                led = lead.logs.get(log_name(reply.tenants[i], r.partition)) if lead is not None else None
                end = r.offset + r.count
                if led is None:
                    fail(reply, "leadership moved before the write was replicated")
                    return False
                if led.state.hw < end:
                    w.outstanding += 1
                    led.waiting.append((end, w))
        return w.outstanding > 0

    def after_commit(self, keys: set[LogKey], now: float) -> None:
        for tenant, p in keys:
            lead = self.parts.get(p)
            led = lead.logs.get(log_name(tenant, p)) if lead is not None else None
            if led is None:
                continue
            if led.state.appended(self.replicas.log(led.name).next_offset):
                self.advanced(led)
            parked, led.parked = led.parked, []
            for x in parked:
                self.serve(x.ident, x.request, now)

    def advanced(self, led: Led) -> None:
        self.replicas.view(led.name).hw = led.state.hw
        for w in led.release():
            if not w.failed:
                self.worker.answer(w.reply)

    # -- followers' requests --------------------------------------------------------------

    def send(self, ident: bytes, body: bytes) -> None:
        try:
            self.server.send_multipart([ident, body], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.metrics.errors.labels(kind="reply_dropped").inc()

    def serve(self, ident: bytes, req: rm.Request, now: float) -> None:
        key = self.replicas.keys.get(req.partition)  # a log's name: "<p>", or "<tenant>/<p>"
        lead = self.parts.get(key[1]) if key is not None else None
        led = lead.logs.get(req.partition) if lead is not None else None
        if led is None or self.membership.fenced():
            self.send(ident, rm.error_reply(req, "NOT_LEADER", -1))
            return
        plog = self.replicas.log(req.partition)
        if req.kind == "epoch":
            self.send(ident, led.answer_epoch(req, plog))
            return
        body, moved = led.answer_fetch(ident, req, plog, now)
        if moved:
            self.advanced(led)
        if body is not None:
            self.send(ident, body)

    # -- every turn -----------------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """Handoffs, expired long polls, ISR proposals. True when a claim changed."""
        m = self.membership
        claimed = False
        if now - self._last_handoff_check > 500 and m.snapshot is not None:
            self._last_handoff_check = now
            for p, lead in list(self.parts.items()):
                target = handoff_target(m.snapshot, self.me, lead.name, lead.epoch)
                if target is not None:
                    log.info("handing leadership over", extra={"partition": p, "to": target, "epoch": lead.epoch,
                                                               "drained": self.me in m.snapshot.drains})
                    self.handing[p] = now
                    self.step_down(p)  # stop acknowledging first: never two leaders
                    m.propose_handoff(lead.name, lead.epoch, target)
                    claimed = True
        for lead in self.parts.values():
            for led in lead.logs.values():
                if led.parked:
                    self._expire_parked(led, now)
            want = lead.wanted_isr(now)
            if want != lead.isr and (want != lead.proposed or now - lead.proposed_ms > 1000):
                lead.proposed, lead.proposed_ms = want, now
                m.propose_isr(lead.name, lead.epoch, want)
        return claimed

    def _expire_parked(self, led: Led, now: float) -> None:
        keep = []
        for x in led.parked:
            if x.deadline_ms <= now:
                self.send(x.ident, rm.fetch_reply(x.request, led.state.hw, self.replicas.log(led.name).next_offset,
                                                  [], []))
            else:
                keep.append(x)
        led.parked = keep

    def handoff_stale(self, now: float) -> bool:
        return any(now - t > HANDOFF_GIVE_UP_MS for t in self.handing.values())

    def handing_over(self, p: int, state: PartitionState, now: float) -> bool:
        """Whether a handoff of ``p`` is still under way (done once etcd names another leader)."""
        since = self.handing.get(p)
        if since is not None and (state.leader != self.me or now - since > HANDOFF_GIVE_UP_MS):
            del self.handing[p]  # done (or the transaction lost: lead again)
            return False
        return since is not None

    # -- roles ----------------------------------------------------------------------------

    def become(self, p: int, state: PartitionState, now: float) -> None:
        """Lead every log of ``p`` in ``state.epoch``: each log's epoch starts at its log end."""
        rs = self.replicas
        lead = PartitionLead(p, rs.names[p], state.epoch)
        for name in rs.log_names[p]:
            plog = rs.log(name)
            cache = rs.cache(name)
            if cache.assign(state.epoch, plog.next_offset):
                cache.save(rs.epoch_path(name))
            view = rs.view(name)
            st = LeaderState(self.me, state.replicas, frozenset(state.isr), plog.next_offset, plog.next_offset,
                             self.cfg.storage.replica_lag_ms, now, hw=min(view.hw, plog.next_offset))
            lead.logs[name] = Led(p, name, state.epoch, st, cache)
            view.hw = st.hw
        self.parts[p] = lead
        st = lead.logs[lead.name].state
        self.metrics.elections.inc()
        log.info("leading partition", extra={"partition": p, "epoch": state.epoch, "isr": sorted(st.isr),
                                               "log_end": st.leo, "high_watermark": st.hw, "logs": len(lead.logs)})

    def update(self, lead: PartitionLead, state: PartitionState, now: float) -> None:
        """etcd changed the replicas or the ISR of a partition this worker still leads."""
        moved: list[Led] = []
        if lead.replicas != state.replicas:  # a reassignment added or removed one
            moved += lead.set_replicas(state.replicas, now)
        if frozenset(state.isr) | {self.me} != lead.isr:
            grew = len(state.isr) > len(lead.isr)
            (self.metrics.isr_expands if grew else self.metrics.isr_shrinks).inc()
            moved += lead.set_isr(frozenset(state.isr))
        for led in moved:
            self.advanced(led)

    def step_down(self, p: int) -> None:
        led = self.parts.pop(p, None)
        if led is None:
            return
        log.info("no longer leading partition", extra={"partition": p, "epoch": led.epoch})
        for w in led.abandon():
            fail(w.reply, f"worker {self.me} stopped leading partition {p} before the write was replicated")
            self.worker.answer(w.reply)

    def gauges(self) -> None:
        m = self.metrics
        m.under_replicated.set(sum(1 for lead in self.parts.values() if len(lead.isr) < len(lead.replicas)))
        m.leading.set(len(self.parts))
        m.reassigning.set(sum(1 for lead in self.parts.values()
                              if (st := self.replicas.states.get(lead.partition)) is not None and st.target))
        for lead in self.parts.values():
            for r in lead.followers():
                m.follower_lag.labels(partition=str(lead.partition), replica=str(r)).set(lead.lag(r))


def fail(reply: Any, why: str) -> None:
    """NACK (retryable) every acknowledgement ``reply`` would have carried."""
    reply.results = [bodies.Nack("NOT_OWNER", why, True, r.partition) if isinstance(r, bodies.Ack) else r
                     for r in reply.results]
