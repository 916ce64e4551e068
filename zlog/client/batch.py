"""What a producer sends: a batch of one partition's records, and the callers' shares of it.

Invariants:
- A ``Batch`` holds records of one tenant's partition only, in the order the callers enqueued them; a
  caller's ``Part`` is a contiguous run of it, so its offsets are the batch's base offset plus
  its start.
- ``producer_id`` and ``sequence`` are assigned when the batch is first sent and kept across
  retries (they change only when the batch is provably not stored, see ``retry.py``).
- ``settle`` settles every part exactly once: the same outcome for all of a batch's callers
  (stored, spooled, or the one named error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from zlog.protocol.errors import ZlogError

# Failures after which a batch may wait in a write-ahead log instead of failing the caller.
SPOOLABLE = frozenset(("NO_OWNER", "TIMEOUT", "WORKER_LOST", "ROUTER_LOST"))
# spool(partition, producer_id, sequence, max_ts, lines, tenant) -> True when durably spooled.
SpoolHook = Callable[[int, bytes, int, int, list[bytes], str | None], bool]


@dataclass(frozen=True, slots=True)
class Share:
    """Where a contiguous run of one caller's records landed."""

    partition: int
    offset: int  # base offset; -1 if a duplicate too old to remember, or spooled
    count: int
    spooled: bool = False  # in the gateway's write-ahead log, to be stored when the owner is back




class Pending:
    """One call's results, group by group: its future resolves once, when the last group is
    settled, to a ``Share`` or the named error of each group (one wake-up per call, not one
    per group)."""

    __slots__ = ("future", "results", "left")

    def __init__(self, future: asyncio.Future[list[Share | ZlogError]], groups: int) -> None:
        self.future = future
        self.results: list[Share | ZlogError | None] = [None] * groups
        self.left = groups
        if not groups:
            future.set_result([])

    def settle(self, index: int, result: Share | ZlogError) -> None:
        if self.results[index] is not None:
            return
        self.results[index] = result
        self.left -= 1
        if self.left == 0 and not self.future.done():  # done: the caller stopped waiting
            self.future.set_result(self.results)  # type: ignore[arg-type]  # no None is left


@dataclass(slots=True)
class Part:
    """One caller's contiguous run inside a batch: group ``index`` of the call ``pending``."""

    pending: Pending
    index: int
    start: int
    count: int


@dataclass(slots=True)
class Batch:
    partition: int
    tenant: str | None = None  # None: the cluster's default tenant
    chunks: list[bytes] = field(default_factory=list)  # callers' blobs of newline-terminated lines
    count: int = 0  # lines in chunks
    nbytes: int = 0
    max_ts: int = 0
    parts: list[Part] = field(default_factory=list)
    deadline: float = 0.0
    fail_fast: frozenset[str] = frozenset()
    producer_id: bytes = b""
    sequence: int = -1

    def data(self) -> bytes:
        """The batch's lines as one newline-terminated blob (joined once, when it is sent)."""
        if len(self.chunks) != 1:
            self.chunks = [b"".join(self.chunks)]
        return self.chunks[0]

    @property
    def lines(self) -> list[bytes]:
        return self.data().split(b"\n")[:-1]

    def settle(self, share_base: int, error: ZlogError | None, spool: SpoolHook | None) -> None:
        """Settle every caller's part: its share of ``share_base``, spooled (a ``SPOOLABLE``
        error and a ``spool`` that took the batch), or the error."""
        spooled = False
        if error is not None and spool is not None and error.code in SPOOLABLE:
            spooled = spool(self.partition, self.producer_id, self.sequence, self.max_ts, self.lines, self.tenant)
            if not spooled:
                error = ZlogError("WAL_FULL", f"{error.message}, and the ingest write-ahead log is full",
                                  partition=self.partition)
        for part in self.parts:
            if spooled:
                part.pending.settle(part.index, Share(self.partition, -1, part.count, spooled=True))
            elif error is not None:
                part.pending.settle(part.index, error)
            else:
                off = share_base + part.start if share_base >= 0 else -1
                part.pending.settle(part.index, Share(self.partition, off, part.count))
