"""``AsyncProducer``: the one produce path, used by the HTTP gateway and by native producers.

How a produce travels: records are encoded once (``zlog.ingest.records``), grouped by service, mapped
to partitions with FNV-1a, and appended to a per-partition accumulator. An accumulator is sent
as one PRODUCE message at the end of the current event-loop turn (or after ``linger_ms``), so
concurrent callers share messages. A first attempt costs no task and no ``wait_for``: the sender calls back with
its outcome (``Sender.submit``); only retries run as tasks. Each message carries (producer id, sequence) so a retry
after a lost ACK is stored once: the worker keeps the last sequences per producer.

Invariants:
- Every call's future resolves exactly once, when its last group is settled: per group, its
  (partition, base offset, count) share or a named ``ZlogError`` (NO_OWNER, TIMEOUT,
  BACKPRESSURE, ...); never hangs past its deadline.
- A refusal that names a wait (``OverLimit``: the tenant's rate, TENANT_RATE_LIMITED) is retried
  after that wait, not the usual backoff, while the deadline allows; it stored nothing.
- Per (tenant, partition), sequences are assigned in send order and a batch is retried with the same
  (producer id, sequence) until it is acknowledged or its deadline passes. When a batch fails
  for good, that partition moves to a fresh producer id, so later batches never wait on a gap;
  until the new id's first batch is acknowledged, it is the only one in flight.
- Bounded: at most ``max_inflight`` messages in flight per partition; beyond that records wait
  in the accumulator, which is itself bounded by ``max_pending_records`` (then Backpressure).
- With ``etcd`` endpoints (a replicated cluster), the routers are those registered in etcd
  (the ones given only start it), the owner map is etcd's leaders, and a batch backing off
  after a failure is sent again the moment etcd names a new leader (or epoch) for its
  partition: a failover costs one watch event, not the rest of a back-off.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import xxhash

from zlog.client.batch import Batch, Part, Pending, Share
from zlog.client.connection import AsyncClient
from zlog.client.sender import Outcome, Sender, owners_of
from zlog.ingest.records import Group, Limits, encode_batch
from zlog.protocol import bodies
from zlog.protocol.errors import Backpressure, OverLimit, Timeout, ZlogError
from zlog.protocol.hashing import Partitioner
from zlog.security.curve import ClientCurve

if TYPE_CHECKING:  # etcd's client is loaded only when discovery is on
    from zlog.replication.discovery import View
    from zlog.replication.watch import Discovery


@dataclass(slots=True)
class PartitionState:
    producer_id: bytes
    partition: int = 0
    tenant: str | None = None  # None: the cluster's default tenant
    next_seq: int = 0
    inflight: int = 0
    open: Batch | None = None
    waiting: list[Batch] = field(default_factory=list)
    # A worker accepts a producer id it does not know at any sequence. So until a batch under
    # the current id is acknowledged (``confirmed``), only one batch under it is in flight
    # (``probing``): otherwise seq 1 could be stored while seq 0 failed, and seq 0's retry would
    # then be answered as a duplicate of a batch that was never stored.
    confirmed: bool = False
    probing: bool = False
    # The tenant's rate refused a batch here (at ``limited_at``): within a delivery timeout of it,
    # a later batch's OUT_OF_ORDER_SEQUENCE is that refusal's doing (it overtook the refused batch,
    # or waited behind a new producer id's first batch the rate held back).
    limited: OverLimit | None = None
    limited_at: float = 0.0


# Failures that say the producer's map of partition owners may be stale.
OWNERSHIP_ERRORS = frozenset(("NO_OWNER", "NOT_OWNER", "WORKER_LOST"))
# Failures after which a batch may wait in a write-ahead log instead of failing the caller.
SPOOLABLE = frozenset(("NO_OWNER", "TIMEOUT", "WORKER_LOST", "ROUTER_LOST"))
# spool(partition, producer_id, sequence, max_ts, lines, tenant) -> True when durably spooled.
SpoolHook = Callable[[int, bytes, int, int, list[bytes], str | None], bool]
StateKey = tuple[str | None, int]  # (tenant, partition): each has its own sequences
MAX_IDLE_STATES = 4096  # idle per-(tenant, partition) states kept; beyond, idle ones are dropped
RETRY_BASE_S = 0.025
RETRY_CAP_S = 1.0


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
        self.etcd = tuple(etcd)
        self.etcd_prefix = etcd_prefix
        self.discovery: Discovery | None = None
        self.view: View | None = None
        self._wakes: dict[int, asyncio.Event] = {}  # partition -> set when etcd names a new leader

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and learn the partition count from a router (retrying until ``timeout``)."""
        self.client = AsyncClient(self.routers, hwm=self.hwm, curve=self.curve)
        if self.etcd and self.discovery is None:
            from zlog.replication.watch import Discovery

            loop = self.client.loop

            def changed(view: View) -> None:  # on the watch thread
                try:
                    loop.call_soon_threadsafe(self._follow, view)
                except RuntimeError:
                    pass  # the loop closed: nothing left to follow for

            self.discovery = Discovery(self.etcd, self.etcd_prefix, changed, name="zlog-producer-discovery")
            self.discovery.start()
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
        if self.discovery is not None and self.discovery.view is not None:
            self._follow(self.discovery.view)

    def _follow(self, view: View) -> None:
        """A new view of etcd (on the loop): its routers, its leaders; wake what waits on them."""
        from zlog.replication.discovery import changed_leaders

        if self.client is None or self.client.closed:
            return
        self.client.set_routers(view.fronts())
        if self.sender is None or not self.partitions:
            return  # not started yet: start() follows the view again
        self.sender.owners = view.leaders(self.partitions)
        for p in changed_leaders(self.view, view, self.partitions):
            ev = self._wakes.pop(p, None)
            if ev is not None:
                ev.set()
        self.view = view

    async def _backoff(self, partition: int, delay: float) -> bool:
        """Sleep ``delay``, or less if etcd names a new leader of ``partition`` meanwhile (True)."""
        if self.discovery is None:
            await asyncio.sleep(delay)
            return False
        ev = self._wakes.get(partition)
        if ev is None:
            ev = self._wakes[partition] = asyncio.Event()
        try:
            await asyncio.wait_for(ev.wait(), delay)
            return True
        except TimeoutError:
            return False

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
            st = self._state(tenant, p)
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

    def _state(self, tenant: str | None, p: int) -> PartitionState:
        st = self._states.get((tenant, p))
        if st is None:
            if len(self._states) >= MAX_IDLE_STATES:
                # Bounded whatever the number of tenants: forget idle states (their next batch
                # starts a fresh producer id, which a worker accepts like any new producer).
                for k in [k for k, s in self._states.items() if _idle(s)]:
                    del self._states[k]
            st = self._states[(tenant, p)] = PartitionState(_new_producer_id(), p, tenant)
        return st

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
                st.probing = st.probing or not st.confirmed
                b.producer_id, b.sequence = st.producer_id, st.next_seq
                st.next_seq += 1
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
        share_base, error = await self._exchange(b, st, first)
        self._finish(st, b, share_base, error)

    def _finish(self, st: PartitionState, b: Batch, share_base: int, error: ZlogError | None) -> None:
        st.inflight -= 1
        self._pending_records -= b.count
        if self.idempotent and b.producer_id == st.producer_id:
            st.probing = False
            if error is None:
                st.confirmed = True
            else:
                # This sequence may or may not be stored; later batches must not wait on it.
                st.producer_id, st.next_seq, st.confirmed = _new_producer_id(), 0, False
        self._settle(b, share_base, error)
        self._pump(st)
        if self._pending_records == 0:
            self._idle.set()

    async def _exchange(self, b: Batch, st: PartitionState | None,
                        first: Outcome = None) -> tuple[int, ZlogError | None]:
        """Send ``b`` until it is acknowledged, fails for good, or its deadline passes.

        ``first``: the error the first attempt already ended with (``_first_outcome``)."""
        attempt = 0
        error: ZlogError | None = None
        limited: OverLimit | None = None  # the tenant's rate kept this batch (or one before it) out
        route_socket = b.partition
        pending = first
        while True:
            assert self.sender is not None
            if pending is not None:
                outcome: Outcome = pending
                pending = None
            else:
                remaining = b.deadline - time.monotonic()
                if remaining <= 0:
                    return -1, _cause(limited, error or Timeout("storage did not acknowledge within the deadline", b.partition))
                outcome = await self.sender.attempt(b, first=attempt == 0, socket_index=route_socket)
            if outcome is None:
                return -1, Timeout("storage did not acknowledge within the deadline", b.partition)
            if isinstance(outcome, bodies.Ack):
                return outcome.offset, None
            error = outcome
            if isinstance(error, OverLimit):
                limited = error
                if st is not None:
                    st.limited, st.limited_at = error, time.monotonic()
            elif (error.code == "OUT_OF_ORDER_SEQUENCE" and st is not None and st.limited is not None
                  and time.monotonic() - st.limited_at < self.delivery_timeout_s):
                limited = st.limited  # it overtook a batch the tenant's rate refused
            if error.code in OWNERSHIP_ERRORS:
                self.sender.refresh_owners()
            if not error.retry or error.code in b.fail_fast:
                return -1, _cause(limited, error)
            if (error.code == "OUT_OF_ORDER_SEQUENCE" and st is not None and b.producer_id
                    and b.producer_id != st.producer_id and (st.confirmed or not st.probing)):
                # Provably not stored (the worker refused the gap), and the partition has moved to
                # a new producer id after an earlier failure: re-sequence and send again at once,
                # unless the new id still has its one unconfirmed batch in flight (then back off).
                st.probing = st.probing or not st.confirmed
                b.producer_id, b.sequence = st.producer_id, st.next_seq
                st.next_seq += 1
                continue
            attempt += 1
            if isinstance(error, OverLimit):
                # The tenant's rate (docs/tenants.md): wait what the router says, spread so that the
                # batches refused together do not all come back at once; nothing was stored.
                delay = error.retry_after * random.uniform(1.0, 1.25)
            else:
                route_socket += 1  # another router, if there are several
                delay = random.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * (2**attempt)))
            if delay >= b.deadline - time.monotonic():
                # No time for another attempt after the backoff: an attempt started at the deadline
                # would only turn this named error (DISK_FULL, BACKPRESSURE...) into a TIMEOUT.
                return -1, _cause(limited, error)
            if await self._backoff(b.partition, delay):
                attempt = 0  # a new leader: the next failure backs off from the start again

    def _settle(self, b: Batch, share_base: int, error: ZlogError | None) -> None:
        spooled = False
        if error is not None and self.spool is not None and error.code in SPOOLABLE:
            spooled = self.spool(b.partition, b.producer_id, b.sequence, b.max_ts, b.lines, b.tenant)
            if not spooled:
                error = ZlogError("WAL_FULL", f"{error.message}, and the ingest write-ahead log is full",
                                  partition=b.partition)
        for part in b.parts:
            if spooled:
                part.pending.settle(part.index, Share(b.partition, -1, part.count, spooled=True))
            elif error is not None:
                part.pending.settle(part.index, error)
            else:
                off = share_base + part.start if share_base >= 0 else -1
                part.pending.settle(part.index, Share(b.partition, off, part.count))

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
            base, error = await self._exchange(b, None)
            self._settle(b, base, error)

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
        if self.discovery is not None:
            self.discovery.stop()
        if self.client is not None:
            self.client.close()


def _idle(st: PartitionState) -> bool:
    return st.inflight == 0 and st.open is None and not st.waiting and not st.probing


def _new_producer_id() -> bytes:
    return os.urandom(12)


def _cause(limited: OverLimit | None, error: ZlogError) -> ZlogError:
    """The error to report for a batch that failed for good: the tenant's rate refusal when that
    is why it was not stored (it overtook a refused batch of its partition, so the worker refused
    it as a gap). A TIMEOUT stays one: that attempt may have been stored."""
    if limited is not None and error.code == "OUT_OF_ORDER_SEQUENCE":
        return OverLimit(limited.code, limited.message, limited.retry_after, partition=error.partition)
    return error
