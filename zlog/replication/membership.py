"""The worker's coordination thread: its lease, its etcd snapshot, its proposals.

etcd is reached over blocking HTTP, so it runs off the worker's loop; the loop reads what this
thread publishes (``snapshot``, ``version``, ``safe_until``) and hands it ISR changes
(``propose_isr``). Plain attribute reads and writes of whole objects are atomic in CPython,
which is all the sharing there is.

Invariants:
- ``safe_until`` (monotonic seconds) is when this worker's lease could first expire, minus a
  third of the TTL: the moment of the last keepalive *request* plus two thirds of the TTL. etcd
  counts the TTL from when it received the keepalive, which is later, so once
  ``time.monotonic() > safe_until`` the worker stops acknowledging before any other worker can
  have been elected in its place (fencing).
- ``won`` holds the epochs this process itself obtained by a successful transaction; a
  leadership in etcd that is not in ``won`` is not acted on (see ``control.plan``).
- ``lost`` (the workers gone longer than ``dead_after_ms``, ``absence.Absences``) is counted by
  every worker's thread from its own snapshots; only the controller acts on it.
- Every etcd failure is logged (once per change of state) and retried on the next turn; the
  thread never dies of one.
- A turn runs at once when a watch of the same keys sees a change (``zlog.replication.watch``):
  a leader's lease key going, a new epoch, an ISR change wake every worker within one watch
  event. Otherwise it runs when the lease is due for renewal (every third of the TTL), when the
  loop hands it a proposal, and at least every ``poll_s`` (1 s; 0.2 s while etcd fails): the
  poll is what remains when the watch is broken, and each turn is an etcd read, so a quiet
  cluster costs etcd about two requests per worker per second, not six.
- Whatever the loop must act on soon (a new ``version``, or the lease safe again after being
  fenced) also makes ``wake_fd`` readable, so the loop, polling it with its sockets, acts at
  once instead of at its next tick; the loop empties it with ``woken``.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import replace

from zlog.replication.absence import Absences
from zlog.replication.control import Proposal, isr_change, plan
from zlog.replication.coordination import CoordinationError, Coordinator, Snapshot, WorkerInfo
from zlog.replication.metrics import ReplicationMetrics
from zlog.replication.moves import completions, controller, reassignments
from zlog.replication.watch import Discovery

log = logging.getLogger("zlog.replication")


class Membership(threading.Thread):
    def __init__(self, coord: Coordinator, info: WorkerInfo, mine: dict[str, tuple[int, ...]],
                 ttl_ms: int, poll_s: float = 1.0, dead_after_ms: int = 300_000,
                 metrics: ReplicationMetrics | None = None) -> None:
        super().__init__(name="zlog-membership", daemon=True)
        self.coord = coord
        self.info = info
        self.mine = mine
        self.ttl_s = max(1, round(ttl_ms / 1000))
        self.poll_s = poll_s
        self.lease: int | None = None
        self.safe_until = 0.0
        self.snapshot: Snapshot | None = None
        self.version = 0
        self.won: dict[str, int] = {}
        self.elections = 0
        self.absences = Absences(dead_after_ms)
        self.lost: frozenset[int] = frozenset()
        self.metrics = metrics
        self._isr: queue.SimpleQueue[tuple[str, int, frozenset[int]]] = queue.SimpleQueue()
        self._handoffs: queue.SimpleQueue[tuple[str, int, int]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._halt = threading.Event()
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)
        self._last_keepalive = 0.0
        self._failing = False
        self._born = time.monotonic()

    # -- called from the worker loop ------------------------------------------------------

    def fenced(self) -> bool:
        return time.monotonic() > self.safe_until

    def woken(self) -> None:
        """Empty ``wake_fd`` (the loop saw it readable)."""
        try:
            while os.read(self.wake_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def _signal(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # full: the loop has a wake-up pending anyway

    def propose_isr(self, name: str, epoch: int, isr: frozenset[int]) -> None:
        self._isr.put((name, epoch, isr))
        self._wake.set()

    def propose_handoff(self, name: str, epoch: int, target: int) -> None:
        """Leadership of ``name`` to ``target`` (the caller already stopped acknowledging)."""
        self._handoffs.put((name, epoch, target))
        self._wake.set()

    def stop(self, revoke: bool = True) -> None:
        """Stop; revoking the lease lets the other replicas elect a leader at once."""
        self._halt.set()
        self._wake.set()
        self.join(timeout=5)
        if revoke and self.lease is not None:
            try:
                self.coord.revoke(self.lease)
            except CoordinationError:
                pass
        if not self.is_alive():  # (a thread still running may yet write to it)
            os.close(self._wake_w)
            os.close(self.wake_fd)

    # -- the thread -----------------------------------------------------------------------

    def run(self) -> None:
        watch = Discovery(self.coord.endpoints, self.coord.prefix, lambda _: self._wake.set(),
                          timeout_s=self.coord.timeout_s, name="zlog-membership-watch")
        watch.start()
        try:
            while not self._halt.is_set():
                try:
                    self._turn()
                    if self._failing:
                        log.info("etcd reachable again", extra={"worker": self.info.id})
                        self._failing = False
                except CoordinationError as exc:
                    if not self._failing:
                        log.warning("etcd unreachable", extra={"worker": self.info.id, "detail": str(exc)})
                        self._failing = True
                renew_in = self._last_keepalive + self.ttl_s / 3 - time.monotonic()
                self._wake.wait(max(0.01, min(0.2 if self._failing else self.poll_s, renew_in)))
                self._wake.clear()
        finally:
            watch.stop()

    def _keepalive(self) -> None:
        now = time.monotonic()
        if self.lease is not None and now - self._last_keepalive < self.ttl_s / 3:
            return
        if self.lease is not None and self.coord.keepalive(self.lease) > 0:
            fenced = self.fenced()
            self._last_keepalive = now
            self.safe_until = now + self.ttl_s * 2 / 3
            if fenced:
                self._signal()  # safe again: the loop may lead again
            return
        if self.lease is not None:
            log.warning("lease expired; registering again", extra={"worker": self.info.id})
        lease = self.coord.grant(self.ttl_s)
        self.coord.register(self.info, lease)
        self.lease = lease
        self._last_keepalive = now
        self.safe_until = now + self.ttl_s * 2 / 3

    def _turn(self) -> None:
        self._keepalive()
        snap = self.coord.snapshot()
        eager = time.monotonic() - self._born > max(5.0, 2 * self.ttl_s)
        proposals: list[Proposal] = plan(snap, self.info.id, self.mine, self.won, eager)
        self.lost = self.absences.observe(snap, time.monotonic() * 1000)
        if eager and controller(snap) == self.info.id:  # the one worker that moves replicas
            proposals += completions(snap) + reassignments(snap, lost=self.lost)
        while True:
            try:
                name, epoch, isr = self._isr.get_nowait()
            except queue.Empty:
                break
            p = isr_change(snap, self.info.id, name, epoch, isr)
            if p is not None:
                proposals.append(p)
        while True:
            try:
                name, epoch, target = self._handoffs.get_nowait()
            except queue.Empty:
                break
            cur = snap.partitions.get(name)
            if cur is not None and cur[0].leader == self.info.id and cur[0].epoch == epoch:
                s = cur[0]
                proposals.append(Proposal(name, replace(s, leader=target, epoch=epoch + 1), cur[1], "handoff"))
        changed = False
        for p in proposals:
            if self.coord.cas(p.name, p.state, p.revision):
                changed = True
                if p.state.leader == self.info.id:
                    self.won[p.name] = p.state.epoch
                if p.why in ("elect", "reclaim", "create"):
                    self.elections += 1
                if self.metrics is not None and p.why in ("reassign", "rereplicate", "complete"):
                    self.metrics.reassignments.labels(step=p.why).inc()
                log.info("partition state changed", extra={"partition": p.name, "why": p.why,
                                                           "leader": p.state.leader, "isr": list(p.state.isr),
                                                           "replicas": list(p.state.replicas),
                                                           "target": list(p.state.target),
                                                           "epoch": p.state.epoch})
        if changed:
            snap = self.coord.snapshot()
        if self.snapshot is None or snap.revision != self.snapshot.revision:
            self.snapshot = snap
            self.version += 1
            self._signal()
