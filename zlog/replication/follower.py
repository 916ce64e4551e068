"""A partition this worker follows: ask where the last epoch ended, truncate, then fetch.

Invariants:
- Nothing is fetched in a leader's epoch before the epoch-end question for that epoch was
  answered and the log cut to it (KIP-101), so a divergent tail never stays.
- At most one request per partition is in flight; one that is not answered within its wait plus
  ``TIMEOUT_MS`` is sent again (the leader may have restarted), and replies to anything but the
  request in flight are dropped.
- The fetch offset sent is the log end after the previous reply's batches were committed, so
  the leader counts only durable records (the commit fsyncs per ``storage.fsync``).
"""

from __future__ import annotations

from dataclasses import dataclass

from zlog.replication.messages import Request

TIMEOUT_MS = 2000
WAIT_MS = 250  # a live follower fetches at least this often: keep storage.replica_lag_ms well above


@dataclass(slots=True)
class Following:
    partition: int
    name: str
    leader: int
    epoch: int
    phase: str = "epoch"  # epoch | fetch
    inflight: int | None = None
    sent_ms: float = 0.0
    hw: int = 0

    def request(self, rid: int, me: int, latest_epoch: int, offset: int, now_ms: float,
                max_bytes: int = 4 << 20) -> Request:
        self.inflight = rid
        self.sent_ms = now_ms
        if self.phase == "epoch":
            return Request("epoch", rid, self.name, me, latest_epoch)
        return Request("fetch", rid, self.name, me, self.epoch, offset, max_bytes, WAIT_MS)

    def overdue(self, now_ms: float) -> bool:
        return self.inflight is None or now_ms - self.sent_ms > WAIT_MS + TIMEOUT_MS
