"""When a follower asks its leader again, over a fake clock."""

from __future__ import annotations

from zlog.replication.follower import REFUSED_RETRY_MS, TIMEOUT_MS, WAIT_MS, Following


def test_a_refusing_leader_is_asked_again_soon_not_only_when_etcd_changes() -> None:
    # A leader fenced for a moment answers NOT_LEADER, then leads again in the same epoch: no new
    # etcd revision tells the follower, so it must ask again by itself, well inside replica_lag_ms.
    f = Following(4, "4", leader=2, epoch=0)
    f.request(7, 1, 0, 0, now_ms=1000)
    assert not f.due(1100)
    f.refused("NOT_LEADER", 1100)
    assert f.phase == "epoch" and f.inflight is None
    assert not f.due(1100 + REFUSED_RETRY_MS - 1)
    assert f.due(1100 + REFUSED_RETRY_MS)
    assert REFUSED_RETRY_MS < 500  # the smallest storage.replica_lag_ms


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
