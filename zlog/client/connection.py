"""``AsyncClient``: request/reply with the routers over one DEALER per router, on the asyncio loop.

Invariants:
- Sockets are touched only from the event loop's thread; the zmq FD is watched with
  ``add_reader`` and drained completely on every wake (and after every send, since the zmq FD
  is edge-triggered), so no reply waits for another event to be noticed.
- Every request's future resolves once: the reply message, or an error when the client closes;
  ``request`` turns a NACK into its named ``ZlogError`` and silence into ``Timeout``.
- Sends never block: a request goes to the chosen router or, if that one is not connected or
  full, the next; only when none takes it is it ``Backpressure``.
- A router that stops answering at the network level (its host cut off: no FIN, no RST) is
  dropped after ``HEARTBEAT_TIMEOUT_MS`` of silence (ZMTP heartbeats), so later requests go to
  the next router instead of queueing on a dead connection until their deadline.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import zmq

from zlog.protocol import bodies, wire
from zlog.protocol.errors import Backpressure, NoOwner, Timeout, ZlogError
from zlog.protocol.wire import Command
from zlog.security.curve import ClientCurve

HEARTBEAT_IVL_MS = 500
HEARTBEAT_TIMEOUT_MS = 1500


class AsyncClient:
    """Request/reply to the routers over one DEALER per router, driven by the asyncio loop."""

    def __init__(
        self,
        routers: Sequence[str],
        *,
        hwm: int = 10_000,
        ctx: zmq.Context[zmq.Socket[bytes]] | None = None,
        curve: ClientCurve | None = None,
    ) -> None:
        if not routers:
            raise ValueError("at least one router endpoint is needed")
        self.ctx = ctx or zmq.Context.instance()
        self.loop = asyncio.get_running_loop()
        self.sockets: list[zmq.Socket[bytes]] = []
        for ep in routers:
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.IMMEDIATE, 1)
            s.setsockopt(zmq.SNDHWM, hwm)
            s.setsockopt(zmq.RCVHWM, hwm)
            s.setsockopt(zmq.RECONNECT_IVL, 100)
            s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
            s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
            s.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
            if curve is not None:  # CurveZMQ: the router checks this key before any frame gets through
                curve.apply(s)
            s.connect(ep)
            self.loop.add_reader(int(s.getsockopt(zmq.FD)), self._drain)
            self.sockets.append(s)
        self._waiters: dict[int, asyncio.Future[wire.Message]] = {}
        self._next_id = random.getrandbits(48)
        self._drain_scheduled = False
        self.closed = False

    def _drain(self) -> None:
        self._drain_scheduled = False
        waiters = self._waiters
        for s in self.sockets:
            while int(s.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                try:
                    frames = s.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    msg = wire.decode(frames)
                except wire.MalformedFrame:
                    continue  # not ours to answer; the waiter times out
                fut = waiters.pop(msg.request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)

    def _schedule_drain(self) -> None:
        # zmq's FD is edge-triggered: after a send, messages may be ready without a new edge.
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.loop.call_soon(self._drain)

    def send(
        self,
        command: Command,
        *,
        partition: int | None = None,
        key: bytes | None = None,
        body: bytes | dict[str, Any] = b"",
        socket_index: int = 0,
    ) -> asyncio.Future[wire.Message]:
        """Send a request; the future gets the reply message (RESULT, ACK, NACK, HEARTBEAT)."""
        if self.closed:
            raise ZlogError("SHUTTING_DOWN", "client is closed")
        self._next_id = (self._next_id + 1) & 0xFFFFFFFFFFFFFFFF
        rid = self._next_id
        frames = wire.encode(command, rid, partition=partition, key=key, body=body)
        # The chosen router first, then the others: one that is not connected (never was, or
        # dropped by the heartbeat) or full refuses at once, and any router reaches every worker.
        n = len(self.sockets)
        for i in range(n):
            try:
                self.sockets[(socket_index + i) % n].send_multipart(frames, zmq.NOBLOCK)
                break
            except zmq.Again:
                continue
        else:
            raise Backpressure("no router is connected, or every router's queue is full") from None
        fut: asyncio.Future[wire.Message] = self.loop.create_future()
        self._waiters[rid] = fut
        # A caller that stops waiting (a timeout cancels the future) leaves no waiter behind.
        fut.add_done_callback(lambda _: self._waiters.pop(rid, None))
        self._schedule_drain()
        return fut

    async def request(
        self,
        command: Command,
        *,
        partition: int | None = None,
        key: bytes | None = None,
        body: bytes | dict[str, Any] = b"",
        timeout: float = 5.0,
        socket_index: int = 0,
    ) -> wire.Message:
        """One request; NACK raises its named ``ZlogError``, silence raises ``Timeout``."""
        fut = self.send(command, partition=partition, key=key, body=body, socket_index=socket_index)
        try:
            msg = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise Timeout(f"no answer within {timeout:.1f}s", partition) from None
        if msg.command is Command.NACK:
            raise nack_error(msg)
        return msg

    async def metadata(self, timeout: float = 5.0) -> dict[str, Any]:
        return (await self.request(Command.METADATA, timeout=timeout)).unpack()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for s in self.sockets:
            self.loop.remove_reader(int(s.getsockopt(zmq.FD)))
            s.close(0)
        err = ZlogError("SHUTTING_DOWN", "client closed")
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(err)
        self._waiters.clear()


def nack_error(msg: wire.Message) -> ZlogError:
    return error_of(bodies.parse_nack(msg.body))


def error_of(nack: bodies.Nack) -> ZlogError:
    """The named error a NACK (or a per-batch refusal in a multi-partition ACK) stands for."""
    if nack.code == "NO_OWNER" and nack.partition is not None:
        return NoOwner(nack.partition)
    return ZlogError(nack.code, nack.message, partition=nack.partition)
