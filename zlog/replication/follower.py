"""A partition this worker follows: ask where the last epoch ended, truncate, then fetch.

Invariants:
- Nothing is fetched in a leader's epoch before the epoch-end question for that epoch was
  answered and the log cut to it (KIP-101), so a divergent tail never stays.
- At most one request per partition is in flight; one that is not answered within its wait plus
  ``TIMEOUT_MS`` is sent again (the leader may have restarted), and replies to anything but the
  request in flight are dropped.
- A leader that refuses (``NOT_LEADER``: fenced for a moment, or not leading yet) is asked again
  by itself, not only when etcd changes: a leader that lost and regained its lease leads again in
  the same epoch, with no new etcd revision to wake its followers, and a follower waiting longer
  than ``storage.replica_lag_ms`` would be dropped from the ISR. The first retry comes after
  ``FIRST_RETRY_MS`` (a worker that etcd just named leader is usually leading a few ms later, and
  an acks=all write waits for this follower), each next one after twice as long, up to
  ``REFUSED_RETRY_MS``; an answer resets the back-off.
- No request is sent within ``MIN_GAP_MS`` of the previous one unless a reply asked for it, so
  a leader that fails every request at once (or is unreachable) is not asked in a loop.
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
FIRST_RETRY_MS = 20
REFUSED_RETRY_MS = 250  # the longest wait between refusals
MIN_GAP_MS = 100


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
    not_before: float = 0.0  # no new request before this (after a refusal, a send, a failed send)
    refusals: int = 0  # NOT_LEADER / BUSY answers in a row: the back-off's exponent
    wait_ms: int = WAIT_MS  # how long the leader may hold a fetch with nothing new (long poll)

    def request(self, rid: int, me: int, latest_epoch: int, offset: int, now_ms: float,
                max_bytes: int = 4 << 20) -> Request:
        self.inflight = rid
        self.sent_ms = now_ms
        self.not_before = now_ms + MIN_GAP_MS
        if self.phase == "epoch":
            return Request("epoch", rid, self.name, me, latest_epoch)
        return Request("fetch", rid, self.name, me, self.epoch, offset, max_bytes, self.wait_ms)

    def overdue(self, now_ms: float) -> bool:
        return self.inflight is None or now_ms - self.sent_ms > self.wait_ms + TIMEOUT_MS

    def refused(self, error: str, now_ms: float) -> None:
        """The leader answered ``error``: ask where the epoch ends again (OFFSET: cut first),
        backing off when it said it does not lead (or for ``BUSY``: this worker's seal process
        works on the partition, so its log cannot be restarted yet), else after ``MIN_GAP_MS``."""
        self.phase = "epoch"
        self.inflight = None
        self.sent_ms = now_ms
        if error in ("NOT_LEADER", "BUSY"):
            self.not_before = now_ms + min(REFUSED_RETRY_MS, FIRST_RETRY_MS << min(self.refusals, 8))
            self.refusals += 1
        else:
            self.not_before = now_ms + MIN_GAP_MS

    def answered(self) -> None:
        """A reply that was not a refusal: the next refusal is retried soon again."""
        self.refusals = 0

    def unsent(self, now_ms: float) -> None:
        """No request could be sent (no link to the leader, or its queue is full): try again later."""
        self.inflight = None
        self.not_before = now_ms + MIN_GAP_MS

    def due(self, now_ms: float) -> bool:
        """Whether to send a request now: none in flight (and no wait to sit out), or overdue."""
        if self.inflight is None:
            return now_ms >= self.not_before
        return self.overdue(now_ms)

    def next_due(self) -> float | None:
        """When ``due`` turns true without a reply (None: only a reply or an overdue check can)."""
        return self.not_before if self.inflight is None else None
