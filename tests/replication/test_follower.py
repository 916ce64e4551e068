"""When a follower asks its leader again, over a fake clock."""

from __future__ import annotations

from zlog.replication.follower import (
    FIRST_RETRY_MS,
    MIN_GAP_MS,
    REFUSED_RETRY_MS,
    TIMEOUT_MS,
    WAIT_MS,
    Following,
)


def test_a_refusing_leader_is_asked_again_soon_not_only_when_etcd_changes() -> None:
    # A leader fenced for a moment answers NOT_LEADER, then leads again in the same epoch: no new
    # etcd revision tells the follower, so it must ask again by itself, well inside replica_lag_ms.
    # A worker etcd just named leader is usually leading moments later: the first retry is soon,
    # then each waits twice as long up to REFUSED_RETRY_MS, and an answer starts the back-off over.
    f = Following(4, "4", leader=2, epoch=0)
    f.request(7, 1, 0, 0, now_ms=1000)
    assert not f.due(1100) and f.next_due() is None  # in flight: only a reply or overdue
    now = 1100.0
    waits = []
    for _ in range(6):
        f.refused("NOT_LEADER", now)
        assert f.phase == "epoch" and f.inflight is None
        wait = f.next_due() - now  # type: ignore[operator]
        assert not f.due(now + wait - 1) and f.due(now + wait)
        waits.append(wait)
        now += wait
        f.request(8, 1, 0, 0, now_ms=now)
    assert waits == [FIRST_RETRY_MS, 2 * FIRST_RETRY_MS, 4 * FIRST_RETRY_MS, 8 * FIRST_RETRY_MS,
                     REFUSED_RETRY_MS, REFUSED_RETRY_MS]
    assert REFUSED_RETRY_MS < 500  # the smallest storage.replica_lag_ms
    f.answered()
    f.refused("NOT_LEADER", now)
    assert f.next_due() == now + FIRST_RETRY_MS


def test_a_request_that_cannot_be_sent_is_not_retried_in_a_loop() -> None:
    f = Following(1, "1", leader=3, epoch=2)
    assert f.due(0)  # never asked: at once
    f.unsent(50)
    assert not f.due(50 + MIN_GAP_MS - 1) and f.due(50 + MIN_GAP_MS)


def test_an_offset_refusal_asks_for_the_epoch_end_at_once_and_silence_is_resent() -> None:
    f = Following(0, "0", leader=1, epoch=3)
    f.phase = "fetch"
    f.request(1, 2, 3, 50, now_ms=0)
    f.refused("OFFSET", 10)
    assert f.phase == "epoch" and f.due(111)
    req = f.request(2, 2, 3, 50, now_ms=200)
    assert req.kind == "epoch"
    assert not f.due(200 + WAIT_MS + TIMEOUT_MS) and f.due(201 + WAIT_MS + TIMEOUT_MS)


def test_a_longer_long_poll_is_asked_for_and_not_resent_while_the_leader_may_hold_it() -> None:
    # Another tenant's log is polled for longer when idle: the leader is asked to hold the fetch
    # that long, and the follower does not take the held fetch for a lost one meanwhile.
    f = Following(0, "acme/0", leader=1, epoch=3, wait_ms=1000)
    f.phase = "fetch"
    req = f.request(1, 2, 3, 50, now_ms=0)
    assert req.wait_ms == 1000 and req.partition == "acme/0"
    assert not f.due(1000 + TIMEOUT_MS) and f.due(1001 + TIMEOUT_MS)
