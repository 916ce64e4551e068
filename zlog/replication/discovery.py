"""What routers, gateways and producers know of a replicated cluster: etcd's keys, folded from a
read and the watch events after it.

Pure: no sockets, no threads, no clock. ``View.of`` turns one etcd read into a view; ``apply``
folds a batch of watch events (etcd's JSON: base64 keys and values, ``type`` absent for a put)
into the next view. The I/O shell that reads and watches is ``zlog.replication.watch``.

Invariants:
- A view is immutable: a new event makes a new view, so a reader on another thread always
  sees one consistent revision (publishing is one reference assignment).
- ``revision`` only grows: events at or below the view's revision are ignored (a watch
  re-established from an older revision replays nothing twice).
- A partition's leader is known only while etcd names it *and* that worker's lease key lives:
  a leader whose lease expired is no leader (requests for it are refused, not sent to a corpse).
- A value zlog did not write is ignored, as ``Coordinator.snapshot`` ignores it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zlog.replication.coordination import PartitionState, RouterInfo, Snapshot, WorkerInfo, unb64


@dataclass(frozen=True, slots=True)
class View:
    revision: int
    workers: Mapping[int, WorkerInfo] = field(default_factory=dict)
    partitions: Mapping[str, PartitionState] = field(default_factory=dict)
    routers: Mapping[int, RouterInfo] = field(default_factory=dict)

    @classmethod
    def of(cls, snap: Snapshot) -> View:
        return cls(snap.revision, dict(snap.workers), {n: s for n, (s, _) in snap.partitions.items()},
                   dict(snap.routers))

    def leader(self, partition: int | str) -> int | None:
        s = self.partitions.get(str(partition))
        if s is None or s.leader is None or s.leader not in self.workers:
            return None
        return s.leader

    def leaders(self, partitions: int) -> list[int | None]:
        return [self.leader(p) for p in range(partitions)]

    def fronts(self) -> list[str]:
        """The routers' front endpoints, by router id."""
        return [self.routers[i].front for i in sorted(self.routers)]


def apply(view: View, prefix: str, events: Iterable[Mapping[str, Any]]) -> View:
    """The view after ``events`` (one watch response's, in revision order)."""
    prefix = prefix.rstrip("/") + "/"
    workers, partitions, routers = dict(view.workers), dict(view.partitions), dict(view.routers)
    revision = view.revision
    for ev in events:
        kv = ev.get("kv") or {}
        try:
            rev = int(kv.get("mod_revision", 0))
            key = unb64(str(kv.get("key", ""))).decode()
        except (ValueError, TypeError):
            continue
        if rev <= view.revision or not key.startswith(prefix):
            continue
        revision = max(revision, rev)
        kind, _, name = key[len(prefix):].partition("/")
        deleted = ev.get("type") == "DELETE"
        try:
            value = b"" if deleted else unb64(str(kv.get("value", "")))
            if kind == "workers":
                if deleted:
                    workers.pop(int(name), None)
                else:
                    w = WorkerInfo.from_json(value)
                    workers[w.id] = w
            elif kind == "partitions":
                if deleted:
                    partitions.pop(name, None)
                else:
                    partitions[name] = PartitionState.from_json(value)
            elif kind == "routers":
                if deleted:
                    routers.pop(int(name), None)
                else:
                    r = RouterInfo.from_json(value)
                    routers[r.id] = r
        except (ValueError, KeyError, TypeError):
            continue
    if revision == view.revision:
        return view
    return View(revision, workers, partitions, routers)


def lost_workers(before: View | None, after: View) -> list[int]:
    """Workers whose lease key went away between two views (not ones never seen)."""
    if before is None:
        return []
    return sorted(set(before.workers) - set(after.workers))


def changed_leaders(before: View | None, after: View, partitions: int) -> list[int]:
    """Partitions with a live leader in ``after`` that is new: another worker, or a new epoch."""
    def term(v: View, p: int) -> tuple[int, int] | None:
        leader = v.leader(p)
        return None if leader is None else (leader, v.partitions[str(p)].epoch)

    return [p for p in range(partitions)
            if (now := term(after, p)) is not None and (before is None or term(before, p) != now)]
