"""Reassignment: moving a partition's replicas between workers, Kafka-style. Pure.

A move of partition p from replica set ``old`` to ``new`` takes three etcd transactions, each
compare-on-revision (``Coordinator.cas``), each decided here from one snapshot:

1. ``reassign``: ``replicas = old + (new - old)``, ``target = new``. The added replicas follow the
   leader and fetch like any follower; the leader adds each to the ISR once it has caught up.
2. (only when the leader is being removed) ``handoff``: the leader hands leadership to an
   in-sync member of ``new`` (``control.handoff_target``), with a new epoch.
3. ``complete``: once every added replica is in the ISR and the leader is in ``new``:
   ``replicas = new``, ``isr = isr & new``, ``target = ()``.

Invariants:
- A replica is dropped only by ``complete``, and only after every replica that replaces it is
  in the ISR: the ISR never shrinks below its size before the move, so an acknowledged record
  (below the high watermark, so on every ISR member) is on every replica that stays.
- At most ``max_moves`` partitions are being reassigned at once (bounded catch-up traffic).
- Moves are proposed only by the controller, the live worker with the smallest id; any other
  worker racing it (a stale controller) loses the transaction and re-reads.
- Draining worker N moves every replica off N, and so does losing it (``absence.Absences``: no
  etcd key for ``storage.replica_dead_after_ms``), lost workers first ("rereplicate"); balancing
  moves one replica at a time from the most to the least loaded eligible worker (live, not
  drained) until loads differ by at most one, and only while every partition has a live leader
  and a full ISR (no moves during a failover).
- A new replica goes to a host none of the others is on whenever such a worker exists.
"""

from __future__ import annotations

from dataclasses import replace

from zlog.replication.control import Proposal
from zlog.replication.coordination import PartitionState, Snapshot

MAX_MOVES = 2


def controller(snap: Snapshot) -> int | None:
    return min(snap.workers) if snap.workers else None


def _host(snap: Snapshot, w: int) -> str:
    info = snap.workers.get(w)
    return info.host if info is not None else f"?{w}"


def _pick(snap: Snapshot, eligible: list[int], load: dict[int, int], others: tuple[int, ...]) -> int | None:
    """The least loaded eligible worker not among ``others``, on a host none of them is on if any."""
    free = [w for w in eligible if w not in others]
    if not free:
        return None
    taken = {_host(snap, o) for o in others}
    apart = [w for w in free if _host(snap, w) not in taken]
    return min(apart or free, key=lambda w: (load[w], w))


def _start(name: str, state: PartitionState, rev: int, new: tuple[int, ...], why: str = "reassign") -> Proposal:
    added = tuple(r for r in new if r not in state.replicas)
    return Proposal(name, replace(state, replicas=state.replicas + added, target=new, adding=added), rev, why)


def nowhere_to_go(snap: Snapshot, worker: int) -> list[str]:
    """The partitions ``worker`` holds that no live, undrained worker could take a replica of."""
    eligible = [w for w in snap.workers if w not in snap.drains]
    return sorted(n for n, (s, _) in snap.partitions.items()
                  if worker in s.replicas and not s.target and all(w in s.replicas for w in eligible))


def completions(snap: Snapshot) -> list[Proposal]:
    """Reassignments whose added replicas are all in sync and whose leader stays: finish them."""
    out = []
    for name, (s, rev) in sorted(snap.partitions.items()):
        if not s.target or not set(s.adding) <= set(s.isr) or s.leader not in s.target:
            continue
        isr = tuple(sorted(set(s.isr) & set(s.target)))
        out.append(Proposal(name, replace(s, replicas=s.target, isr=isr, target=(), adding=()), rev, "complete"))
    return out


def reassignments(snap: Snapshot, max_moves: int = MAX_MOVES, lost: frozenset[int] = frozenset()) -> list[Proposal]:
    """New moves to start now: replicas off lost workers (``lost``: gone for good, see
    ``absence``) and drained ones first, lost ones before drained ones, then towards an even
    spread."""
    moving = sum(1 for s, _ in snap.partitions.values() if s.target)
    budget = max_moves - moving
    eligible = sorted(w for w in snap.workers if w not in snap.drains)
    if budget <= 0 or not eligible:
        return []
    load = {w: 0 for w in eligible}
    leads = {w: 0 for w in eligible}
    for s, _ in snap.partitions.values():
        final = s.target or s.replicas
        for r in final:
            if r in load:
                load[r] += 1
        if final and final[0] in leads:
            leads[final[0]] += 1
    out: list[Proposal] = []
    busy: set[str] = set()
    leaving = snap.drains | lost
    for name, (s, rev) in sorted(snap.partitions.items(), key=lambda kv: (not set(kv[1][0].replicas) & lost, kv[0])):
        if len(out) >= budget:
            return out
        gone = [r for r in s.replicas if r in leaving]
        if s.target or not gone or s.leader is None or s.leader not in snap.workers:
            continue  # a partition without a live leader has nobody to catch up from
        slots = list(s.replicas)
        for d in gone:
            w = _pick(snap, eligible, load, tuple(r for r in slots if r != d))
            if w is None:
                break
            slots[slots.index(d)] = w
            load[w] += 1
        if any(r in leaving for r in slots):
            continue  # nowhere to put one of them: wait for a worker to join
        out.append(_start(name, s, rev, tuple(slots), "rereplicate" if set(gone) & lost else "reassign"))
        busy.add(name)
    healthy = all(s.leader in snap.workers and set(s.isr) == set(s.replicas) and not s.target
                  for s, _ in snap.partitions.values())
    if out or moving or not healthy or len(eligible) < 2:
        return out  # balance only a settled cluster, one step at a time
    while len(out) < budget:
        lo = min(eligible, key=lambda w: (load[w], w))
        hi = max(eligible, key=lambda w: (load[w], -w))
        if load[hi] - load[lo] <= 1:
            break
        best: tuple[tuple[int, str], str, PartitionState, int, tuple[int, ...]] | None = None
        for name, (s, rev) in sorted(snap.partitions.items()):
            if name in busy or hi not in s.replicas or lo in s.replicas:
                continue
            others = tuple(r for r in s.replicas if r != hi)
            if _pick(snap, [lo], load, others) is None:
                continue
            if _host(snap, lo) in {_host(snap, o) for o in others} and any(
                    _host(snap, w) not in {_host(snap, o) for o in others} for w in eligible if w not in others):
                continue  # lo would share a host with another replica while some worker would not
            new = tuple(lo if r == hi else r for r in s.replicas)
            # Leaders spread too: move a preferred-leader slot only when hi leads more than lo.
            moves_leader = s.replicas[0] == hi
            rank = (0 if moves_leader == (leads[hi] > leads[lo]) else 1, name)
            if best is None or rank < best[0]:
                best = (rank, name, s, rev, new)
        if best is None:
            break
        _, name, s, rev, new = best
        out.append(_start(name, s, rev, new))
        busy.add(name)
        load[hi] -= 1
        load[lo] += 1
        if s.replicas[0] == hi:
            leads[hi] -= 1
            leads[lo] += 1
    return out
