"""ISR membership and the high watermark, as scenario tables over a fake clock."""

from __future__ import annotations

from zlog.replication.isr import LeaderState


def leader(isr: set[int] | None = None, leo: int = 0, lag_ms: int = 1000, epoch_start: int = 0) -> LeaderState:
    return LeaderState(0, (0, 1, 2), frozenset(isr or {0, 1, 2}), epoch_start, leo, lag_ms, 0.0)


def test_high_watermark_is_the_smallest_isr_log_end() -> None:
    s = leader()
    assert not s.appended(10)  # nobody else has it yet
    assert s.hw == 0
    assert not s.fetched(1, 10, 5)
    assert s.fetched(2, 7, 5) and s.hw == 7
    assert s.fetched(2, 10, 6) and s.hw == 10


def test_r1_high_watermark_follows_the_leader() -> None:
    s = LeaderState(0, (0,), frozenset({0}), 0, 0, 1000, 0.0)
    assert s.appended(5) and s.hw == 5


def test_a_laggard_is_proposed_out_and_bounds_hw_until_committed() -> None:
    s = leader()
    s.appended(100)
    s.fetched(1, 100, 10)
    s.fetched(2, 40, 10)
    assert s.hw == 40
    assert s.wanted_isr(900) == {0, 1, 2}  # within the lag window
    s.fetched(1, 100, 1100)
    want = s.wanted_isr(1200)
    assert want == {0, 1}
    assert s.hw == 40  # a proposal alone changes nothing visible
    assert s.set_isr(want) and s.hw == 100


def test_a_follower_rejoins_at_the_high_watermark_and_not_before_the_epoch_start() -> None:
    s = leader(isr={0, 1}, leo=50, epoch_start=50)
    s.fetched(1, 50, 0)
    s.appended(60)
    s.fetched(1, 60, 1)
    assert s.hw == 60
    s.fetched(2, 30, 2)
    assert s.wanted_isr(3) == {0, 1}
    s.fetched(2, 60, 4)
    assert s.wanted_isr(5) == {0, 1, 2}
    assert not s.set_isr(s.wanted_isr(5))
    s.appended(70)
    assert s.hw == 60  # the rejoined follower now bounds it too
    s.fetched(1, 70, 6)
    assert s.hw == 60
    assert s.fetched(2, 70, 6) and s.hw == 70


def test_high_watermark_never_goes_back() -> None:
    s = leader(isr={0, 1})
    s.appended(20)
    s.fetched(1, 20, 1)
    assert s.hw == 20
    s.fetched(1, 5, 2)  # the follower restarted with less (fsync=never): hw keeps what it proved
    assert s.hw == 20 and s.lag(1) == 15


def test_unknown_replicas_and_fetches_past_the_end_are_ignored() -> None:
    s = leader(isr={0, 1})
    s.appended(10)
    assert not s.fetched(7, 10, 1)
    assert not s.fetched(1, 11, 1)
    assert s.hw == 0
    assert 7 not in s.wanted_isr(10_000)


def test_the_leader_never_leaves_its_isr() -> None:
    s = leader(isr={1, 2})
    assert 0 in s.isr
    s.set_isr(frozenset({1}))
    assert s.isr == {0, 1}


def test_a_silent_follower_leaves_even_when_nothing_is_written() -> None:
    s = leader(isr={0, 1, 2})
    s.appended(10)
    s.fetched(1, 10, 100)
    s.fetched(2, 10, 100)
    s.fetched(2, 10, 900)  # 2 keeps polling, 1 went quiet (dead) while the log stood still
    assert s.wanted_isr(1500) == {0, 2}


def test_a_dead_follower_that_was_level_does_not_rejoin() -> None:
    s = leader(isr={0, 1, 2})
    s.appended(10)
    s.fetched(1, 10, 100)
    s.fetched(2, 10, 100)
    s.fetched(2, 10, 1500)
    assert s.wanted_isr(1500) == {0, 2}
    s.set_isr(frozenset({0, 2}))
    assert s.wanted_isr(1600) == {0, 2}  # 1 holds everything, but it stopped fetching


def test_a_follower_keeping_up_under_steady_writes_stays() -> None:
    s = leader(isr={0, 1})
    for t in range(0, 5000, 100):
        s.appended(t + 10)  # the log end moves between every pair of fetches
        s.fetched(1, t, t)  # ... and the follower always asks for what was there at its last fetch
    assert s.wanted_isr(5000) == {0, 1}


def test_a_new_term_keeps_members_for_one_lag_window_but_adds_none_that_never_fetched() -> None:
    # Leader 0 takes over an empty partition with ISR {0, 1}; replica 2 is cut off and never asks.
    s = leader(isr={0, 1}, leo=0, lag_ms=1000)
    assert s.wanted_isr(10) == {0, 1}  # 2 is level (0 == 0) but has not fetched in this term
    s.fetched(1, 0, 20)
    assert s.wanted_isr(500) == {0, 1}
    s.fetched(2, 0, 600)
    assert s.wanted_isr(600) == {0, 1, 2}  # once 2 asks, it is caught up and joins
