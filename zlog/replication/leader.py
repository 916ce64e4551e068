"""A partition this worker leads in one epoch: followers' fetches, the ISR, held acknowledgements.

Invariants:
- A fetch is answered from committed batches only, and only with batches of this leader's log
  (``logfiles.BatchReader``); a fetch with nothing to return is parked until the next commit or
  its ``wait_ms`` (a long poll), so an idle follower costs one message per ``wait_ms``.
- A held (acks=all) reply is released only when the high watermark passes the end of each of
  its batches, and NACKed (retryable) if this worker stops leading first: the producer's retry,
  deduplicated by producer id and sequence, then finds the batch wherever it ended up.
- A fetch below this log's start (retention deleted those segments) is answered
  ``OFFSET_OUT_OF_RANGE`` with the log start and the producer snapshot its first segment starts
  with, never with a stall or a guess.
- Each batch in a fetch reply carries the epoch it was written in (from the epoch cache), so
  followers' epoch caches are the leader's.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from zlog.replication.epochs import EpochCache
from zlog.replication.isr import LeaderState
from zlog.replication.logfiles import BatchReader, NotABoundary, first_producers
from zlog.replication.messages import Request, epoch_reply, error_reply, fetch_reply, out_of_range_reply
from zlog.storage import PartitionLog


@dataclass(slots=True)
class Waiter:
    """A PRODUCE reply waiting for the high watermark of one or more partitions."""

    reply: Any  # zlog.worker.turn.Reply
    outstanding: int = 0
    failed: bool = False


@dataclass(slots=True)
class Parked:
    ident: bytes
    request: Request
    deadline_ms: float


@dataclass(slots=True)
class Led:
    partition: int
    name: str
    epoch: int
    state: LeaderState
    cache: EpochCache
    reader: BatchReader = field(default_factory=BatchReader)
    parked: list[Parked] = field(default_factory=list)
    waiting: deque[tuple[int, Waiter]] = field(default_factory=deque)
    proposed: frozenset[int] | None = None
    proposed_ms: float = 0.0

    def answer_epoch(self, req: Request, plog: PartitionLog) -> bytes:
        epoch, end = self.cache.end_offset(req.epoch, plog.next_offset)
        return epoch_reply(req, epoch, end, self.epoch)

    def answer_fetch(self, ident: bytes, req: Request, plog: PartitionLog, now_ms: float) -> tuple[bytes | None, bool]:
        """(the reply, or None when parked; whether the high watermark moved)."""
        if req.epoch != self.epoch:
            return error_reply(req, "NOT_LEADER", self.epoch), False
        if req.offset > plog.next_offset:
            return error_reply(req, "OFFSET", self.epoch), False
        if req.offset < plog.lowest_offset:  # retention deleted it: the follower starts where we do
            return out_of_range_reply(req, self.epoch, plog.lowest_offset, first_producers(plog)), False
        moved = self.state.fetched(req.replica, req.offset, now_ms)
        try:
            batches = self.reader.read(plog, req.offset, req.max_bytes)
        except NotABoundary:
            return error_reply(req, "OFFSET", self.epoch), moved
        if not batches and req.wait_ms > 0:
            self.parked.append(Parked(ident, req, now_ms + req.wait_ms))
            return None, moved
        epochs = [self.cache.epoch_of(b.base) for b in batches]
        return fetch_reply(req, self.state.hw, plog.next_offset, batches, epochs), moved

    def release(self) -> list[Waiter]:
        """Waiters whose every batch is now below the high watermark."""
        done = []
        hw = self.state.hw
        while self.waiting and self.waiting[0][0] <= hw:
            _, w = self.waiting.popleft()
            w.outstanding -= 1
            if w.outstanding == 0:
                done.append(w)
        return done

    def abandon(self) -> list[Waiter]:
        """This worker no longer leads: every waiter fails (the caller NACKs it once)."""
        out = []
        while self.waiting:
            _, w = self.waiting.popleft()
            w.outstanding -= 1
            if not w.failed:
                w.failed = True
                out.append(w)
        return out
