"""The syslog listener process (``zlog syslog``): TCP and UDP in, records out through the producer.

Syslog has no acknowledgement: a sender's message is gone from it once written to the socket.
So the listener can promise only this much, and counts everything so no loss is hidden:
- A message is *parsed* (a record), *dropped* (unreadable, too long, refused by validation, or
  over the pending bound), or *stored* once storage acknowledged it durably, exactly as a
  ``/v1/logs`` record; ``zlog_syslog_messages_total{listener, outcome}`` and
  ``zlog_syslog_dropped_total{listener, reason}`` count each.
- Bounded: at most ``max_pending`` records wait for storage. Over TCP the listener then stops
  reading (the sender's kernel buffer and the sender itself hold the rest, which is TCP's own
  backpressure); over UDP the new message is dropped and counted.
- A batch storage refuses is retried with backoff; records still unstored at SIGTERM after the
  flush deadline, or after ``RETRY_FOR_S`` of trying, are counted as dropped (reason
  ``storage``). A crash loses what was pending: syslog allows no better without RELP.
- SIGTERM stops accepting, flushes pending records (bounded), exits; a second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import Any

from zlog.client import AsyncProducer, Share
from zlog.config import Config
from zlog.ingest.partial import encode_partial
from zlog.ingest.records import Limits
from zlog.ops.metrics import SyslogMetrics, serve
from zlog.protocol.errors import ZlogError
from zlog.replication.etcd_server import discovery_endpoints
from zlog.security.curve import client_curve
from zlog.syslog.parse import Framer, SyslogError, parse

log = logging.getLogger("zlog.syslog")

RETRY_FOR_S = 30.0
FLUSH_ON_STOP_S = 10.0


def split_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"syslog address {text!r} is not host:port")
    return host.strip("[]"), int(port)


class Pipeline:
    """Parsed records waiting for storage, sent in batches; the counters of one process."""

    def __init__(self, cfg: Config, producer: AsyncProducer, metrics: SyslogMetrics) -> None:
        self.cfg = cfg
        self.producer = producer
        self.metrics = metrics
        self.limits = Limits.from_config(cfg.gateway, cfg.storage)
        self.pending: list[tuple[str, str, dict[str, Any]]] = []  # (listener, peer, record)
        self.inflight = 0  # records handed to a send not yet settled
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return len(self.pending) + self.inflight

    def full(self) -> bool:
        return self.waiting >= self.cfg.syslog.max_pending

    def offer(self, listener: str, peer: str, data: bytes) -> None:
        try:
            rec = parse(data, now_ms=int(time.time() * 1000))
        except SyslogError as exc:
            self.metrics.dropped(listener, exc.reason)
            return
        if self.full():
            self.metrics.dropped(listener, "overload")
            return
        self.metrics.parsed(listener)
        self.pending.append((listener, peer, rec))
        if len(self.pending) >= self.cfg.syslog.batch_records:
            self.wake.set()
        if self.full():
            self.room.clear()

    async def run(self) -> None:
        linger = self.cfg.syslog.linger_ms / 1000.0
        while not (self.stopping and not self.pending):
            if not self.pending:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), 0.5)
                except TimeoutError:
                    pass
                continue
            if len(self.pending) < self.cfg.syslog.batch_records and not self.stopping:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), linger)
                except TimeoutError:
                    pass
            batch, self.pending = self.pending[:self.cfg.syslog.batch_records], \
                self.pending[self.cfg.syslog.batch_records:]
            self.inflight += len(batch)
            task = asyncio.ensure_future(self._send(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            while len(self.tasks) >= 4:  # a few batches in flight; the producer coalesces them
                await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)

    async def _send(self, batch: list[tuple[str, str, dict[str, Any]]]) -> None:
        try:
            await self._store(batch)
        finally:
            self.inflight -= len(batch)
            if not self.full():
                self.room.set()

    async def _store(self, batch: list[tuple[str, str, dict[str, Any]]]) -> None:
        now = int(time.time() * 1000)
        by_source: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for listener, peer, rec in batch:
            by_source.setdefault((listener, peer), []).append(rec)
        for (listener, peer), items in by_source.items():
            groups, refused = encode_partial(items, self.limits, received_at=now, client_ip=peer,
                                             node_id=self.cfg.cluster.node_id)
            if refused:
                self.metrics.dropped(listener, "invalid", len(refused))
            deadline = time.monotonic() + RETRY_FOR_S
            attempt = 0
            while groups:
                results = await self.producer.send_groups_settled(groups, timeout=self.cfg.gateway.request_timeout_ms / 1000)
                left = {}
                for (svc, g), r in zip(list(groups.items()), results, strict=True):
                    if isinstance(r, Share):
                        self.metrics.stored(listener, g.count)
                    elif isinstance(r, ZlogError) and r.retry and time.monotonic() < deadline:
                        left[svc] = g
                    else:
                        self.metrics.dropped(listener, "storage", g.count)
                        log.warning("syslog records not stored", extra={"records": g.count, "error": str(r)})
                groups = left
                if groups:
                    attempt += 1
                    await asyncio.sleep(random.uniform(0.05, min(2.0, 0.1 * 2**attempt)))


class TcpProtocol(asyncio.Protocol):
    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.framer = Framer(pipe.cfg.syslog.max_message_bytes)
        self.peer = ""
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.resumer: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""

    def data_received(self, data: bytes) -> None:
        before = self.framer.dropped
        for msg in self.framer.feed(data):
            self.pipe.offer("tcp", self.peer, msg)
        if self.framer.dropped > before:
            self.pipe.metrics.dropped("tcp", "too_long", self.framer.dropped - before)
        if self.pipe.full() and self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()
            self.resumer = asyncio.ensure_future(self._resume())

    async def _resume(self) -> None:
        await self.pipe.room.wait()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        rest = self.framer.close()
        if rest is not None:
            self.pipe.offer("tcp", self.peer, rest)


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) > self.pipe.cfg.syslog.max_message_bytes:
            self.pipe.metrics.dropped("udp", "too_long")
            return
        self.pipe.offer("udp", str(addr[0]), data.rstrip(b"\r\n"))


async def serve_syslog(cfg: Config, stop: asyncio.Event) -> None:
    producer = AsyncProducer(list(cfg.router.front), node_id=cfg.cluster.node_id,
                             delivery_timeout_s=cfg.gateway.request_timeout_ms / 1000.0, hwm=cfg.router.hwm,
                             linger_ms=cfg.gateway.linger_ms, max_inflight=cfg.gateway.inflight_batches,
                             curve=client_curve(cfg, "gateway"),  # an intake front end, as a gateway is
                             etcd=discovery_endpoints(cfg), etcd_prefix=cfg.cluster.etcd_prefix)
    await producer.start(timeout=30.0)
    metrics = SyslogMetrics()
    serve(cfg.syslog.metrics_port, metrics.registry, host=cfg.gateway.host)
    pipe = Pipeline(cfg, producer, metrics)
    loop = asyncio.get_running_loop()
    servers: list[asyncio.AbstractServer] = []
    transports: list[asyncio.BaseTransport] = []  # the UDP endpoint
    if cfg.syslog.tcp:
        host, port = split_address(cfg.syslog.tcp)
        servers.append(await loop.create_server(lambda: TcpProtocol(pipe), host, port, reuse_address=True))
    if cfg.syslog.udp:
        host, port = split_address(cfg.syslog.udp)
        udp, _ = await loop.create_datagram_endpoint(lambda: UdpProtocol(pipe), local_addr=(host, port))
        transports.append(udp)
    log.info("syslog listener started", extra={"tcp": cfg.syslog.tcp, "udp": cfg.syslog.udp, "pid": os.getpid(),
                                               "metrics_port": cfg.syslog.metrics_port})
    runner = asyncio.ensure_future(pipe.run())
    await stop.wait()
    for s in servers:
        s.close()
    for t in transports:
        t.close()
    pipe.stopping = True
    pipe.wake.set()
    try:
        await asyncio.wait_for(asyncio.gather(runner, *pipe.tasks), FLUSH_ON_STOP_S)
    except TimeoutError:
        left = pipe.waiting
        log.warning("syslog records not stored at stop", extra={"records": left})
    await producer.close(timeout=2.0)
    log.info("syslog listener stopped", extra={"stored": metrics.stored_total})


def run(cfg: Config) -> int:
    from zlog.ops.logs import setup_logging
    from zlog.ops.runtime import stop_event_on_signals

    setup_logging(cfg.log, "syslog")
    if not cfg.syslog.tcp and not cfg.syslog.udp:
        log.error("no syslog.tcp or syslog.udp address is configured; nothing to listen on")
        return 2
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stop = stop_event_on_signals(loop)
    loop.run_until_complete(serve_syslog(cfg, stop))
    return 0
