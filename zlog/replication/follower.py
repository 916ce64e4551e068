"""A partition this worker follows: ask where the last epoch ended, truncate, then fetch.

Invariants:
- Nothing is fetched in a leader's epoch before the epoch-end question for that epoch was
  answered and the log cut to it (KIP-101), so a divergent tail never stays.
- At most one request per partition is in flight; one that is not answered within its wait plus
  ``TIMEOUT_MS`` is sent again (the leader may have restarted), and replies to anything but the
  request in flight are dropped.
- A leader that refuses (``NOT_LEADER``: fenced for a moment, or not leading yet) is asked again
  after ``REFUSED_RETRY_MS``, not only when etcd changes: a leader that lost and regained its
  lease leads again in the same epoch, with no new etcd revision to wake its followers, and a
  follower waiting longer than ``storage.replica_lag_ms`` would be dropped from the ISR.
- ``OFFSET_OUT_OF_RANGE`` (the leader's log starts beyond this replica's end) is not a refusal:
  the caller restarts its log at the leader's log start and fetches from there at once.
- The fetch offset sent is the log end after the previous reply's batches were committed, so
  the leader counts only durable records (the commit fsyncs per ``storage.fsync``).
"""

from __future__ import annotations

from dataclasses import dataclass

from zlog.replication.messages import Request

TIMEOUT_MS = 2000
WAIT_MS = 250  # a live follower fetches at least this often: keep storage.replica_lag_ms well above
REFUSED_RETRY_MS = 250


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
    not_before: float = 0.0  # no new request before this (after a refusal)
    wait_ms: int = WAIT_MS  # how long the leader may hold a fetch with nothing new (long poll)

    def request(self, rid: int, me: int, latest_epoch: int, offset: int, now_ms: float,
                max_bytes: int = 4 << 20) -> Request:
        self.inflight = rid
        self.sent_ms = now_ms
        if self.phase == "epoch":
            return Request("epoch", rid, self.name, me, latest_epoch)
        return Request("fetch", rid, self.name, me, self.epoch, offset, max_bytes, self.wait_ms)

    def overdue(self, now_ms: float) -> bool:
        return self.inflight is None or now_ms - self.sent_ms > self.wait_ms + TIMEOUT_MS

    def refused(self, error: str, now_ms: float) -> None:
        """The leader answered ``error``: ask where the epoch ends again (OFFSET: cut first),
        after ``REFUSED_RETRY_MS`` when it said it does not lead (or for ``BUSY``: this worker's
        seal process works on the partition, so its log cannot be restarted yet)."""
        self.phase = "epoch"
        self.inflight = None
        self.sent_ms = now_ms
        self.not_before = now_ms + (REFUSED_RETRY_MS if error in ("NOT_LEADER", "BUSY") else 0)

    def due(self, now_ms: float) -> bool:
        """Whether to send a request now: none in flight (and no refusal to wait out), or overdue."""
        if self.inflight is None:
            return now_ms >= self.not_before and now_ms - self.sent_ms > 100
        return self.overdue(now_ms)
