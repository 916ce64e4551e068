"""One worker loop turn's writes: the batches staged, the group commit, and the answers owed.

Invariants:
- A batch gets an ACK only after its partition's commit returned and the one filesystem sync of
  every partition written this turn (a follower's writes too) succeeded; a failed commit NACKs (retryable) each batch of
  that partition that was not already durable before the failing write.
- A failed sync exits the process without acknowledging anything: after a failed fsync the page
  cache cannot be trusted, and recovery on the next start decides from the files what is whole.
- Every PRODUCE message gets exactly one answer, with one result per batch it carried.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import zmq

from zlog.ops.metrics import WorkerMetrics
from zlog.protocol import bodies, wire
from zlog.protocol.wire import Command
from zlog.storage import AppendResult, PartitionLog
from zlog.storage.errors import DiskFull, StorageError
from zlog.storage.sync import sync_partitions

log = logging.getLogger("zlog.worker")


@dataclass(slots=True)
class Reply:
    """The answer owed to one PRODUCE message: one result per batch it carried."""

    sock: zmq.Socket[bytes]
    reply_to: bytes
    rid: bytes
    multi: bool
    results: list[bodies.Ack | bodies.Nack | None]
    acks: str = "all"  # "all": answered once every in-sync replica has it (replicated partitions)
    tenants: list[str | None] = field(default_factory=list)  # each stored batch's tenant (None: default)


@dataclass(slots=True)
class Pending:
    """A batch staged this turn, waiting for the commit to know its result."""

    reply: Reply
    index: int
    partition: int
    result: AppendResult
    tenant: str | None = None  # None: the default tenant (``StorageWorker.logs``)

    @property
    def key(self) -> tuple[str | None, int]:
        return self.tenant, self.partition


def commit_turn(pending: list[Pending], log_of: Callable[[str | None, int], PartitionLog | None],
                metrics: WorkerMetrics, default_tenant: str, also: Sequence[PartitionLog] = ()) -> None:
    """Commit every partition a staged batch touched, sync them at once, and fill in each result.
    ``also``: logs already written this turn and owed a sync (a follower's), synced with them."""
    # (tenant, partition) -> (code, detail, how many of its staged batches were stored before the error)
    failed: dict[tuple[str | None, int], tuple[str, str, int]] = {}
    owed: list[PartitionLog] = list(also)
    t0 = time.perf_counter()
    for key in {x.key for x in pending}:
        plog = log_of(*key)
        assert plog is not None  # staged batches have their log
        try:
            if plog.commit(defer_sync=True):
                owed.append(plog)
        except (StorageError, OSError) as exc:
            code = "DISK_FULL" if isinstance(exc, DiskFull) else "STORAGE_ERROR"
            failed[key] = (code, str(exc), int(getattr(exc, "committed", 0)))
            log.error("commit failed", extra={"tenant": key[0], "partition": key[1], "code": code,
                                              "detail": str(exc), "committed_batches": failed[key][2]})
    if owed:
        # Group commit across partitions: one filesystem sync for every partition written.
        try:
            sync_partitions(owed)
        except OSError as exc:
            # Whether those writes are durable is now unknown, and the page cache may already
            # have dropped them: nothing may be acknowledged. Exit, and let recovery on the
            # next start decide from the files what is whole (what the fsync-failure lessons
            # of databases teach: never retry an fsync and trust it).
            log.critical("fsync failed; exiting without acknowledging", extra={"detail": str(exc)})
            os._exit(70)
        seconds = time.perf_counter() - t0
        for plog in owed:
            plog.synced(seconds)
    metrics.fsync_seconds.observe(time.perf_counter() - t0)
    m = metrics
    for x in pending:
        r = x.result
        if x.key in failed:
            code, text, stored = failed[x.key]
            if stored > 0 and not r.duplicate:
                # Staged before the failing write (a commit spanning a segment roll): durable.
                failed[x.key] = (code, text, stored - 1)
            else:
                m.errors.labels(kind=code).inc()
                x.reply.results[x.index] = bodies.Nack(code, text, True, x.partition)
                continue
        if r.duplicate:
            m.duplicates.inc()
        else:
            m.appended(x.partition, r.count, x.tenant or default_tenant)
        x.reply.results[x.index] = bodies.Ack(x.partition, r.base_offset, r.count, r.duplicate)


def reply_frames(reply: Reply) -> list[bytes]:
    """The ACK or NACK frames one PRODUCE message is owed."""
    results = [r if r is not None else bodies.Nack("INTERNAL", "no result", True) for r in reply.results]
    if reply.multi:
        frames = wire.encode(Command.ACK, 0, body=bodies.multi_ack_body(results))
    else:
        (r,) = results
        if isinstance(r, bodies.Ack):
            frames = wire.encode(Command.ACK, 0, partition=r.partition, body=bodies.ack_body(r))
        else:
            frames = wire.encode(Command.NACK, 0, partition=r.partition, body=bodies.nack_body(r))
    frames[2] = reply.rid
    return frames
