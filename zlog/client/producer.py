"""``AsyncProducer``: the one produce path, used by the HTTP gateway and by native producers.

How a produce travels: records are encoded once (``zlog.ingest.records``), grouped by service, mapped
to partitions with FNV-1a, and appended to a per-partition accumulator. An accumulator is sent
as one PRODUCE message at the end of the current event-loop turn (or after ``linger_ms``), so
concurrent callers share messages. A first attempt costs no task and no ``wait_for``: the sender calls back with
its outcome (``Sender.submit``); only retries run as tasks. Each message carries (producer id, sequence) so a retry
after a lost ACK is stored once: the worker keeps the last sequences per producer.

Beside it: ``sequences.py`` (producer ids and sequences per (tenant, partition)), ``retry.py``
(one batch's retry loop), ``leaders.py`` (etcd's routers and leaders, when replicated).

Invariants:
- Every call's future resolves exactly once, when its last group is settled: per group, its
  (partition, base offset, count) share or a named ``ZlogError`` (NO_OWNER, TIMEOUT,
  BACKPRESSURE, ...); never hangs past its deadline.
- Sequencing and retries keep ``sequences.py``'s and ``retry.py``'s invariants.
- Bounded: at most ``max_inflight`` messages in flight per partition; beyond that records wait
  in the accumulator, which is itself bounded by ``max_pending_records`` (then Backpressure).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import xxhash

from zlog.client.batch import Batch, Part, Pending, Share, SpoolHook
from zlog.client.connection import AsyncClient
from zlog.client.leaders import Leaders
from zlog.client.retry import exchange
from zlog.client.sender import Outcome, Sender, owners_of
from zlog.client.sequences import PartitionState, StateKey, state_of
from zlog.ingest.records import Group, Limits, encode_batch
from zlog.protocol import bodies
from zlog.protocol.errors import Backpressure, Timeout, ZlogError
from zlog.protocol.hashing import Partitioner
from zlog.security.curve import ClientCurve

if TYPE_CHECKING:
    from zlog.replication.discovery import View


class AsyncProducer:
    """Batches, sequences, sends and retries records; one instance per process is plenty."""

    def __init__(
        self,
        routers: Sequence[str],
        *,
        linger_ms: float = 0.0,
        max_batch_records: int = 20_000,
        max_batch_bytes: int = 4 * 1024 * 1024,
        max_inflight: int = 4,
        max_pending_records: int = 1_000_000,
        delivery_timeout_s: float = 10.0,
        idempotent: bool = True,
        hwm: int = 10_000,
        node_id: str = "",
        limits: Limits | None = None,
        coalesce: bool = True,
        acks: str = "all",
        curve: ClientCurve | None = None,
        etcd: Sequence[str] = (),
        etcd_prefix: str = "/zlog",
    ) -> None:
        if acks not in ("all", "leader"):
            raise ValueError("acks must be 'all' or 'leader'")
        self.acks = acks
        self.routers = list(routers)
        self.curve = curve
        self.linger_s = linger_ms / 1000.0
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.max_inflight = max_inflight
        self.max_pending_records = max_pending_records
        self.delivery_timeout_s = delivery_timeout_s
        self.idempotent = idempotent
        self.hwm = hwm
        self.node_id = node_id or f"producer-{os.getpid()}"
        self.limits = limits or Limits()
        self.client: AsyncClient | None = None
        self.partitioner: Partitioner | None = None
        self.partitions = 0
        self._states: dict[StateKey, PartitionState] = {}
        self._pending_records = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.spool: SpoolHook | None = None
        self._busy = 1.0  # start by lingering; see enqueue
        self.coalesce = coalesce
        self.sender: Sender | None = None
        self.leaders = Leaders(etcd, etcd_prefix)

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and learn the partition count from a router (retrying until ``timeout``)."""
        self.client = AsyncClient(self.routers, hwm=self.hwm, curve=self.curve)
        self.leaders.start(self.client, self._follow)
        deadline = time.monotonic() + timeout
        while True:
            try:
                meta = await self.client.metadata(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
                break
            except ZlogError:
                if time.monotonic() >= deadline:
                    raise Timeout(f"no router answered at {', '.join(self.routers)}") from None
                await asyncio.sleep(0.1)
        self.partitions = int(meta["partitions"])
        self.sender = Sender(self.client, owners_of(meta, self.partitions), coalesce=self.coalesce)
        self.sender.acks = self.acks
        self.partitioner = Partitioner(self.partitions)
        self._states = {}
        discovery = self.leaders.discovery
        if discovery is not None and discovery.view is not None:
            self._follow(discovery.view)

    def _follow(self, view: View) -> None:
        self.leaders.follow(view, self.client, self.sender, self.partitions)

    # -- the API --------------------------------------------------------------------------

    async def send(self, records: Sequence[dict[str, Any]], *, client_ip: str = "", timeout: float | None = None,
                   tenant: str | None = None) -> list[tuple[int, int]]:
        """Validate, enrich, store (as ``tenant``; None: the default tenant); returns (partition,
        offset) per record in input order."""
        groups = encode_batch(list(records), self.limits, received_at=int(time.time() * 1000),
                              client_ip=client_ip, node_id=self.node_id)
        shares = await self.send_groups(groups, timeout=timeout, tenant=tenant)
        placed = {svc: iter(range(sh.offset, sh.offset + sh.count)) for svc, sh in zip(groups, shares, strict=True)}
        parts = {svc: sh.partition for svc, sh in zip(groups, shares, strict=True)}
        return [(parts[r["service"]], next(placed[r["service"]])) for r in records]

    async def send_groups(
        self, groups: dict[str, Group], *, timeout: float | None = None, fail_fast: Iterable[str] = (),
        tenant: str | None = None,
    ) -> list[Share]:
        """Store pre-encoded groups; one ``Share`` per group, in ``groups`` order.

        Raises the first group's error if any group fails; ``send_groups_settled`` reports each.
        """
        results = await self.send_groups_settled(groups, timeout=timeout, fail_fast=fail_fast, tenant=tenant)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]

    async def send_groups_settled(
        self, groups: dict[str, Group], *, timeout: float | None = None, fail_fast: Iterable[str] = (),
        tenant: str | None = None,
    ) -> list[Share | ZlogError]:
        return await self.enqueue(groups, timeout=timeout, fail_fast=fail_fast, tenant=tenant)

    def enqueue(
        self, groups: dict[str, Group], *, timeout: float | None = None, fail_fast: Iterable[str] = (),
        tenant: str | None = None,
    ) -> asyncio.Future[list[Share | ZlogError]]:
        """Add groups to the accumulators of ``tenant`` (None: the default tenant); returns one
        future for them all: a ``Share`` or the named error per group, in ``groups`` order."""
        if self.client is None or self.partitioner is None:
            raise ZlogError("SHUTTING_DOWN", "producer is not started")
        n = sum(g.count for g in groups.values())
        if self._pending_records + n > self.max_pending_records:
            raise Backpressure("producer queue is full")
        loop = self.client.loop
        # Linger only under concurrent load: a caller that is usually alone (one client sending
        # in a loop) has nothing to share a message with, and waiting would only add latency.
        # How often others were in flight when a caller arrived is a moving average.
        self._busy = self._busy * 0.9 + (0.1 if self._pending_records > 0 else 0.0)
        linger = self._busy > 0.2
        deadline = time.monotonic() + (self.delivery_timeout_s if timeout is None else timeout)
        ff = frozenset(fail_fast)
        pending = Pending(loop.create_future(), len(groups))
        for i, (service, g) in enumerate(groups.items()):
            p = self.partitioner(service)
            st = state_of(self._states, tenant, p)
            b = st.open
            gbytes = len(g.data)
            if (
                b is None
                or b.count + g.count > self.max_batch_records
                or b.nbytes + gbytes > self.max_batch_bytes
                or b.fail_fast != ff
            ):
                if b is not None:
                    self._close_batch(st)
                b = st.open = Batch(p, tenant, deadline=deadline, fail_fast=ff)
                if st.inflight < self.max_inflight:
                    self._schedule_flush(st, linger)
            b.parts.append(Part(pending, i, b.count, g.count))
            b.chunks.append(g.data)
            b.count += g.count
            b.nbytes += gbytes
            if g.max_timestamp > b.max_ts:
                b.max_ts = g.max_timestamp
            if deadline < b.deadline:
                b.deadline = deadline
        self._pending_records += n
        self._idle.clear()
        return pending.future

    # -- batching -------------------------------------------------------------------------

    def _schedule_flush(self, st: PartitionState, linger: bool) -> None:
        # A timer per batch, not one per linger window: a batch opened late in a shared window
        # would leave nearly empty (measured: more, smaller messages and more storage CPU per log).
        assert self.client is not None
        if linger and self.linger_s > 0:
            self.client.loop.call_later(self.linger_s, self._pump, st)
        else:
            self.client.loop.call_soon(self._pump, st)

    def _close_batch(self, st: PartitionState) -> None:
        b = st.open
        st.open = None
        if b is not None:
            st.waiting.append(b)

    def _pump(self, st: PartitionState) -> None:
        # While the window is full the open batch stays open and keeps growing: under load,
        # batches get bigger instead of more numerous (Kafka's accumulator).
        while st.inflight < self.max_inflight:
            if self.idempotent and not st.confirmed and st.probing:
                break  # the new producer id's first batch must be acknowledged first
            if st.waiting:
                b = st.waiting.pop(0)
            elif st.open is not None:
                b, st.open = st.open, None
            else:
                break
            if self.idempotent:
                st.assign(b)
            st.inflight += 1
            assert self.sender is not None
            owner = self.sender.owner(b.partition)
            if b.deadline <= time.monotonic():  # waited out its deadline in the accumulator: not sent
                self.client.loop.call_soon(self._first_outcome, st, b, None)  # type: ignore[union-attr]
            elif owner is None:
                self._spawn(self._deliver(st, b, None))
            else:
                # The first attempt travels without a task: the sender calls back with its outcome.
                self.sender.submit(b, owner, functools.partial(self._first_outcome, st, b))

    def _first_outcome(self, st: PartitionState, b: Batch, outcome: Outcome) -> None:
        if isinstance(outcome, bodies.Ack):
            self._finish(st, b, outcome.offset, None)
        elif outcome is None:
            self._finish(st, b, -1, Timeout("storage did not acknowledge within the deadline", b.partition))
        elif self.client is None or self.client.closed:
            self._finish(st, b, -1, outcome)
        else:  # an error: the retry loop takes over (rare, so a task is fine)
            self._spawn(self._deliver(st, b, outcome))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, st: PartitionState, b: Batch, first: Outcome) -> None:
        assert self.sender is not None
        share_base, error = await exchange(self.sender, b, st, self.leaders.backoff, self.delivery_timeout_s, first)
        self._finish(st, b, share_base, error)

    def _finish(self, st: PartitionState, b: Batch, share_base: int, error: ZlogError | None) -> None:
        st.inflight -= 1
        self._pending_records -= b.count
        if self.idempotent:
            st.settled(b, error is None)
        b.settle(share_base, error, self.spool)
        self._pump(st)
        if self._pending_records == 0:
            self._idle.set()

    async def send_keyed(
        self, groups: dict[str, Group], key: bytes, *, timeout: float | None = None, fail_fast: Iterable[str] = (),
        tenant: str | None = None,
    ) -> list[Share | ZlogError]:
        """Store ``groups`` under a caller's idempotency key: one batch per partition, sent with
        producer id = hash(key) and sequence 0, so a retry with the same key is recognised by the
        workers (durably, across gateway processes and restarts) and stored once."""
        if self.client is None or self.partitioner is None:
            raise ZlogError("SHUTTING_DOWN", "producer is not started")
        pid = xxhash.xxh3_128_digest(b"zlog-idempotency-key:" + key)[:16]
        deadline = time.monotonic() + (self.delivery_timeout_s if timeout is None else timeout)
        batches: dict[int, Batch] = {}
        pending = Pending(self.client.loop.create_future(), len(groups))
        for i, (service, g) in enumerate(groups.items()):
            p = self.partitioner(service)
            b = batches.get(p)
            if b is None:
                b = batches[p] = Batch(p, tenant, deadline=deadline, fail_fast=frozenset(fail_fast),
                                        producer_id=pid, sequence=0)
            b.parts.append(Part(pending, i, b.count, g.count))
            b.chunks.append(g.data)
            b.count += g.count
            b.max_ts = max(b.max_ts, g.max_timestamp)

        async def one(b: Batch) -> None:
            assert self.sender is not None
            base, error = await exchange(self.sender, b, None, self.leaders.backoff, self.delivery_timeout_s)
            b.settle(base, error, self.spool)

        await asyncio.gather(*(one(b) for b in batches.values()))
        return await pending.future

    async def flush(self) -> None:
        """Wait until everything enqueued so far is acknowledged or has failed."""
        for st in list(self._states.values()):
            if st.open is not None:
                self._pump(st)
        await self._idle.wait()

    async def close(self, timeout: float = 10.0) -> None:
        """Flush (up to ``timeout``), then close the sockets; pending callers get errors."""
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            pass
        for t in list(self._tasks):
            t.cancel()
        if self.sender is not None:
            self.sender.cancel()
        self.leaders.stop()
        if self.client is not None:
            self.client.close()

