"""A router's front: one producer's message, routed to its partition's live owner or refused.

``Front`` is the part of ``Router`` (``process.py``) that takes what producers and gateways send:
PRODUCE and reads forwarded untouched to the owner (an explicit partition, or FNV-1a of a key),
METADATA, ADMIT (the tenant's rate bucket) and HEARTBEAT answered here.

Invariants:
- Bodies are forwarded untouched: only an ADMIT body is decoded, and a producer key's PRODUCE
  body is only read, to charge its lines to its tenant's bucket (``native.py``).
- Every request either reaches a live owner or is NACKed at once (NO_OWNER, BACKPRESSURE,
  UNKNOWN_PARTITION, FORBIDDEN, or a malformed-frame code); a request admitted to the in-flight
  table and then not sent is settled again, so the table never holds a request no worker has.
- A producer key (``bound``) may only produce, and only as its own tenant.
- All sends are non-blocking; a reply to a vanished producer is dropped and counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import zmq

from zlog.protocol import bodies, errors, wire
from zlog.protocol.hashing import Partitioner
from zlog.protocol.sockets import send_frames
from zlog.protocol.wire import Command
from zlog.router.native import NativeCharges
from zlog.router.routing import RoutingTable
from zlog.tenants.admission import Admission
from zlog.tenants.quotas import LimitsOf

_REQUESTS = (Command.PRODUCE, Command.FETCH, Command.SEARCH, Command.STATS)
_READS = (Command.FETCH, Command.SEARCH, Command.STATS)


def now_ms() -> int:
    return int(time.monotonic() * 1000)


class Front:
    # Set by Router.__init__.
    front: zmq.Socket[bytes]
    back: zmq.Socket[bytes]
    table: RoutingTable
    partitioner: Partitioner
    admission: Admission
    limits_of: LimitsOf
    native: NativeCharges
    _counts: dict[tuple[str, str], int]
    # Router's: the METADATA body, and a worker's departure (its in-flight requests NACKed).
    metadata: Callable[[int], dict[str, object]]
    _worker_gone: Callable[[bytes, str], None]

    def _nack(self, sock: zmq.Socket[bytes], ident: bytes, rid: bytes, code: str, message: str,
              *, retry: bool, partition: int | None = None, retry_after: int = 0) -> None:
        frames = bodies.nack_frames(0, code, message, retry=retry, partition=partition, retry_after=retry_after)
        frames[2] = rid
        self._count("errors", code)
        try:
            send_frames(sock, [ident, *frames])
        except zmq.ZMQError:
            self._count("errors", "reply_dropped")

    def _count(self, kind: str, label: str) -> None:
        key = (kind, label)
        self._counts[key] = self._counts.get(key, 0) + 1

    def on_front(self, frames: list[bytes], bound: bytes | None = None) -> None:
        """One producer message; ``bound`` is the tenant its CURVE key writes as (None: internal)."""
        if len(frames) != 6:
            self._count("errors", "malformed")
            if len(frames) >= 4:
                self._nack(self.front, frames[0], wire.echo_id(frames[3]),
                           "BAD_FRAMES", "expected 5 frames after the identity", retry=False)
            return
        ident = frames[0]
        try:
            msg = wire.decode(frames[1:])
        except wire.MalformedFrame as exc:
            rid = wire.echo_id(frames[3])
            self._nack(self.front, ident, rid, exc.code, str(exc), retry=False)
            return
        self._count("frames", msg.command.name)
        if bound is not None and msg.command in _READS:
            self._nack(self.front, ident, frames[3], "FORBIDDEN", "a producer key may not read", retry=False)
            return
        if msg.command in _REQUESTS:
            partition = msg.partition
            if partition is None:
                if msg.key is None:
                    self._nack(self.front, ident, frames[3], "BAD_ROUTE", "this command needs a route", retry=False)
                    return
                partition = self.partitioner(msg.key)
                frames = [ident, *wire.with_route(frames[1:], partition)]
            if partition >= self.table.partitions:
                self._nack(self.front, ident, frames[3], "UNKNOWN_PARTITION",
                           f"partition {partition} does not exist (0..{self.table.partitions - 1})",
                           retry=False, partition=partition)
                return
            owner = self.table.owner(partition)
            if owner is None:
                self._nack(self.front, ident, frames[3], "NO_OWNER",
                           f"partition {partition} has no live storage worker", retry=True, partition=partition)
                return
            key = (ident, frames[3])
            if not self.table.admit(owner, key, partition):
                self._nack(self.front, ident, frames[3], "BACKPRESSURE", "too many requests in flight",
                           retry=True, partition=partition)
                return
            if bound is not None and msg.command is Command.PRODUCE:
                refused = self.native.charge(bound, key, msg.body, time.monotonic())
                if refused is not None:
                    self.table.settle(owner, key)
                    self._nack(self.front, ident, frames[3], refused.code, refused.message, partition=partition,
                               retry=errors.kind(refused.code).retry, retry_after=refused.retry_after_s)
                    return
            try:
                send_frames(self.back, [owner, *frames, bound] if bound is not None else [owner, *frames])
            except zmq.Again:
                self.table.settle(owner, key)
                self.native.settle(key, stored_nothing=True)
                self._nack(self.front, ident, frames[3], "BACKPRESSURE", "worker queue full",
                           retry=True, partition=partition)
            except zmq.ZMQError:  # EHOSTUNREACH: the worker's connection is gone
                self._worker_gone(owner, "unreachable")
                self._nack(self.front, ident, frames[3], "NO_OWNER",
                           f"partition {partition} has no live storage worker", retry=True, partition=partition)
        elif msg.command is Command.METADATA:
            body = wire.pack_body(self.metadata(now_ms()))
            reply = wire.encode(Command.RESULT, msg.request_id, body=body)
            try:
                send_frames(self.front, [ident, *reply])
            except zmq.ZMQError:
                self._count("errors", "reply_dropped")
        elif msg.command is Command.ADMIT:
            self._admit(ident, frames[3], msg, bound)
        elif msg.command is Command.HEARTBEAT:
            try:
                send_frames(self.front, [ident, *wire.encode(Command.HEARTBEAT, msg.request_id)])
            except zmq.ZMQError:
                self._count("errors", "reply_dropped")
        else:
            self._nack(self.front, ident, frames[3], "BAD_COMMAND",
                       f"{msg.command.name} is not accepted from producers", retry=False)

    def _admit(self, ident: bytes, rid: bytes, msg: wire.Message, bound: bytes | None) -> None:
        try:
            req = bodies.parse_admit(msg.body)
        except wire.MalformedFrame as exc:
            self._nack(self.front, ident, rid, exc.code, str(exc), retry=False)
            return
        if bound is not None and req.tenant.encode() != bound:
            # A producer key bound to a tenant must not draw on (and so exhaust) another's bucket.
            self._nack(self.front, ident, rid, "FORBIDDEN", "this producer's key acts only as its own tenant",
                       retry=False)
            return
        limits = self.limits_of(req.tenant)
        refused = self.admission.admit(req.tenant, limits, req.records, req.nbytes, req.services,
                                       time.monotonic())
        body = (bodies.admitted_body() if refused is None
                else bodies.admitted_body(refused.code, refused.message, refused.retry_after_s))
        try:
            send_frames(self.front, [ident, *wire.encode(Command.RESULT, msg.request_id, body=body)])
        except zmq.ZMQError:
            self._count("errors", "reply_dropped")
