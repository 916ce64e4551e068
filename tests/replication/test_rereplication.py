"""Re-replication: a worker gone for good (no etcd key for ``replica_dead_after_ms``) loses its
replicas to live workers, from snapshots and a fake clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.replication.test_moves import full, hosts, snap
from zlog.replication.absence import Absences
from zlog.replication.control import plan
from zlog.replication.coordination import PartitionState
from zlog.replication.moves import completions, reassignments


@pytest.mark.parametrize(("steps", "want"), [
    # (ms, live workers) per snapshot -> lost after the last one; replicas are on 0, 1, 2
    ([(0, {0, 1, 2})], set()),
    ([(0, {0, 1}), (999, {0, 1})], set()),  # absent, not yet for long enough
    ([(0, {0, 1}), (1000, {0, 1})], {2}),
    ([(0, {0, 1}), (600, {0, 1, 2}), (1000, {0, 1}), (1999, {0, 1})], set()),  # a return restarts the count
    ([(0, {0, 1}), (600, {0, 1, 2}), (1000, {0, 1}), (2000, {0, 1})], {2}),
    ([(0, {0}), (500, {0}), (1200, {0})], {1, 2}),
    ([(0, {0, 1}), (5000, {0, 1, 2})], set()),  # back: not lost any more
    ([(0, set()), (1000, set())], {0, 1, 2}),
])
def test_a_worker_is_lost_once_absent_for_dead_after_without_a_break(
        steps: list[tuple[int, set[int]]], want: set[int]) -> None:
    parts = {"0": full((0, 1)), "1": full((1, 2))}
    a = Absences(1000)
    got: frozenset[int] = frozenset()
    for ms, alive in steps:
        got = a.observe(snap({w: "h" for w in alive}, parts), ms)
    assert got == want


def test_a_worker_that_holds_no_replica_is_not_counted() -> None:
    a = Absences(10)
    assert a.observe(snap(hosts(2), {"0": full((0, 1))}), 0) == frozenset()
    assert a.observe(snap({0: "h"}, {"0": full((0,))}), 50) == frozenset()  # 1 holds nothing now
    moving = PartitionState((0,), 0, (0,), 1, (0, 3), (3,))
    assert a.observe(snap({0: "h"}, {"0": moving}), 60) == frozenset()
    assert a.observe(snap({0: "h"}, {"0": moving}), 70) == {3}  # a move's target counts


@pytest.mark.parametrize(("alive", "parts", "lost", "drains", "want"), [
    # R=3 on 4 workers, 3 lost: each of its replicas goes to the one live worker without one
    (hosts(3), {"0": full((0, 1, 3)), "1": full((1, 3, 2))}, {3}, set(), {"0": (0, 1, 2), "1": (1, 0, 2)}),
    # nothing lost (3 only absent so far): nothing moves, and no balancing while under-replicated
    (hosts(3), {"0": PartitionState((0, 1, 3), 0, (0, 1), 3), "1": full((1, 2, 0))}, set(), set(), {}),
    # distinct hosts: 2@a holds a replica; 3@b and 4@a are free: 3 (a host not yet used)
    ({0: "a", 1: "c", 3: "b", 4: "a"}, {"0": full((0, 2, 1), leader=0)}, {2}, set(), {"0": (0, 3, 1)}),
    # least loaded first
    (hosts(5), {"0": full((0, 1, 9)), "1": full((2, 3, 4)), "2": full((2, 3, 1))}, {9}, set(), {"0": (0, 1, 4)}),
    # no live leader (the whole ISR lost): nothing to catch up from, it waits
    (hosts(3), {"0": PartitionState((3, 4, 0), 3, (3, 4), 2)}, {3, 4}, set(), {}),
    # lost and drained at once; lost ones first when the budget (2) is short
    (hosts(5), {"0": full((0, 1)), "1": full((1, 0)), "2": full((2, 9), leader=2)}, {9}, {0},
     {"2": (2, 3), "0": (4, 1)}),
    # two lost in one partition at R=3: both replaced at once
    (hosts(4), {"0": full((0, 8, 9), leader=0)}, {8, 9}, set(), {"0": (0, 1, 2)}),
    # nowhere to go (R=2 on 2 workers, one lost): nothing proposed
    ({0: "h"}, {"0": full((0, 1), leader=0)}, {1}, set(), {}),
])
def test_rereplications(alive: dict[int, str], parts: dict[str, PartitionState], lost: set[int],
                        drains: set[int], want: dict[str, tuple[int, ...]]) -> None:
    props = reassignments(snap(alive, parts, drains), lost=frozenset(lost))
    assert {p.name: p.state.target for p in props} == want
    for p in props:
        old = parts[p.name]
        assert p.why == ("rereplicate" if set(old.replicas) & lost else "reassign")
        assert p.state.replicas[:len(old.replicas)] == old.replicas  # the lost ones stay until complete
        assert p.state.isr == old.isr and p.state.leader == old.leader and p.state.epoch == old.epoch


def test_losing_a_worker_for_good_brings_every_partition_back_to_r_replicas_spread_evenly() -> None:
    """R=3 on 4 workers, worker 3 dies and stays away: drive every step to the end, then it returns."""
    parts = {str(p): full(tuple((p + i) % 4 for i in range(3))) for p in range(8)}
    alive = hosts(4)
    del alive[3]
    clock = Absences(1000)
    # its leaderships moved by election first (plan), and the leaders shrank the ISR
    for name, st in list(parts.items()):
        if st.leader == 3:
            (e,) = [x for w in alive for x in plan(snap(alive, parts), w, {}, {}) if x.name == name]
            parts[name] = e.state
        parts[name] = replace(parts[name], isr=tuple(r for r in parts[name].isr if r != 3))
    for ms in (0, 500):
        assert reassignments(snap(alive, parts), lost=clock.observe(snap(alive, parts), ms)) == []
    started = 0
    for ms in range(1000, 30_000, 1000):  # each turn: moves start, new replicas catch up, moves complete
        s = snap(alive, parts)
        for p in reassignments(s, lost=clock.observe(s, ms)):
            assert p.why == "rereplicate" and 3 not in p.state.target and len(set(p.state.target)) == 3
            parts[p.name] = replace(p.state, isr=tuple(sorted(set(p.state.isr) | set(p.state.adding))))
            started += 1
        for p in completions(snap(alive, parts)):
            parts[p.name] = p.state
    assert started == 6  # one move per partition worker 3 held, no churn
    assert all(len(s.replicas) == 3 and set(s.isr) == set(s.replicas) and 3 not in s.replicas and not s.target
               for s in parts.values()), parts
    loads = {w: sum(w in s.replicas for s in parts.values()) for w in alive}
    assert loads == {0: 8, 1: 8, 2: 8}
    # worker 3 returns: it is in no partition any more and proposes nothing for the ones placement gave it
    back = hosts(4)
    mine = {name: s.replicas for name, s in parts.items()}
    assert plan(snap(back, parts), 3, {n: (3, 0, 1) for n in mine}, {}) == []
    assert clock.observe(snap(back, parts), 31_000) == frozenset()
    # ... and balancing gives it replicas again, each a normal reassignment that catches up first
    moved = reassignments(snap(back, parts))
    assert moved and all(p.why == "reassign" and p.state.adding == (3,) for p in moved)
