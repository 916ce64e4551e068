"""The gateway side of the ingest WAL: spool failed batches, replay them when storage is back.

Invariants:
- A batch is spooled only after a failure that leaves storage unable to take it now (no owner,
  deadline missed, worker lost) and only when the WAL accepted it durably; otherwise the caller
  gets the error (503/504), never a 202 for a record that is not safe somewhere.
- Replay is one entry at a time, in WAL order, with the entry's own producer id and sequence, so
  a batch that storage stored after all is recognised as a duplicate and not stored twice.
- An OUT_OF_ORDER_SEQUENCE answer proves the batch is not stored and that its predecessor never
  will be (it was not spooled); the entry is then re-sent under a fresh producer id.
- The replay task never ends on an error: it backs off (capped) and tries again until stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random

from zlog.client import AsyncProducer
from zlog.gateway.wal import IngestWal
from zlog.ops.metrics import GatewayMetrics
from zlog.protocol import bodies
from zlog.protocol.errors import ZlogError
from zlog.protocol.wire import Command

log = logging.getLogger("zlog.gateway.spool")

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0


class Spool:
    def __init__(self, wal: IngestWal, producer: AsyncProducer, metrics: GatewayMetrics, timeout_s: float) -> None:
        self.wal = wal
        self.producer = producer
        self.metrics = metrics
        self.timeout_s = timeout_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._refresh_gauges()
        if wal.pending:
            log.info("WAL has batches to replay", extra={"batches": wal.pending, "bytes": wal.size_bytes})
            self._wake.set()

    def hook(self, partition: int, producer_id: bytes, sequence: int, max_ts: int, lines: list[bytes],
             tenant: str | None = None) -> bool:
        """``AsyncProducer.spool``: True when the batch is durably in the WAL."""
        if not producer_id:
            producer_id, sequence = os.urandom(12), 0
        ok = self.wal.append(partition, producer_id, sequence, max_ts, lines, tenant)
        if ok:
            self.metrics.spooled.inc(len(lines))
            self._wake.set()
        else:
            self.metrics.errors.labels(kind="WAL_FULL").inc()
            log.warning("WAL full: refusing to spool", extra={"bytes": self.wal.size_bytes, "partition": partition})
        self._refresh_gauges()
        return ok

    def _refresh_gauges(self) -> None:
        self.metrics.wal_pending.set(self.wal.pending)
        self.metrics.wal_bytes.set(self.wal.size_bytes)

    async def run(self) -> None:
        attempt = 0
        while not self._stopping:
            entry = self.wal.peek()
            if entry is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            client = self.producer.client
            if client is None:
                await asyncio.sleep(BACKOFF_BASE_S)
                continue
            body = bodies.produce_body(entry.lines, entry.max_timestamp, entry.producer_id, entry.sequence,
                                     entry.tenant)
            try:
                msg = await client.request(Command.PRODUCE, partition=entry.partition, body=body,
                                           timeout=self.timeout_s)
                bodies.parse_ack(msg.body)
            except ZlogError as exc:
                if exc.code == "OUT_OF_ORDER_SEQUENCE":
                    self._resequence(entry.number)
                    continue
                if not exc.retry:
                    log.error("WAL batch refused for good; dropped", extra={
                        "partition": entry.partition, "records": len(entry.lines), "code": exc.code,
                        "detail": exc.message})
                    self.metrics.errors.labels(kind="WAL_DROPPED").inc()
                    self.wal.advance()
                    continue
                attempt += 1
                await asyncio.sleep(random.uniform(BACKOFF_BASE_S, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)))
                continue
            attempt = 0
            self.metrics.replayed.inc(len(entry.lines))
            self.wal.advance()
            self._refresh_gauges()
            if self.wal.pending == 0:
                log.info("WAL replayed")

    def _resequence(self, number: int) -> None:
        entry = self.wal.peek()
        if entry is None or entry.number != number:
            return
        # Re-append under a fresh producer id, then skip the old copy.
        if self.wal.append(entry.partition, os.urandom(12), 0, entry.max_timestamp, entry.lines, entry.tenant):
            self.wal.advance()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self.wal.close()
