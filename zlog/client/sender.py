"""How one attempt to deliver a batch travels: alone, or with the other batches for its owner.

First attempts of the batches that are ready in one event-loop turn go out as one PRODUCE per
owning worker (a multi-partition PRODUCE, see docs/protocol.md): one router hop and one worker
wake-up instead of one per partition. Retries go alone, by partition, through the next router.

Invariants:
- Every attempt ends in exactly one outcome for its batch: its ACK, its named error, or None
  when its own deadline passed first; a whole-message failure becomes each batch's error, named
  with that batch's partition.
- The owner map only decides what travels together, never whether a record is stored: a stale
  map costs a NOT_OWNER or NO_OWNER refusal and a retry alone, after which the map is refreshed
  (at most once a second).
- Batches of one partition leave in the order they were handed in, so their sequences arrive in
  order (several batches of one partition may share a message).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from zlog.client.batch import Batch
from zlog.client.connection import AsyncClient, error_of, nack_error
from zlog.protocol import bodies, wire
from zlog.protocol.errors import ZlogError
from zlog.protocol.wire import Command

Outcome = bodies.Ack | ZlogError | None
Done = Callable[[Outcome], None]


class Sender:
    def __init__(self, client: AsyncClient, owners: list[int | None], *, coalesce: bool = True) -> None:
        self.client = client
        self.owners = owners
        self.coalesce = coalesce
        self.acks = "all"  # "leader": a replicated partition acknowledges after the leader's own commit
        self._outbox: dict[int, list[tuple[Batch, Done]]] = {}
        self._outbox_scheduled = False
        self._refreshing = False
        self._refreshed_at = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()

    async def attempt(self, b: Batch, *, first: bool, socket_index: int) -> Outcome:
        remaining = b.deadline - time.monotonic()
        owner = self.owner(b.partition) if first else None
        if owner is not None:
            return await self.together(b, owner, remaining)
        return await self.direct(b, socket_index, remaining)

    def _body(self, b: Batch) -> bytes:
        return bodies.produce_body(b.data(), b.max_ts, b.producer_id or None, b.sequence if b.producer_id else None,
                                   b.tenant, acks=self.acks)

    async def direct(self, b: Batch, socket_index: int, remaining: float) -> Outcome:
        """One PRODUCE of this batch alone: its ACK, its error, or None when the time ran out."""
        try:
            fut = self.client.send(Command.PRODUCE, partition=b.partition, body=self._body(b),
                                   socket_index=socket_index)
        except ZlogError as exc:
            return exc
        try:
            msg = await asyncio.wait_for(fut, remaining)
        except TimeoutError:
            return None
        except ZlogError as exc:  # ROUTER_LOST: the connection broke before the reply came
            return _for_partition(exc, b.partition)
        if msg.command is Command.ACK:
            return bodies.parse_ack(msg.body)
        return nack_error(msg) if msg.command is Command.NACK else ZlogError("INTERNAL", "unexpected reply")

    async def together(self, b: Batch, owner: int, remaining: float) -> Outcome:
        """A first attempt awaited: ``submit``, with a future for its outcome."""
        fut: asyncio.Future[Outcome] = self.client.loop.create_future()

        def done(outcome: Outcome) -> None:
            if not fut.done():  # the awaiting caller may have been cancelled
                fut.set_result(outcome)

        self.submit(b, owner, done)
        return await fut

    def submit(self, b: Batch, owner: int, done: Done) -> None:
        """A first attempt: the batches for one owner submitted in this loop turn travel as one
        PRODUCE (one router hop and one worker wake-up instead of one per partition). ``done``
        is called once, from the loop, with the batch's outcome (None: its deadline passed)."""
        self._outbox.setdefault(owner, []).append((b, done))
        if not self._outbox_scheduled:
            self._outbox_scheduled = True
            self.client.loop.call_soon(self._flush_outbox)

    def _flush_outbox(self) -> None:
        # No task and no wait_for per message: the reply's future and one deadline timer call
        # back into ``_Flight``, which hands each batch its outcome.
        self._outbox_scheduled = False
        boxes, self._outbox = self._outbox, {}
        for owner, items in boxes.items():
            if len(items) == 1:
                b = items[0][0]
                body = self._body(b)
            else:
                body = bodies.multi_produce_body([(b.partition, b.data(), b.max_ts, b.producer_id or None,
                                                   b.sequence if b.producer_id else None, b.tenant)
                                                  for b, _ in items], self.acks)
            try:
                fut = self.client.send(Command.PRODUCE, partition=items[0][0].partition, body=body,
                                       socket_index=owner)
            except ZlogError as exc:
                for b, done in items:
                    done(_for_partition(exc, b.partition))
                continue
            _Flight(self.client.loop, fut, items)

    def owner(self, partition: int) -> int | None:
        return self.owners[partition] if self.coalesce and partition < len(self.owners) else None

    def refresh_owners(self) -> None:
        """Ask a router for the owners again (at most once a second): only the batching of first
        attempts depends on them, never correctness, so a stale map costs a retry at most."""
        now = time.monotonic()
        if self._refreshing or now - self._refreshed_at < 1.0:
            return
        self._refreshing = True

        async def refresh() -> None:
            try:
                meta = await self.client.metadata(timeout=1.0)
                self.owners = owners_of(meta, len(self.owners))
            except ZlogError:
                pass
            finally:
                self._refreshing = False
                self._refreshed_at = time.monotonic()

        task = asyncio.ensure_future(refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        for t in list(self._tasks):
            t.cancel()


class _Flight:
    """One PRODUCE in flight for the batches ``items``: the reply settles every batch still
    waiting; a timer at the earliest waiting deadline settles those whose deadline passed (with
    None) and is set again for the next, so no batch waits past its own deadline."""

    __slots__ = ("loop", "fut", "items", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[wire.Message],
                 items: list[tuple[Batch, Done]]) -> None:
        self.loop = loop
        self.fut = fut
        self.items: list[tuple[Batch, Done]] | None = items
        self.timer = loop.call_at(self._loop_time(min(b.deadline for b, _ in items)), self._expire)
        fut.add_done_callback(self._replied)

    def _loop_time(self, deadline: float) -> float:
        # Deadlines are time.monotonic(); the loop's clock may have another origin.
        return self.loop.time() + (deadline - time.monotonic())

    def _expire(self) -> None:
        items = self.items
        if items is None:
            return
        now = time.monotonic()
        left = [(b, done) for b, done in items if b.deadline > now]
        self.items = left or None
        for b, done in items:
            if b.deadline <= now:
                done(None)
        if left:
            self.timer = self.loop.call_at(self._loop_time(min(b.deadline for b, _ in left)), self._expire)
        else:
            self.fut.cancel()  # nobody waits for the reply any more: drop the client's waiter

    def _replied(self, fut: asyncio.Future[wire.Message]) -> None:
        items = self.items
        if items is None:
            return
        self.items = None
        self.timer.cancel()
        outcomes: list[Outcome]
        try:
            msg = fut.result()
            if msg.command is Command.ACK:
                if len(items) == 1:
                    outcomes = [bodies.parse_ack(msg.body)]
                else:
                    results = bodies.parse_multi_ack(msg.body)
                    if len(results) != len(items):
                        raise ZlogError("INTERNAL", "a multi-partition ACK with the wrong number of results")
                    outcomes = [r if isinstance(r, bodies.Ack) else error_of(r) for r in results]
            else:
                err = nack_error(msg) if msg.command is Command.NACK else ZlogError("INTERNAL", "unexpected reply")
                outcomes = [_for_partition(err, b.partition) for b, _ in items]
        except asyncio.CancelledError:
            outcomes = [ZlogError("SHUTTING_DOWN", "client closed", partition=b.partition) for b, _ in items]
        except (ZlogError, wire.MalformedFrame) as exc:
            err = exc if isinstance(exc, ZlogError) else ZlogError("INTERNAL", str(exc))
            outcomes = [_for_partition(err, b.partition) for b, _ in items]
        for (_, done), outcome in zip(items, outcomes, strict=True):
            done(outcome)


def _for_partition(err: ZlogError, partition: int) -> ZlogError:
    """A whole-message failure, as the error of one of the batches it carried."""
    return error_of(bodies.Nack(err.code, err.message, err.retry, partition))


def owners_of(meta: dict[str, Any], partitions: int) -> list[int | None]:
    owners = meta.get("owners")
    if not isinstance(owners, list) or len(owners) != partitions:
        return [None] * partitions
    return [o if isinstance(o, int) and not isinstance(o, bool) else None for o in owners]
