"""The retry loop of one batch (``zlog.client.retry.exchange``) over scripted outcomes.

The outcomes are what the sender would return attempt by attempt (an ACK, a NACK's error); the
rules under test are which of them may re-sequence a batch under the partition's new producer id.
"""

from __future__ import annotations

import asyncio
import time

from zlog.client.batch import Batch
from zlog.client.retry import exchange
from zlog.client.sequences import PartitionState, new_producer_id
from zlog.protocol import bodies
from zlog.protocol.errors import ZlogError


class Scripted:
    """Answers each attempt with the next outcome of a script and records what was sent."""

    def __init__(self, *outcomes: bodies.Ack | ZlogError) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[tuple[bytes, int]] = []

    async def attempt(self, b: Batch, *, first: bool, socket_index: int) -> bodies.Ack | ZlogError:
        self.sent.append((b.producer_id, b.sequence))
        return self.outcomes.pop(0)

    def refresh_owners(self) -> None:
        pass


async def no_wait(partition: int, delay: float) -> bool:
    return False


def gap() -> ZlogError:
    return ZlogError("OUT_OF_ORDER_SEQUENCE", "sequence 5 after 3", partition=0)


def moved_state(old: bytes) -> tuple[Batch, PartitionState]:
    """A batch under ``old`` whose partition has since moved to a new, confirmed producer id."""
    b = Batch(0, deadline=time.monotonic() + 5, producer_id=old, sequence=5)
    st = PartitionState(new_producer_id(), 0, confirmed=True)
    return b, st


def run(sender: Scripted, b: Batch, st: PartitionState) -> tuple[int, ZlogError | None]:
    return asyncio.run(exchange(sender, b, st, no_wait, 5.0))  # type: ignore[arg-type]


def test_a_gap_refusal_re_sequences_a_batch_that_cannot_arrive_otherwise() -> None:
    old = new_producer_id()
    b, st = moved_state(old)
    sender = Scripted(gap(), bodies.Ack(0, 40, 1))
    assert run(sender, b, st) == (40, None)
    assert sender.sent == [(old, 5), (st.producer_id, 0)]  # sent again at once under the new id


def test_a_batch_whose_earlier_attempt_may_still_arrive_is_not_sent_under_a_new_id() -> None:
    # The first attempt went out and its router died: that PRODUCE may sit in a worker's queue,
    # to be stored under the old id once its predecessor is. A copy under the new id would be a
    # second one, so the batch fails with the gap (unknown outcome) instead.
    for lost in ("ROUTER_LOST", "WORKER_LOST"):
        old = new_producer_id()
        b, st = moved_state(old)
        sender = Scripted(ZlogError(lost, "in flight", partition=0), gap(), bodies.Ack(0, 40, 1))
        offset, error = run(sender, b, st)
        assert offset == -1 and error is not None and error.code == "OUT_OF_ORDER_SEQUENCE", lost
        assert sender.sent == [(old, 5), (old, 5)] and st.next_seq == 0, lost
