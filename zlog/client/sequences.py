"""A producer's sequencing state per (tenant, partition): producer id, next sequence, window.

Invariants:
- Per (tenant, partition), sequences are assigned in send order (``assign``) and a batch keeps
  its (producer id, sequence) across retries until it is acknowledged or its deadline passes.
- When a batch under the current id fails for good (``settled``), the partition moves to a fresh
  producer id, so later batches never wait on a gap; until the new id's first batch is
  acknowledged (``confirmed``), it is the only one in flight (``probing``).
- Bounded: at most ``MAX_IDLE_STATES`` states are kept; beyond, idle ones are forgotten (their
  next batch starts a fresh producer id, which a worker accepts like any new producer).
- Pure: no sockets, files or clocks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from zlog.client.batch import Batch
from zlog.protocol.errors import OverLimit

StateKey = tuple[str | None, int]  # (tenant, partition): each has its own sequences
MAX_IDLE_STATES = 4096  # idle per-(tenant, partition) states kept; beyond, idle ones are dropped


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

    def assign(self, b: Batch) -> None:
        """Give ``b`` the current producer id and the next sequence."""
        self.probing = self.probing or not self.confirmed
        b.producer_id, b.sequence = self.producer_id, self.next_seq
        self.next_seq += 1

    def settled(self, b: Batch, ok: bool) -> None:
        """``b`` (sent under this state) is acknowledged (``ok``) or failed for good."""
        if b.producer_id != self.producer_id:
            return
        self.probing = False
        if ok:
            self.confirmed = True
        else:
            # This sequence may or may not be stored; later batches must not wait on it.
            self.producer_id, self.next_seq, self.confirmed = new_producer_id(), 0, False

    def idle(self) -> bool:
        return self.inflight == 0 and self.open is None and not self.waiting and not self.probing


def state_of(states: dict[StateKey, PartitionState], tenant: str | None, p: int) -> PartitionState:
    """The state of (tenant, p), created on first use; bounded whatever the number of tenants."""
    st = states.get((tenant, p))
    if st is None:
        if len(states) >= MAX_IDLE_STATES:
            for k in [k for k, s in states.items() if s.idle()]:
                del states[k]
        st = states[(tenant, p)] = PartitionState(new_producer_id(), p, tenant)
    return st


def new_producer_id() -> bytes:
    return os.urandom(12)
