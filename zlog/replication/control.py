"""Who should hold which partition: replica placement and the proposals a worker makes to etcd.

Pure: a worker's coordination thread calls ``plan`` with the etcd snapshot it just read and
executes the proposals as compare-on-revision transactions; losing a race costs nothing but a
re-read.

Invariants:
- Replica placement is a pure function of (partition, partitions, workers, R): the first replica
  is the partition's owner at R = 1, so a replicated cluster leads each partition where an
  unreplicated one stores it; the others are the next workers round the ring.
- A leader is only ever chosen from the ISR stored in etcd (no unclean election), and every
  change of leader bumps the epoch. Only the first live ISR member in replica order proposes
  itself, so live workers do not race each other for no reason.
- A worker process that finds itself leader in etcd from an earlier life (restarted within its
  old lease) claims the partition again with a new epoch: its followers then truncate against
  a fresh epoch boundary rather than trusting a term whose state this process no longer has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from zlog.config import owner_of
from zlog.replication.coordination import PartitionState, Snapshot


def replicas_of(partition: int, partitions: int, workers: int, r: int) -> tuple[int, ...]:
    first = owner_of(partition, partitions, workers)
    return tuple((first + i) % workers for i in range(min(r, workers)))


def partition_name(partition: int) -> str:
    return str(partition)


@dataclass(frozen=True, slots=True)
class Proposal:
    name: str
    state: PartitionState
    revision: int  # the mod_revision it was computed from (0: create)
    why: str  # create | elect | reclaim | isr | handoff | reassign | complete


def plan(snap: Snapshot, me: int, mine: dict[str, tuple[int, ...]], won: dict[str, int],
         eager: bool = True) -> list[Proposal]:
    """The proposals worker ``me`` should make now for the partitions it is a replica of
    (``mine``: name -> replicas); ``won`` holds the epochs this process was granted. A new
    partition is created by its preferred (first) replica, or, once ``eager`` (the preferred one
    had time to start), by the first live one."""
    alive = set(snap.workers)
    out: list[Proposal] = []
    held = {n: s.replicas for n, (s, _) in snap.partitions.items() if me in s.replicas}
    for name, replicas in {**mine, **held}.items():
        cur = snap.partitions.get(name)
        if cur is not None and me not in cur[0].replicas:
            continue  # moved off this worker by a reassignment: not ours any more
        if cur is None:
            live = [r for r in replicas if r in alive]
            if live and live[0] == me and (eager or replicas[0] == me):
                out.append(Proposal(name, PartitionState(replicas, me, (me,), 0), 0, "create"))
            continue
        state, rev = cur
        if state.leader == me:
            if won.get(name) != state.epoch:
                out.append(Proposal(name, replace(state, epoch=state.epoch + 1), rev, "reclaim"))
            continue
        if state.leader is not None and state.leader in alive:
            continue
        candidates = [r for r in state.replicas if r in state.isr and r in alive and r != state.leader]
        # a drained (or leaving) replica only when none else is
        candidates.sort(key=lambda r: r in snap.drains or r in state.removing)
        if candidates and candidates[0] == me:
            isr = tuple(sorted({r for r in state.isr if r != state.leader} | {me}))
            out.append(Proposal(name, replace(state, leader=me, isr=isr, epoch=state.epoch + 1), rev, "elect"))
    return out


def handoff_target(snap: Snapshot, me: int, name: str, epoch: int) -> int | None:
    """Whom the leader ``me`` of ``name`` in ``epoch`` should hand leadership to now, if anyone:
    when ``me`` is being drained, the first live in-sync replica not drained; otherwise, once
    every replica is in sync, the preferred (first) replica when it is live and not drained
    (leadership goes back where placement put it, spreading leaders evenly again). A leader that
    a reassignment removes hands over like a drained one, once the added replicas are in sync;
    during a reassignment the preferred replica is the target's first."""
    cur = snap.partitions.get(name)
    if cur is None or cur[0].leader != me or cur[0].epoch != epoch:
        return None
    state = cur[0]
    leaving = state.removing
    order = (*state.target, *state.replicas) if state.target else state.replicas
    ok = [r for r in dict.fromkeys(order) if r != me and r in state.isr and r in snap.workers
          and r not in snap.drains and r not in leaving]
    if me in snap.drains:
        return ok[0] if ok else None
    if me in leaving:
        return ok[0] if ok and set(state.adding) <= set(state.isr) else None
    preferred = order[0]
    if preferred != me and preferred in ok and set(state.isr) == set(state.replicas):
        return preferred
    return None


def isr_change(snap: Snapshot, me: int, name: str, epoch: int, isr: frozenset[int]) -> Proposal | None:
    """The leader's ISR shrink or expand as a proposal, if it still leads ``name`` in ``epoch``."""
    cur = snap.partitions.get(name)
    if cur is None:
        return None
    state, rev = cur
    # Only replicas may be in sync: a member a reassignment just removed is not added back.
    new = tuple(sorted((isr | {me}) & set(state.replicas)))
    if state.leader != me or state.epoch != epoch or set(state.isr) == set(new):
        return None
    return Proposal(name, replace(state, isr=new), rev, "isr")
