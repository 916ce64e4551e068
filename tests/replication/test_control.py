"""Replica placement and the proposals a worker makes, from etcd snapshots."""

from __future__ import annotations

from zlog.replication.control import isr_change, plan, replicas_of
from zlog.replication.coordination import PartitionState, Snapshot, WorkerInfo


def snap(alive: set[int], parts: dict[str, PartitionState]) -> Snapshot:
    return Snapshot(10, {w: WorkerInfo(w, "h", 1, "tcp://x:1") for w in alive},
                    {n: (s, 5) for n, s in parts.items()})


def test_placement_starts_at_the_unreplicated_owner() -> None:
    assert replicas_of(0, 4, 3, 3) == (0, 1, 2)
    assert replicas_of(3, 4, 3, 3) == (2, 0, 1)
    assert replicas_of(1, 4, 2, 1) == (0,)
    assert replicas_of(2, 4, 2, 3) == (1, 0)


def test_the_first_live_replica_creates_the_partition() -> None:
    mine = {"0": (0, 1, 2)}
    assert [p.why for p in plan(snap({0, 1, 2}, {}), 0, mine, {})] == ["create"]
    assert plan(snap({0, 1, 2}, {}), 1, mine, {}) == []
    assert plan(snap({1, 2}, {}), 1, mine, {}, eager=False) == []  # the preferred one may still come
    (p,) = plan(snap({1, 2}, {}), 1, mine, {})
    assert p.state == PartitionState((0, 1, 2), 1, (1,), 0) and p.revision == 0


def test_election_only_from_the_isr_and_by_the_first_live_member() -> None:
    mine = {"0": (0, 1, 2)}
    dead_leader = {"0": PartitionState((0, 1, 2), 0, (0, 1, 2), 4)}
    assert plan(snap({1, 2}, dead_leader), 2, mine, {}) == []
    (p,) = plan(snap({1, 2}, dead_leader), 1, mine, {})
    assert (p.why, p.state, p.revision) == ("elect", PartitionState((0, 1, 2), 1, (1, 2), 5), 5)
    out_of_sync = {"0": PartitionState((0, 1, 2), 0, (0, 2), 4)}
    assert plan(snap({1}, out_of_sync), 1, mine, {}) == []  # no unclean election
    assert plan(snap({0, 1, 2}, dead_leader), 1, mine, {}) == []  # the leader lives


def test_a_restarted_leader_reclaims_with_a_new_epoch_once() -> None:
    mine = {"0": (0, 1, 2)}
    parts = {"0": PartitionState((0, 1, 2), 0, (0, 1), 4)}
    (p,) = plan(snap({0, 1}, parts), 0, mine, {})
    assert (p.why, p.state.epoch, p.state.isr) == ("reclaim", 5, (0, 1))
    assert plan(snap({0, 1}, parts), 0, mine, {"0": 4}) == []


def test_isr_changes_only_by_the_current_leader_in_its_epoch() -> None:
    parts = {"0": PartitionState((0, 1, 2), 0, (0, 1, 2), 4)}
    p = isr_change(snap({0, 1, 2}, parts), 0, "0", 4, frozenset({0, 1}))
    assert p is not None and p.state.isr == (0, 1) and p.revision == 5
    assert isr_change(snap({0, 1, 2}, parts), 0, "0", 3, frozenset({0, 1})) is None
    assert isr_change(snap({0, 1, 2}, parts), 1, "0", 4, frozenset({1})) is None
    assert isr_change(snap({0, 1, 2}, parts), 0, "0", 4, frozenset({0, 1, 2})) is None


def test_handoff_when_drained_or_when_the_preferred_replica_is_back_in_sync() -> None:
    from zlog.replication.control import handoff_target

    def s(alive: set[int], isr: tuple[int, ...], leader: int, drains: frozenset[int] = frozenset()) -> Snapshot:
        base = snap(alive, {"0": PartitionState((0, 1, 2), leader, isr, 3)})
        return Snapshot(base.revision, base.workers, base.partitions, drains)

    assert handoff_target(s({0, 1, 2}, (0, 1, 2), 0), 0, "0", 3) is None  # preferred leads: stay
    assert handoff_target(s({0, 1, 2}, (0, 1, 2), 0, frozenset({0})), 0, "0", 3) == 1  # drained: the next
    assert handoff_target(s({0, 1, 2}, (0, 2), 0, frozenset({0})), 0, "0", 3) == 2  # ... in sync
    assert handoff_target(s({0}, (0,), 0, frozenset({0})), 0, "0", 3) is None  # nobody to take it
    assert handoff_target(s({0, 1, 2}, (0, 1, 2), 1), 1, "0", 3) == 0  # the preferred one is back
    assert handoff_target(s({0, 1, 2}, (0, 1), 1), 1, "0", 3) is None  # ... but not every replica in sync
    assert handoff_target(s({0, 1, 2}, (0, 1, 2), 1, frozenset({0})), 1, "0", 3) is None  # ... drained
    assert handoff_target(s({0, 1, 2}, (0, 1, 2), 1), 1, "0", 2) is None  # an old epoch


def test_elections_prefer_replicas_not_being_drained() -> None:
    parts = {"0": PartitionState((0, 1, 2), 0, (0, 1, 2), 4)}
    base = snap({1, 2}, parts)
    drained = Snapshot(base.revision, base.workers, base.partitions, frozenset({1}))
    assert plan(drained, 1, {"0": (0, 1, 2)}, {}) == []
    (p,) = plan(drained, 2, {"0": (0, 1, 2)}, {})
    assert p.state.leader == 2
