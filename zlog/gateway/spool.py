"""The gateway side of the ingest WAL: spool failed batches, replay them when storage is back.

Invariants:
- A batch is spooled only after a failure that leaves storage unable to take it now (no owner,
  deadline missed, worker lost) and only when the WAL accepted it durably; otherwise the caller
  gets the error (503/504), never a 202 for a record that is not safe somewhere.
- Replay is one entry at a time, in WAL order, with the entry's own producer id and sequence, so
  a batch that storage stored after all is recognised as a duplicate and not stored twice.
- An OUT_OF_ORDER_SEQUENCE answer proves the batch is not stored *yet*: its predecessor may still
  come, from later in the WAL (batches fail in another order than they were numbered) or from
  the producer's own retries, and a copy of the entry itself may still be on its way (sent on a
  connection that was dropped, delivered when the link returns). Re-sent under a fresh producer
  id too early, the batch would then be stored twice (``gap_action``). So the entry goes behind
  a predecessor the WAL holds, or waits; only once refused for ``GAP_GRACE`` request deadlines
  (every retry of a predecessor is over) is it re-sent under a fresh producer id.
- The replay task never ends on an error: it backs off (capped) and tries again until stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Iterable

from zlog.client import AsyncProducer
from zlog.gateway.wal import IngestWal, WalEntry
from zlog.ops.metrics import GatewayMetrics
from zlog.protocol import bodies
from zlog.protocol.errors import ZlogError
from zlog.protocol.wire import Command

log = logging.getLogger("zlog.gateway.spool")

BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 2.0
GAP_GRACE = 2  # request deadlines an entry is refused OUT_OF_ORDER_SEQUENCE before it is re-sequenced


def gap_action(entry: WalEntry, later: Iterable[WalEntry], refused_for_s: float, grace_s: float) -> str:
    """What to do with ``entry`` after OUT_OF_ORDER_SEQUENCE: ``"defer"`` (re-append it as it is:
    a predecessor is behind it in the WAL, ``later``), ``"wait"`` (retry it: a predecessor may be
    in the producer's retries) or ``"resequence"`` (refused for ``grace_s``: nothing can fill the gap)."""
    for e in later:
        if e.partition == entry.partition and e.producer_id == entry.producer_id and e.sequence < entry.sequence:
            return "defer"
    return "wait" if refused_for_s < grace_s else "resequence"


class Spool:
    def __init__(self, wal: IngestWal, producer: AsyncProducer, metrics: GatewayMetrics, timeout_s: float) -> None:
        self.wal = wal
        self.producer = producer
        self.metrics = metrics
        self.timeout_s = timeout_s
        self._wake = asyncio.Event()
        self._stopping = False
        self._gap_since: dict[tuple[int, bytes, int], float] = {}  # (partition, pid, seq) -> first refusal
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
                if exc.code == "OUT_OF_ORDER_SEQUENCE" and self._on_gap(entry) != "wait":
                    continue
                if not exc.retry:
                    log.error("WAL batch refused for good; dropped", extra={
                        "partition": entry.partition, "records": len(entry.lines), "code": exc.code,
                        "detail": exc.message})
                    self.metrics.errors.labels(kind="WAL_DROPPED").inc()
                    self._gap_since.pop((entry.partition, entry.producer_id, entry.sequence), None)
                    self.wal.advance()
                    continue
                attempt += 1
                await asyncio.sleep(random.uniform(BACKOFF_BASE_S, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)))
                continue
            attempt = 0
            self._gap_since.pop((entry.partition, entry.producer_id, entry.sequence), None)
            self.metrics.replayed.inc(len(entry.lines))
            self.wal.advance()
            self._refresh_gauges()
            if self.wal.pending == 0:
                log.info("WAL replayed")

    def _on_gap(self, entry: WalEntry) -> str:
        key = (entry.partition, entry.producer_id, entry.sequence)
        now = time.monotonic()
        action = gap_action(entry, self.wal.entries(entry.number + 1), now - self._gap_since.setdefault(key, now),
                            GAP_GRACE * self.timeout_s)
        if action == "wait":
            return action
        # Re-append (as it is, or under a fresh producer id), then skip the old copy.
        pid, seq = (entry.producer_id, entry.sequence) if action == "defer" else (os.urandom(12), 0)
        if not self.wal.append(entry.partition, pid, seq, entry.max_timestamp, entry.lines, entry.tenant):
            return "wait"  # the WAL is full: back off and try the entry again
        self.wal.advance()
        if action == "resequence":
            self._gap_since.pop(key, None)
            log.warning("WAL batch re-sent under a new producer id: its predecessor never came", extra={
                "partition": entry.partition, "sequence": entry.sequence, "records": len(entry.lines)})
        return action

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self.wal.close()
