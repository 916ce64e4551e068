"""A storage worker's intake: a router's message to staged batches, read requests and refusals.

``Intake`` is the part of ``StorageWorker`` (``process.py``) that takes one message: a PRODUCE's
batches are checked and staged (``pending``, answered after the turn's commit), a read is queued
for after the commit, anything else is refused by name.

Invariants:
- Nothing of a batch is staged unless every record keeps the record rules and the blob the
  stored form (``ingest.stored.check_batch``), whoever sent it; a refused batch gets its named
  NACK (NOT_OWNER, INVALID_RECORD, RECORD_TOO_LARGE, OUT_OF_ORDER_SEQUENCE, QUOTA_EXCEEDED, ...).
- A producer key's tenant (the router's 7th frame) is the only tenant its batches write as, and
  such a key may only produce.
- A tenant's partition never goes over its storage quota: stored bytes, plus what this turn
  staged for it, plus the batch.
- Malformed input is counted and NACKed (or dropped when nobody can be answered); it never raises.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import zmq

from zlog.ingest.records import Limits, RecordError
from zlog.ingest.stored import check_batch
from zlog.ops.metrics import WorkerMetrics
from zlog.protocol import bodies, wire
from zlog.protocol.sockets import send_frames
from zlog.protocol.wire import Command
from zlog.storage import AppendResult, PartitionLog, ProducerBatch
from zlog.storage.errors import InvalidRecord, OutOfOrderSequence, RecordTooLarge
from zlog.tenants.quotas import LimitsOf
from zlog.worker.tenant_logs import TenantLogs
from zlog.worker.turn import Pending, Reply

if TYPE_CHECKING:
    from zlog.replication.manager import ReplicaManager


class Intake:
    # Set by StorageWorker.__init__.
    worker_id: int
    metrics: WorkerMetrics
    limits: Limits
    limits_of: LimitsOf
    default_tenant: str
    logs: dict[int, PartitionLog]
    tenant_logs: TenantLogs
    repl: ReplicaManager | None
    _turn_bytes: dict[tuple[str | None, int], int]
    _reads: list[tuple[zmq.Socket[bytes], bytes, wire.Message]]

    def _send(self, sock: zmq.Socket[bytes], reply_to: bytes, frames: list[bytes]) -> None:
        try:
            send_frames(sock, [reply_to, *frames])
        except zmq.ZMQError:
            # The router's queue is full or it is gone: the producer's deadline and retry cover it.
            self.metrics.errors.labels(kind="reply_dropped").inc()

    def _nack(self, sock: zmq.Socket[bytes], reply_to: bytes, rid: bytes, code: str, message: str,
              *, retry: bool, partition: int | None = None) -> None:
        self.metrics.errors.labels(kind=code).inc()
        if not reply_to:
            return  # nobody to answer
        frames = bodies.nack_frames(0, code, message, retry=retry, partition=partition)
        frames[2] = rid
        self._send(sock, reply_to, frames)

    def on_message(self, sock: zmq.Socket[bytes], frames: list[bytes], pending: list[Pending],
                   replies: list[Reply]) -> None:
        # A 7th frame is the router's word that the producer's CURVE key writes as that tenant.
        bound: str | None = None
        if len(frames) == 7:
            bound = frames.pop().decode("ascii", "replace")
        if len(frames) != 6:
            self.metrics.errors.labels(kind="malformed").inc()
            return
        reply_to = frames[0]
        try:
            msg = wire.decode(frames[1:])
        except wire.MalformedFrame as exc:
            rid = wire.echo_id(frames[3])
            self._nack(sock, reply_to, rid, exc.code, str(exc), retry=False)
            return
        cmd = msg.command
        if cmd is Command.PRODUCE:
            self._produce(sock, reply_to, frames[3], msg, pending, replies, bound)
        elif bound is not None:
            self._nack(sock, reply_to, frames[3], "FORBIDDEN", "a producer key may only produce", retry=False)
        elif cmd in (Command.FETCH, Command.SEARCH, Command.STATS):
            self._reads.append((sock, reply_to, msg))
        elif cmd is Command.HEARTBEAT or cmd is Command.DISCONNECT:
            pass  # any traffic from the router is liveness; a router DISCONNECT needs nothing
        else:
            self._nack(sock, reply_to, frames[3], "BAD_COMMAND", f"a worker does not take {cmd.name}",
                       retry=False)

    def _produce(self, sock: zmq.Socket[bytes], reply_to: bytes, rid: bytes, msg: wire.Message,
                 pending: list[Pending], replies: list[Reply], bound: str | None = None) -> None:
        try:
            obj = wire.unpack_body(msg.body)
            multi = "batches" in obj
            if multi:
                batches: list[tuple[int | None, bodies.ProduceBody]] = list(bodies.parse_multi_produce(obj))
            else:
                batches = [(msg.partition, bodies.produce_from(obj))]
        except wire.MalformedFrame as exc:
            self._nack(sock, reply_to, rid, exc.code, str(exc), retry=False, partition=msg.partition)
            return
        reply = Reply(sock, reply_to, rid, multi, [None] * len(batches), "leader" if obj.get("acks") == "leader" else "all",
                      [None] * len(batches))
        replies.append(reply)
        for i, (p, body) in enumerate(batches):
            if bound is not None:
                if body.tenant not in (None, bound):
                    reply.results[i] = bodies.Nack("FORBIDDEN", f"this producer's key writes only as tenant {bound}",
                                                   False, p)
                    self.metrics.errors.labels(kind="FORBIDDEN").inc()
                    continue
                body = dataclasses.replace(body, tenant=bound)
            outcome = self._append(p, body, reply.acks)
            if isinstance(outcome, bodies.Nack):
                self.metrics.errors.labels(kind=outcome.code).inc()
                reply.results[i] = outcome
            else:
                reply.tenants[i] = tenant_key(body.tenant, self.default_tenant)
                pending.append(Pending(reply, i, outcome[0], outcome[1], reply.tenants[i]))

    def _append(self, p: int | None, body: bodies.ProduceBody, acks: str = "all") -> bodies.Nack | tuple[int, AppendResult]:
        """Stage one batch; a Nack says why it was refused (nothing of it is staged then)."""
        plog = self.logs.get(p) if p is not None else None
        if plog is None or p is None:
            return bodies.Nack("NOT_OWNER", f"worker {self.worker_id} does not own partition {p}", True, p)
        tenant = tenant_key(body.tenant, self.default_tenant)
        if self.repl is not None:  # every tenant's partition p is led where p is (replication.logset)
            refused = self.repl.check_produce(p, acks)
            if refused is not None:
                return refused
        if tenant is not None:
            found = self.tenant_logs.for_write(tenant, p, replicated=self.repl is not None)
            if isinstance(found, bodies.Nack):
                return found
            plog = found
        producer = None if body.producer_id is None else ProducerBatch(body.producer_id, body.sequence or 0)
        try:
            # Whoever sent it: nothing of a batch is stored unless every record keeps the record
            # rules and the blob the stored form (one check of both, whose result the engine takes).
            batch = check_batch(body.data, self.limits)
            if isinstance(batch, RecordError):
                return bodies.Nack("INVALID_RECORD", f"record {batch.index}: {batch.field or 'record'}: "
                                                     f"{batch.problem}; nothing of the batch was stored", False, p)
            over = self._over_quota(tenant, p, plog, len(body.data))
            return over if over is not None else (p, plog.append_data(batch, body.max_timestamp, producer))
        except RecordTooLarge as exc:
            return bodies.Nack("RECORD_TOO_LARGE", str(exc), False, p)
        except InvalidRecord as exc:
            return bodies.Nack("INVALID_RECORD", str(exc), False, p)
        except OutOfOrderSequence as exc:
            return bodies.Nack("OUT_OF_ORDER_SEQUENCE", str(exc), True, p)

    def _over_quota(self, tenant: str | None, p: int, plog: PartitionLog, size: int) -> bodies.Nack | None:
        """The refusal of a batch of ``size`` bytes that would take the partition over its tenant's
        storage quota; otherwise None, and the bytes count as staged this turn."""
        quota = self.limits_of(tenant or self.default_tenant).max_partition_bytes
        if not quota:
            return None
        # Stored bytes, plus what this turn already staged for the partition, plus this batch.
        used = plog.size_bytes + self._turn_bytes.get((tenant, p), 0)
        if used + size > quota:
            return bodies.Nack("QUOTA_EXCEEDED", f"tenant {tenant or self.default_tenant!r}: partition {p} "
                               f"would exceed its storage quota of {quota} bytes; nothing of the batch was stored",
                               False, p)
        self._turn_bytes[(tenant, p)] = used - plog.size_bytes + size
        return None


def tenant_key(tenant: str | None, default: str) -> str | None:
    """A batch's or read's tenant as the worker keys it: None for the default tenant."""
    return None if tenant is None or tenant == default else tenant
