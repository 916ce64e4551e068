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
- A request whose router connection breaks (the router died, or the heartbeat dropped it)
  fails at once with the retryable ``ROUTER_LOST`` instead of waiting out its deadline: its
  reply can no longer come. A produce retried after it is deduplicated by (producer id,
  sequence), and held by the leader until acks=all is met like the original.
- The set of routers may change (``set_routers``, from etcd's ``routers/`` keys): a router
  that goes fails its in-flight requests with ``ROUTER_LOST``; one that comes is connected.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from zlog.protocol import bodies, wire
from zlog.protocol.errors import Backpressure, NoOwner, OverLimit, Timeout, ZlogError
from zlog.protocol.sockets import readable, send_frames
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
        self.hwm = hwm
        self.curve = curve
        self.endpoints: list[str] = []
        self.sockets: list[zmq.Socket[bytes]] = []
        self._monitors: dict[zmq.Socket[bytes], zmq.Socket[bytes]] = {}
        self._waiters: dict[int, asyncio.Future[wire.Message]] = {}
        self._via: dict[int, zmq.Socket[bytes]] = {}  # request id -> the router socket it went on
        self._next_id = random.getrandbits(48)
        self._drain_scheduled = False
        self.closed = False
        for ep in routers:
            self._open(ep)

    def _open(self, endpoint: str) -> None:
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.IMMEDIATE, 1)
        s.setsockopt(zmq.SNDHWM, self.hwm)
        s.setsockopt(zmq.RCVHWM, self.hwm)
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        s.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        if self.curve is not None:  # CurveZMQ: the router checks this key before any frame gets through
            self.curve.apply(s)
        mon = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        s.connect(endpoint)
        self.loop.add_reader(int(s.getsockopt(zmq.FD)), self._drain)
        self.loop.add_reader(int(mon.getsockopt(zmq.FD)), self._on_monitor, s, mon)
        self._monitors[s] = mon
        self.endpoints.append(endpoint)
        self.sockets.append(s)
        mon.getsockopt(zmq.EVENTS)  # arms the edge-triggered FD: without a first look it never fires

    def _close_socket(self, s: zmq.Socket[bytes]) -> None:
        mon = self._monitors.pop(s)
        self.loop.remove_reader(int(mon.getsockopt(zmq.FD)))
        self.loop.remove_reader(int(s.getsockopt(zmq.FD)))
        s.disable_monitor()
        mon.close(0)
        s.close(0)

    def set_routers(self, endpoints: Sequence[str]) -> None:
        """Connect to exactly ``endpoints`` from now on (an empty list changes nothing)."""
        if self.closed or not endpoints:
            return
        for i in [i for i, ep in enumerate(self.endpoints) if ep not in endpoints]:
            self._lost(self.sockets[i], f"router {self.endpoints[i]} left the cluster")
        keep = [(ep, s) for ep, s in zip(self.endpoints, self.sockets, strict=True) if ep in endpoints]
        for ep, s in zip(self.endpoints, self.sockets, strict=True):
            if ep not in endpoints:
                self._close_socket(s)
        self.endpoints, self.sockets = [ep for ep, _ in keep], [s for _, s in keep]
        for ep in endpoints:
            if ep not in self.endpoints:
                self._open(ep)

    def _on_monitor(self, s: zmq.Socket[bytes], mon: zmq.Socket[bytes]) -> None:
        lost = False
        while int(mon.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                event = recv_monitor_message(mon, zmq.NOBLOCK)
            except zmq.Again:
                break
            lost = lost or event.get("event") == zmq.EVENT_DISCONNECTED
        if lost:
            self._drain()  # replies that arrived before the connection broke still count
            ep = self.endpoints[self.sockets.index(s)] if s in self.sockets else "?"
            self._lost(s, f"the connection to router {ep} broke")

    def _lost(self, s: zmq.Socket[bytes], why: str) -> None:
        for rid in [rid for rid, via in self._via.items() if via is s]:
            fut = self._waiters.pop(rid, None)
            self._via.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(ZlogError("ROUTER_LOST", f"{why} with the request in flight"))

    def _drain(self) -> None:
        self._drain_scheduled = False
        waiters = self._waiters
        for s in self.sockets:
            while readable(s):
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
            sock = self.sockets[(socket_index + i) % n]
            try:
                send_frames(sock, frames)
                break
            except zmq.Again:
                continue
        else:
            raise Backpressure("no router is connected, or every router's queue is full") from None
        fut: asyncio.Future[wire.Message] = self.loop.create_future()
        self._waiters[rid] = fut
        self._via[rid] = sock
        # A caller that stops waiting (a timeout cancels the future) leaves no waiter behind.
        fut.add_done_callback(lambda _: (self._waiters.pop(rid, None), self._via.pop(rid, None)))
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
        """One request; NACK raises its named ``ZlogError``, silence raises ``Timeout``. A request
        whose router connection broke is sent again through another (requests other than PRODUCE
        only read; a PRODUCE's retry is the producer's, under its producer id and sequence)."""
        deadline = self.loop.time() + timeout
        while True:
            fut = self.send(command, partition=partition, key=key, body=body, socket_index=socket_index)
            try:
                msg = await asyncio.wait_for(fut, max(0.0, deadline - self.loop.time()))
                break
            except TimeoutError:
                raise Timeout(f"no answer within {timeout:.1f}s", partition) from None
            except ZlogError as exc:
                if exc.code != "ROUTER_LOST" or command is Command.PRODUCE or self.loop.time() >= deadline:
                    raise
                socket_index += 1
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
            self._close_socket(s)
        self.sockets, self.endpoints = [], []
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
    if nack.retry_after:
        return OverLimit(nack.code, nack.message, nack.retry_after, partition=nack.partition)
    return ZlogError(nack.code, nack.message, partition=nack.partition)
