"""The retry loop of one batch: send until acknowledged, failed for good, or out of time.

Invariants:
- A batch is retried with the same (producer id, sequence); it is re-sequenced only when the
  worker refused it as out of order (provably not stored) after its partition moved to a new
  producer id, and no earlier attempt of it may still arrive (none ended ``IN_FLIGHT_ERRORS``:
  a copy queued at a worker would be stored under the old identity once its predecessor is, and
  the re-sequenced copy too). Such a batch fails with the gap instead: its outcome is unknown,
  as after a timeout (the gateway's WAL then holds it behind its predecessor).
- Never past the batch's deadline: no attempt starts after it, and a back-off that would end
  after it returns the last named error instead of turning it into a TIMEOUT.
- A refusal that names a wait (``OverLimit``: the tenant's rate, TENANT_RATE_LIMITED) is retried
  after that wait, not the usual backoff, while the deadline allows; it stored nothing.
- Errors that say the owner map may be stale (``OWNERSHIP_ERRORS``) refresh it before the retry;
  a retry goes through the next router; the back-off (full jitter, doubling up to
  ``RETRY_CAP_S``) starts over when the wait was cut short by a new leader.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable

from zlog.client.batch import Batch
from zlog.client.sender import Outcome, Sender
from zlog.client.sequences import PartitionState
from zlog.protocol import bodies
from zlog.protocol.errors import OverLimit, Timeout, ZlogError

# Failures that say the producer's map of partition owners may be stale.
OWNERSHIP_ERRORS = frozenset(("NO_OWNER", "NOT_OWNER", "WORKER_LOST"))
# Failures after which the attempt's PRODUCE may still reach a worker and be stored.
IN_FLIGHT_ERRORS = frozenset(("WORKER_LOST", "ROUTER_LOST"))
RETRY_BASE_S = 0.025
RETRY_CAP_S = 1.0
# backoff(partition, delay) -> True when it was cut short by a new leader of the partition.
Backoff = Callable[[int, float], Awaitable[bool]]


async def exchange(sender: Sender, b: Batch, st: PartitionState | None, backoff: Backoff,
                   delivery_timeout_s: float, first: Outcome = None) -> tuple[int, ZlogError | None]:
    """Send ``b`` until it is acknowledged, fails for good, or its deadline passes: (base offset,
    None) or (-1, the error).

    ``first``: the error the first attempt already ended with (the producer's callback)."""
    attempt = 0
    error: ZlogError | None = None
    limited: OverLimit | None = None  # the tenant's rate kept this batch (or one before it) out
    route_socket = b.partition
    pending = first
    may_arrive = False  # an earlier attempt may still reach a worker (its outcome is unknown)
    while True:
        if pending is not None:
            outcome: Outcome = pending
            pending = None
        else:
            remaining = b.deadline - time.monotonic()
            if remaining <= 0:
                return -1, _cause(limited, error or Timeout("storage did not acknowledge within the deadline", b.partition))
            outcome = await sender.attempt(b, first=attempt == 0, socket_index=route_socket)
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
              and time.monotonic() - st.limited_at < delivery_timeout_s):
            limited = st.limited  # it overtook a batch the tenant's rate refused
        may_arrive = may_arrive or error.code in IN_FLIGHT_ERRORS
        if error.code in OWNERSHIP_ERRORS:
            sender.refresh_owners()
        if not error.retry or error.code in b.fail_fast:
            return -1, _cause(limited, error)
        if (error.code == "OUT_OF_ORDER_SEQUENCE" and st is not None and b.producer_id
                and b.producer_id != st.producer_id):
            if may_arrive:  # an old copy may still be stored: sending a new one could store twice
                return -1, _cause(limited, error)
            if st.confirmed or not st.probing:
                # Provably not stored (the worker refused the gap), and the partition has moved
                # to a new producer id after an earlier failure: re-sequence and send again at once.
                st.assign(b)
                continue
            # (else the new id still has its one unconfirmed batch in flight: back off below)
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
        if await backoff(b.partition, delay):
            attempt = 0  # a new leader: the next failure backs off from the start again


def _cause(limited: OverLimit | None, error: ZlogError) -> ZlogError:
    """The error to report for a batch that failed for good: the tenant's rate refusal when that
    is why it was not stored (it overtook a refused batch of its partition, so the worker refused
    it as a gap). A TIMEOUT stays one: that attempt may have been stored."""
    if limited is not None and error.code == "OUT_OF_ORDER_SEQUENCE":
        return OverLimit(limited.code, limited.message, limited.retry_after, partition=error.partition)
    return error
