"""The storage worker process: one DEALER per router, and the storage engine of its partitions.

Each loop turn drains every message that is ready, stages all produce batches (``intake.py``),
commits each touched partition once (one write + one fsync: group commit, ``turn.py``), and only
then sends the ACKs.
Reads are served after the commit, from committed data, each bounded by a byte budget so that a
long scan never stalls ingestion for long.

Invariants:
- An ACK is sent only after ``PartitionLog.commit`` returned, i.e. after the fsync the policy
  promises; a failed commit NACKs every batch of that turn for that partition, none is stored.
- The worker is the single writer and offset sequencer of each partition it owns; it refuses
  partitions it does not own (NOT_OWNER) rather than guess.
- Malformed input from any peer is counted and NACKed (or dropped when nobody can be answered);
  it never raises out of the loop (``intake.py`` for messages, here for reads).
- A heartbeat to every router carries the full READY claim, so a restarted router learns the
  owners from the next heartbeat without any handshake.
- Replicated, the worker also connects to every router registered in etcd (``routers/``) that
  ``router.back`` does not list, at the next heartbeat after its etcd read shows it.
- SIGTERM: finish what was received, commit, ACK, say DISCONNECT, fsync and close. A second
  SIGTERM exits at once; the engine recovers on the next start.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zmq

from zlog.config import Config
from zlog.ingest.records import Limits
from zlog.ops.metrics import WorkerMetrics, serve
from zlog.ops.runtime import freeze_startup_garbage, on_stop_signals, tune_malloc
from zlog.protocol import bodies, wire
from zlog.protocol.wire import Command
from zlog.security.curve import client_curve
from zlog.storage import PartitionLog
from zlog.storage.errors import StorageError
from zlog.tenants.quotas import LimitsOf
from zlog.worker.duties import Duties
from zlog.worker.intake import Intake, tenant_key
from zlog.worker.sealing import SealRunner
from zlog.worker.tenant_logs import TenantLogs, room_for_tenants
from zlog.worker.turn import Pending, Reply, commit_turn, reply_frames

if TYPE_CHECKING:
    from zlog.replication.manager import ReplicaManager

log = logging.getLogger("zlog.worker")

DRAIN_PER_TURN = 4096
IDLE_RECOUNT_MS = 100  # a quiet worker behind on its rollups counts duties.IDLE_ROLLUP_BYTES this often


def partition_dir(data_dir: Path, partition: int) -> Path:
    return data_dir / str(partition)


class StorageWorker(Intake, Duties):
    def __init__(self, cfg: Config, worker_id: int, ctx: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        self.ctx = ctx or zmq.Context.instance()
        self.metrics = WorkerMetrics()
        self.limits = Limits.from_config(cfg.gateway, cfg.storage)
        self.curve = client_curve(cfg, "worker")
        self.logs: dict[int, PartitionLog] = {}
        self.repl: ReplicaManager | None = None
        replicated = cfg.storage.replication_factor > 1
        if replicated:  # the replication shell (and its etcd client) is loaded only when used
            from zlog.replication.manager import ReplicaManager, replica_partitions
        # Replicas of one partition on one host must not share files: each worker its own tree.
        self.storage_dir = cfg.cluster.data_dir / f"replica-{worker_id}" if replicated else cfg.cluster.data_dir
        for p in replica_partitions(cfg, worker_id) if replicated else cfg.partitions_of(worker_id):
            t0 = time.monotonic()
            plog = PartitionLog.open(partition_dir(self.storage_dir, p), cfg.storage)
            self.logs[p] = plog
            truncated = int(plog.stats.get("recovery_truncated_bytes", 0))
            self.metrics.recovery_truncated.inc(truncated)
            log.info("partition open", extra={"partition": p, "next_offset": plog.next_offset,
                                               "segments": plog.segment_count, "bytes": plog.size_bytes,
                                               "recovery_truncated_bytes": truncated,
                                               "ms": round((time.monotonic() - t0) * 1000, 1)})
        self.sealer = SealRunner(cfg.seal, lambda: [((t, p), plog) for t, p, plog in self.all_logs()],
                                 self.metrics.registry, cfg.cluster.tenant)
        self.identity = b"w%d-%d" % (worker_id, os.getpid())
        self.ready_body = bodies.ready_body(self._ready(tuple(self.logs)))
        # Other tenants' partitions p of the same owned numbers, opened at start when on disk and
        # on a tenant's first write otherwise (never by a read).
        self.default_tenant = cfg.cluster.tenant
        self.limits_of = LimitsOf(cfg.tenants)
        self.tenant_logs = TenantLogs(cfg, self.storage_dir, tuple(self.logs))
        self._turn_bytes: dict[tuple[str | None, int], int] = {}  # staged this turn, for storage quotas
        self.retention_every_ms = cfg.storage.retention_check_ms
        self.sockets = [self._connect(ep) for ep in cfg.router.back]
        self._backs = set(cfg.router.back)  # router endpoints connected to
        self._routers: set[zmq.Socket[bytes]] = set(self.sockets)
        self._poller: zmq.Poller | None = None
        if replicated:
            self.repl = ReplicaManager(self, cfg)
        self.stopping = False
        self._last_heartbeat = 0.0
        self._last_retention = time.monotonic() * 1000
        self._reads: list[tuple[zmq.Socket[bytes], bytes, wire.Message]] = []

    # -- tenants --------------------------------------------------------------------------

    def log_of(self, tenant: str | None, p: int) -> PartitionLog | None:
        """The log of ``tenant``'s partition ``p`` if this worker has it (None: default tenant)."""
        if tenant is None or tenant == self.default_tenant:
            return self.logs.get(p)
        return self.tenant_logs.get(tenant, p)

    def all_logs(self) -> list[tuple[str, int, PartitionLog]]:
        return [(self.default_tenant, p, plog) for p, plog in self.logs.items()] + list(self.tenant_logs.items())

    def _connect(self, endpoint: str) -> zmq.Socket[bytes]:
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, self.identity)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDHWM, self.cfg.router.hwm)
        s.setsockopt(zmq.RCVHWM, self.cfg.router.hwm)
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.curve is not None:
            self.curve.apply(s)
        s.connect(endpoint)
        return s

    # -- the turn -----------------------------------------------------------------------

    def commit(self, pending: list[Pending]) -> None:
        self._turn_bytes.clear()
        # A follower's writes of this turn share the group commit's sync.
        also = self.repl.take_owed() if self.repl is not None else []
        commit_turn(pending, self.log_of, self.metrics, self.default_tenant, also)

    def answer(self, reply: Reply) -> None:
        """Send what one PRODUCE message is owed, once every batch of it has a result."""
        if reply.reply_to:
            self._send(reply.sock, reply.reply_to, reply_frames(reply))

    # -- reads ----------------------------------------------------------------------------

    def serve_reads(self) -> None:
        from zlog.worker.reads import answer, read_tenant  # the read path's module, off the write path

        reads, self._reads = self._reads, []
        for sock, reply_to, msg in reads:
            p = msg.partition
            plog = self.logs.get(p) if p is not None else None
            if plog is None or p is None:
                self._nack(sock, reply_to, wire.request_id_bytes(msg.request_id), "NOT_OWNER",
                           f"worker {self.worker_id} does not own partition {p}", retry=True, partition=p)
                continue
            self.metrics.requests.labels(command=msg.command.name).inc()
            try:
                # A read names its tenant in the body; a tenant never written here reads as an
                # empty partition (and nothing is created for it: reads never make directories).
                tenant = tenant_key(read_tenant(msg, self.default_tenant), self.default_tenant)
                # A replicated partition's logs are read below their high watermarks only.
                source: Any = (self.repl.view_of(tenant, p) if self.repl is not None
                               else plog if tenant is None else self.tenant_logs.get(tenant, p))
                body: dict[str, Any] = answer(msg, p, source, self.cfg.storage)
                if self.repl is not None and msg.command is Command.STATS:
                    body.update(self.repl.describe(p, tenant))
            except wire.MalformedFrame as exc:
                self._nack(sock, reply_to, wire.request_id_bytes(msg.request_id), exc.code, str(exc),
                           retry=False, partition=p)
                continue
            except StorageError as exc:  # e.g. a sealed block failing its checksum: named, not hidden
                log.error("read failed", extra={"partition": p, "code": exc.code, "detail": str(exc)})
                self._nack(sock, reply_to, wire.request_id_bytes(msg.request_id), exc.code, str(exc),
                           retry=False, partition=p)
                continue
            except Exception as exc:  # a read must never take the writer down
                log.exception("read failed", extra={"partition": p})
                self._nack(sock, reply_to, wire.request_id_bytes(msg.request_id), "INTERNAL",
                           f"{type(exc).__name__}: {exc}", retry=True, partition=p)
                continue
            self._send(sock, reply_to, wire.encode(Command.RESULT, msg.request_id, partition=p, body=body))

    # -- the loop -----------------------------------------------------------------------

    def drain(self, socks: list[zmq.Socket[bytes]]) -> None:
        pending: list[Pending] = []
        replies: list[Reply] = []
        for sock in socks:
            for _ in range(DRAIN_PER_TURN):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.on_message(sock, frames, pending, replies)
        if pending:
            self.commit(pending)
            if self.repl is not None:
                self.repl.after_commit({x.key for x in pending})
        for reply in replies:
            if self.repl is None or not self.repl.hold(reply):
                self.answer(reply)
        if self._reads:
            self.serve_reads()

    def stop(self) -> None:
        """Leave the loop after this turn (called from a signal handler)."""
        self.stopping = True

    def run(self) -> None:
        poller = self._poller = zmq.Poller()
        for s in self.sockets:
            poller.register(s, zmq.POLLIN)
        if self.repl is not None:
            self.repl.poller = poller
            for polled in self.repl.sockets():
                poller.register(polled, zmq.POLLIN)
        routers = self._routers
        self.heartbeat(Command.READY)
        self._last_heartbeat = time.monotonic() * 1000
        tick = tick_ms(self.cfg, replicated=self.repl is not None)
        due = last_message = self._last_heartbeat
        while not self.stopping:
            # Sleep until a message or the next periodic duty: a turn that only answered
            # messages does not also pay for the duties (every turn did, at one connection
            # once per request), and an idle worker wakes only when one is due.
            events = poller.poll(max(0, math.ceil(due - time.monotonic() * 1000)))
            now = time.monotonic() * 1000
            if events:
                last_message = now
                ours = [s for s, _ in events if s in routers]
                theirs = [s for s, _ in events if s not in routers]
                if self.repl is not None and theirs:
                    self.repl.receive(theirs)  # the followers' writes, synced with this turn's commit
                if ours:
                    self.drain(ours)
                if self.repl is not None and theirs:
                    self.repl.finish()
                now = time.monotonic() * 1000
            if now >= due or self.repl is not None:
                self.housekeeping(now)
                due = now + tick
                # Rollups are counted only by a worker that had no message for a whole tick: a
                # short pause under load (a client between two requests) is not idle time, and
                # a count query catches its rollups up by itself (worker/counting.py).
                if now - last_message >= tick and not self.idle():
                    due = now + min(tick, IDLE_RECOUNT_MS)  # behind: the next slice soon
                if self.repl is not None and (retry := self.repl.next_due()) is not None:
                    due = min(due, max(retry, now + 1))  # a follower's back-off ends before the tick
        self.shutdown()

    def shutdown(self) -> None:
        # Finish what already arrived, then leave: routers NACK anything sent after this point.
        self.drain(self.sockets)
        if self.repl is not None:
            self.repl.close()  # held acknowledgements are NACKed, the lease revoked: others elect now
        self.heartbeat(Command.DISCONNECT)
        self.sealer.stop()
        for _, _, plog in self.all_logs():
            plog.close()
        for s in self.sockets:
            s.close(linger=1000)


def tick_ms(cfg: Config, *, replicated: bool) -> int:
    """How often the loop's periodic duties run (heartbeats, interval fsyncs, segment rolls,
    sealing, retention, idle counting): often enough for the heartbeat and an ``interval`` fsync
    policy; replication's timers (250 ms long polls, retries, lag) want 100 ms. etcd's changes
    need no tick: the membership thread wakes the loop through a polled descriptor
    (``ReplicaManager.sockets``)."""
    tick = min(cfg.router.heartbeat_ms, 100 if replicated else 250)
    if cfg.storage.fsync.mode == "interval":
        tick = min(tick, cfg.storage.fsync.interval_ms)
    return max(tick, 1)


def run(cfg: Config, worker_id: int) -> int:
    from zlog.ops.logs import setup_logging

    setup_logging(cfg.log, "storage", worker=worker_id)
    # Replicated, cluster.workers is only the initial placement: more workers may join (etcd).
    most = cfg.cluster.workers if cfg.storage.replication_factor < 2 else 256
    if not 0 <= worker_id < most:
        log.error("worker id out of range", extra={"worker": worker_id, "workers": most})
        return 2
    tune_malloc()
    room_for_tenants(cfg, worker_id)
    try:
        worker = StorageWorker(cfg, worker_id)
    except ValueError as exc:  # a missing CurveZMQ key, or a bind that needs curve (ConfigError)
        log.error("storage worker refuses to start", extra={"reason": str(exc)})
        return 2
    serve(cfg.worker_metrics_port(worker_id), worker.metrics.registry)
    freeze_startup_garbage()
    on_stop_signals(worker.stop)
    log.info("storage worker started", extra={"worker": worker_id, "partitions": list(worker.logs),
                                               "fsync": str(cfg.storage.fsync), "pid": os.getpid()})
    worker.run()
    log.info("storage worker stopped", extra={"worker": worker_id})
    return 0
