"""Reassignment decisions (drain moves replicas off, a joining worker gets some), from snapshots."""

from __future__ import annotations

from dataclasses import replace

import pytest

from zlog.replication.control import handoff_target, isr_change, plan
from zlog.replication.coordination import PartitionState, Snapshot, WorkerInfo
from zlog.replication.moves import completions, controller, nowhere_to_go, reassignments


def snap(alive: dict[int, str], parts: dict[str, PartitionState], drains: set[int] | frozenset[int] = frozenset()
         ) -> Snapshot:
    return Snapshot(10, {w: WorkerInfo(w, h, 1, "tcp://x:1") for w, h in alive.items()},
                    {n: (s, 5) for n, s in parts.items()}, frozenset(drains))


def full(replicas: tuple[int, ...], leader: int | None = None) -> PartitionState:
    return PartitionState(replicas, replicas[0] if leader is None else leader, tuple(sorted(replicas)), 3)


def hosts(n: int, host: str = "h") -> dict[int, str]:
    return {w: host for w in range(n)}


@pytest.mark.parametrize(("alive", "parts", "drains", "want"), [
    # drain 0 of 3 at R=2: its replicas go to 2 (the only one not holding p0) and to 1
    (hosts(3), {"0": full((0, 1)), "1": full((1, 2)), "2": full((2, 0))}, {0},
     {"0": (2, 1), "2": (2, 1)}),
    # only two workers at R=2: nowhere to move, nothing proposed
    (hosts(2), {"0": full((0, 1)), "1": full((1, 0))}, {0}, {}),
    # distinct hosts: p0 on (0@a, 1@b); drain 0: 2@b shares b with 1, 3@c does not -> 3
    ({0: "a", 1: "b", 2: "b", 3: "c"}, {"0": full((0, 1)), "1": full((2, 3))}, {0}, {"0": (3, 1)}),
    # a partition without a live leader is left alone (nobody to catch up from)
    (hosts(3), {"0": full((0, 1), leader=1)}, {0}, {"0": (2, 1)}),
    ({0: "h", 2: "h"}, {"0": full((0, 1), leader=1)}, {0}, {}),
    # at most MAX_MOVES (2) at once
    (hosts(4), {str(p): full((0, 1)) for p in range(4)}, {0}, {"0": (2, 1), "1": (3, 1)}),
    # an even cluster stays put; a joined worker 3 gets replicas from the most loaded
    (hosts(3), {"0": full((0, 1)), "1": full((1, 2)), "2": full((2, 0))}, set(), {}),
])
def test_reassignments(alive: dict[int, str], parts: dict[str, PartitionState], drains: set[int],
                       want: dict[str, tuple[int, ...]]) -> None:
    got = {p.name: p.state.target for p in reassignments(snap(alive, parts, drains))}
    assert got == want
    for p in reassignments(snap(alive, parts, drains)):
        old = parts[p.name]
        assert p.why == "reassign" and p.revision == 5
        assert p.state.replicas[:len(old.replicas)] == old.replicas  # old ones stay until complete
        assert set(p.state.replicas) == set(old.replicas) | set(p.state.target)
        assert p.state.isr == old.isr and p.state.leader == old.leader and p.state.epoch == old.epoch


def test_a_joining_worker_gets_replicas_until_loads_are_even() -> None:
    parts = {str(p): full(r) for p, r in enumerate([(0, 1), (1, 2), (2, 0), (0, 1), (1, 2), (2, 0)])}
    alive = hosts(4)
    moved = 0
    for _ in range(20):  # drive moves to the end: each started move catches up and completes
        s = snap(alive, parts)
        for p in reassignments(s):
            assert 3 in p.state.adding
            parts[p.name] = replace(p.state, isr=tuple(sorted(p.state.replicas)))  # caught up
            moved += 1
        for name, st in parts.items():  # a leader being removed hands over (its worker does)
            to = handoff_target(snap(alive, parts), st.leader or 0, name, st.epoch)
            if st.target and to is not None:
                parts[name] = replace(st, leader=to, epoch=st.epoch + 1)
        for p in completions(snap(alive, parts)):
            parts[p.name] = p.state
    loads = {w: sum(w in s.replicas for s in parts.values()) for w in range(4)}
    assert max(loads.values()) - min(loads.values()) <= 1 and loads[3] >= 2, loads
    assert moved == loads[3]  # no churn: each move gave worker 3 one replica
    assert all(not s.target and len(set(s.replicas)) == 2 for s in parts.values())
    leaders = {w: sum(s.replicas[0] == w for s in parts.values()) for w in range(4)}
    assert leaders[3] >= 1, leaders


def test_no_balancing_during_a_failover_or_while_a_move_runs() -> None:
    alive = hosts(4)
    base = {"0": full((0, 1)), "1": full((1, 2)), "2": full((2, 0)), "3": full((0, 1))}
    assert reassignments(snap(alive, base))
    lagging = dict(base, **{"1": PartitionState((1, 2), 1, (1,), 3)})
    assert reassignments(snap(alive, lagging)) == []
    moving = dict(base, **{"1": PartitionState((1, 2, 3), 1, (1, 2), 3, (3, 2), (3,))})
    assert reassignments(snap(alive, moving)) == []


def test_completion_waits_for_the_new_replica_in_sync_and_a_leader_that_stays() -> None:
    alive = hosts(3)
    adding = PartitionState((0, 1, 2), 1, (0, 1), 4, (2, 1), (2,))
    assert completions(snap(alive, {"0": adding})) == []  # 2 not in sync yet
    synced = replace(adding, isr=(0, 1, 2))
    (p,) = completions(snap(alive, {"0": synced}))
    assert (p.why, p.state) == ("complete", PartitionState((2, 1), 1, (1, 2), 4))
    led_by_leaving = replace(synced, leader=0)
    assert completions(snap(alive, {"0": led_by_leaving})) == []
    # ... that leader hands over once the added one is in sync, not before
    assert handoff_target(snap(alive, {"0": led_by_leaving}), 0, "0", 4) == 2
    assert handoff_target(snap(alive, {"0": replace(led_by_leaving, isr=(0, 1))}), 0, "0", 4) is None


def test_proposals_keep_the_reassignment_and_a_removed_replica_stays_out() -> None:
    alive = hosts(3)
    moving = PartitionState((0, 1, 2), 0, (0, 1), 4, (2, 1), (2,))
    p = isr_change(snap(alive, {"0": moving}), 0, "0", 4, frozenset({0, 1, 2}))
    assert p is not None and p.state.target == (2, 1) and p.state.isr == (0, 1, 2)
    done = PartitionState((2, 1), 1, (1, 2), 5)
    p = isr_change(snap(alive, {"0": done}), 1, "0", 5, frozenset({0, 1, 2}))
    assert p is None  # 0 was removed: not put back in the ISR, and 1, 2 already are
    # a worker the partition was moved off proposes nothing for it, even if placement named it
    assert plan(snap({1: "h", 2: "h"}, {"0": PartitionState((2, 1), None, (1, 2), 5)}), 0,
                {"0": (0, 1)}, {}) == []
    # the new replica takes part in elections like any other
    (e,) = plan(snap({1: "h", 2: "h"}, {"0": PartitionState((2, 1), 0, (1, 2), 5)}), 2, {}, {})
    assert (e.why, e.state.leader, e.state.epoch) == ("elect", 2, 6)


def test_the_controller_is_the_smallest_live_worker() -> None:
    assert controller(snap({2: "h", 5: "h"}, {})) == 2
    assert controller(snap({}, {})) is None


def test_a_drain_with_nowhere_to_go_says_so() -> None:
    parts = {"0": full((0, 1)), "1": full((1, 2))}
    assert nowhere_to_go(snap(hosts(2), parts, {0}), 0) == ["0"]
    assert nowhere_to_go(snap(hosts(3), parts, {0}), 0) == []
