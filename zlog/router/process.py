"""The ingest router process: ROUTER front (producers) + ROUTER back (storage workers).

It holds no data and no per-record state. It resolves a message's route (an explicit partition,
or FNV-1a of a key) to the partition's live owner, forwards the frames untouched with the
producer's identity prepended (``front.py``), and passes the worker's reply back by that identity.

Invariants:
- Bodies are never decoded or re-encoded here (only METADATA, ADMIT and READY/heartbeat bodies are).
- ADMIT keeps one token bucket per tenant (``zlog.tenants.admission``) for every gateway that
  asks this router, so a tenant's ingest rate is one limit however many gateway processes run.
  A native producer's PRODUCE (a CURVE producer key) is charged to the same bucket when it is
  forwarded (``zlog.router.native``), so a producer cannot bypass its tenant's rate.
- Every request either reaches a live owner or is NACKed at once (NO_OWNER, BACKPRESSURE,
  UNKNOWN_PARTITION, or a malformed-frame code); a worker's death NACKs what it had in flight
  with WORKER_LOST, so no producer waits for a reply that cannot come.
- All sends are non-blocking; a full queue (``zmq.Again``) becomes a BACKPRESSURE NACK, and
  replies to vanished producers are dropped and counted.
- Every wake drains all ready messages (bounded per turn for fairness) before sleeping again.
- Replicated (R > 1): the router registers itself in etcd and routes to the leaders etcd names
  (``zlog.router.discovery``), applied the loop turn the watch event arrives; a worker whose
  lease key goes is gone at once (its in-flight requests NACKed WORKER_LOST). etcd out of reach:
  the last view stays, and a partition without a live leader in it is NACKed NO_OWNER.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from typing import TYPE_CHECKING

import zmq

from zlog.config import Config, ConfigError
from zlog.ops.metrics import RouterMetrics, serve
from zlog.ops.runtime import freeze_startup_garbage, on_stop_signals, tune_malloc
from zlog.protocol import bodies, wire
from zlog.protocol.hashing import Partitioner
from zlog.protocol.sockets import send_frames
from zlog.protocol.wire import Command
from zlog.router.front import Front, now_ms
from zlog.router.native import NativeCharges
from zlog.router.routing import RoutingTable
from zlog.security.curve import Authenticator, check_bind, keys_dir, serve_curve
from zlog.tenants.admission import Admission
from zlog.tenants.quotas import LimitsOf

if TYPE_CHECKING:  # replication code is loaded only when R > 1
    from zlog.replication.discovery import View
    from zlog.router.discovery import RouterEtcd

log = logging.getLogger("zlog.router")

DRAIN_PER_TURN = 2048
_CMD_NAMES = {int(c): c.name for c in Command}
_NACK = bytes([Command.NACK])


class Router(Front):
    def __init__(self, cfg: Config, index: int = 0, ctx: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        self.cfg = cfg
        self.index = index
        rc = cfg.router
        self.ctx = ctx or zmq.Context.instance()
        self.table = RoutingTable(cfg.cluster.partitions, heartbeat_ms=rc.heartbeat_ms, liveness=rc.liveness)
        self.partitioner = Partitioner(cfg.cluster.partitions)
        self.metrics = RouterMetrics()
        # With curve, a ZAP thread checks every client key during the handshake (front: gateways and
        # producers, back: workers); without it, every endpoint must be on loopback.
        self.auth: Authenticator | None = None
        if cfg.cluster.curve:
            self.auth = Authenticator(self.ctx, keys_dir(cfg))
            self.auth.start()
        self.front = self._socket(rc.front[index], "front")
        self.back = self._socket(rc.back[index], "back")
        self.stopping = False
        self._counts: dict[tuple[str, str], int] = {}
        self.admission = Admission(cfg.tenants.max_tenants)
        self.limits_of = LimitsOf(cfg.tenants)
        self.native = NativeCharges(self.admission, self.limits_of)
        self._next_heartbeat = 0
        self.etcd: RouterEtcd | None = None
        self.view: View | None = None
        if cfg.storage.replication_factor > 1:
            from zlog.router.discovery import RouterEtcd

            self.etcd = RouterEtcd(cfg, index, self.ctx)

    def _socket(self, endpoint: str, domain: str) -> zmq.Socket[bytes]:
        refusal = check_bind(endpoint, self.cfg.cluster.curve)
        if refusal:
            raise ConfigError(refusal)
        s = self.ctx.socket(zmq.ROUTER)
        if self.cfg.cluster.curve:
            serve_curve(s, self.cfg, domain)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)
        s.setsockopt(zmq.MAXMSGSIZE, wire.MAX_BODY_BYTES + 4096)
        s.setsockopt(zmq.SNDHWM, self.cfg.router.hwm)
        s.setsockopt(zmq.RCVHWM, self.cfg.router.hwm)
        s.bind(endpoint)
        return s

    # -- back: workers --------------------------------------------------------------------

    def on_back(self, frames: list[bytes], now_ms: int) -> None:
        if len(frames) != 7:
            self._count("errors", "malformed_worker_frame")
            return
        worker, reply_to = frames[0], frames[1]
        try:
            msg = wire.decode(frames[2:])
        except wire.MalformedFrame as exc:
            self._count("errors", "malformed_worker_frame")
            log.warning("malformed frame from worker", extra={"code": exc.code, "detail": str(exc)})
            return
        if reply_to:
            self.table.seen(worker, now_ms)
            self.table.settle(worker, (reply_to, frames[4]))
            if self.native.held:
                self.native.settle((reply_to, frames[4]), stored_nothing=frames[3] == _NACK)
            self._count("frames", msg.command.name)
            try:
                send_frames(self.front, [reply_to, *frames[2:]])
            except zmq.ZMQError:
                self._count("errors", "reply_dropped")
            return
        cmd = msg.command
        if cmd is Command.READY or cmd is Command.HEARTBEAT:
            try:
                ready = bodies.parse_ready(msg.body)
            except wire.MalformedFrame as exc:
                self._count("errors", "malformed_worker_frame")
                log.warning("bad READY from worker", extra={"detail": str(exc)})
                return
            known = worker in self.table.workers
            taken = self.table.claim(worker, ready.worker_id, ready.partitions, now_ms,
                                     node=ready.node, pid=ready.pid, metrics_port=ready.metrics_port,
                                     host=ready.host)
            if not known or taken:
                log.info("worker ready", extra={"worker": ready.worker_id, "pid": ready.pid,
                                                 "partitions": list(ready.partitions), "took": taken})
            self._count("frames", cmd.name)
        elif cmd is Command.DISCONNECT:
            self._count("frames", cmd.name)
            self._worker_gone(worker, "disconnect")
        else:
            self._count("errors", "unexpected_worker_command")

    def _worker_gone(self, identity: bytes, why: str) -> None:
        w = self.table.remove(identity)
        if w is None:
            return
        log.warning("worker gone", extra={"worker": w.worker_id, "pid": w.pid, "why": why,
                                          "inflight": len(w.inflight), "partitions": list(w.partitions)})
        self.native.forget(w.inflight)
        for (reply_to, rid), partition in w.inflight.items():
            self._nack(self.front, reply_to, rid, "WORKER_LOST",
                       f"storage worker {w.worker_id} stopped with the request in flight",
                       retry=True, partition=partition)

    # -- etcd (replicated clusters) -------------------------------------------------------

    def follow(self, view: View | None) -> None:
        """A new view of etcd: workers whose lease went are gone, leaders are etcd's."""
        from zlog.replication.discovery import lost_workers

        if view is None or view is self.view:
            return
        before, self.view = self.view, view
        for wid in lost_workers(before, view):
            ident = self.table.identity_of(wid)
            if ident is not None:
                self._worker_gone(ident, "lease expired")
        changed = self.table.follow(view.leaders(self.table.partitions))
        if changed:
            log.info("leaders from etcd", extra={"revision": view.revision,
                                                 "leaders": {p: self.table.leaders[p] for p in changed}
                                                 if self.table.leaders else {}})

    def metadata(self, now_ms: int) -> dict[str, object]:
        body = self.table.snapshot(now_ms)
        if self.view is not None:
            body["routers"] = [dataclasses.asdict(self.view.routers[i]) for i in sorted(self.view.routers)]
            body["etcd_revision"] = self.view.revision
        return body

    # -- loop -----------------------------------------------------------------------------

    def housekeeping(self, now_ms: int) -> None:
        for ident in self.table.expired(now_ms):
            self._worker_gone(ident, "heartbeat timeout")
        if now_ms >= self._next_heartbeat:
            self._next_heartbeat = now_ms + self.cfg.router.heartbeat_ms
            hb = wire.encode(Command.HEARTBEAT, 0)
            for ident in list(self.table.workers):
                try:
                    send_frames(self.back, [ident, b"", *hb])
                except zmq.Again:
                    pass  # the worker's queue is full of real traffic, which counts as liveness too
                except zmq.ZMQError:
                    self._worker_gone(ident, "unreachable")
        self._flush_metrics()

    def _flush_metrics(self) -> None:
        m = self.metrics
        for (kind, label), n in self._counts.items():
            if kind == "frames":
                m.frames.labels(command=label).inc(n)
            else:
                m.errors.labels(kind=label).inc(n)
        self._counts.clear()
        for (tenant, code), n in self.admission.refused.items():
            m.tenant_refused.labels(tenant=tenant, code=code).inc(n)
        self.admission.refused.clear()
        m.inflight.set(self.table.inflight_count())
        m.workers_alive.set(self.table.alive_count())
        m.partitions_owned.set(self.table.owned_count())
        if self.etcd is not None:
            self.etcd.flush_metrics(m, self.view)

    def stop(self) -> None:
        """Leave the loop after this turn (called from a signal handler)."""
        self.stopping = True

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        front, back = self.front, self.back
        wake = None
        if self.etcd is not None:
            wake = self.etcd.wake
            poller.register(wake, zmq.POLLIN)
            self.etcd.start()
        hb = self.cfg.router.heartbeat_ms
        while not self.stopping:
            events = dict(poller.poll(min(hb, 250)))
            now = now_ms()
            if wake is not None and wake in events and self.etcd is not None:
                self.follow(self.etcd.take())
            # Workers first: replies free in-flight room and READYs create owners.
            if back in events:
                for _ in range(DRAIN_PER_TURN):
                    try:
                        self.on_back(back.recv_multipart(zmq.NOBLOCK), now)
                    except zmq.Again:
                        break
            if front in events:
                if self.auth is not None:
                    self._drain_front_curve()
                else:
                    for _ in range(DRAIN_PER_TURN):
                        try:
                            self.on_front(front.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
            if now >= self._next_heartbeat or not events:
                self.housekeeping(now)
        self.close()

    def _drain_front_curve(self) -> None:
        # Frames (copy=False) carry the ZAP User-Id of the connection they came on.
        for _ in range(DRAIN_PER_TURN):
            try:
                parts = self.front.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            user = parts[-1].get("User-Id") if len(parts) > 1 else ""
            bound = user[len("tenant:"):].encode() if isinstance(user, str) and user.startswith("tenant:") else None
            self.on_front([bytes(f.buffer) for f in parts], bound)

    def reload_keys(self) -> None:
        """SIGHUP: re-read the accepted client keys (new connections are checked against them)."""
        if self.auth is not None:
            log.info("client keys reloaded", extra={"keys": self.auth.reload()})

    def close(self) -> None:
        # In-flight requests are answered by their workers via other routers or time out at the
        # producer; the router holds nothing that needs flushing.
        if self.etcd is not None:
            self.etcd.close()
        self.front.close(0)
        self.back.close(0)
        if self.auth is not None:
            self.auth.stop()


def run(cfg: Config, index: int = 0) -> int:
    """Run router number ``index`` (it binds ``router.front[index]`` and ``router.back[index]``)."""
    from zlog.ops.logs import setup_logging

    setup_logging(cfg.log, "router", router=index)
    if not 0 <= index < min(len(cfg.router.front), len(cfg.router.back)):
        log.error("no such router index", extra={"index": index})
        return 2
    tune_malloc()
    try:
        router = Router(cfg, index)
    except (ConfigError, ValueError) as exc:
        log.error("router refuses to start", extra={"reason": str(exc)})
        return 2
    signal.signal(signal.SIGHUP, lambda *_: router.reload_keys())
    serve(cfg.router.metrics_port + index, router.metrics.registry)
    freeze_startup_garbage()
    on_stop_signals(router.stop)
    log.info("router started", extra={"front": cfg.router.front[index], "back": cfg.router.back[index],
                                       "partitions": cfg.cluster.partitions, "pid": os.getpid(),
                                       "metrics_port": cfg.router.metrics_port + index})
    router.run()
    log.info("router stopped")
    return 0
