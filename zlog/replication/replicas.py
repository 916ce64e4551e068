"""The partitions a storage worker holds a replica of: their names, logs, epoch caches, views.

Invariants:
- A partition's log is ``worker.logs[p]`` (the worker's dict, shared with its write and read
  paths); it is replaced there when a truncation reopens it, and ``view(p)`` always bounds the
  current one.
- Epoch caches live in ``<storage_dir>/replication/<name>.epochs`` and are loaded once.
- ``partitions`` grows only by ``adopt`` (etcd lists this worker among a partition's replicas),
  and then only with names of this cluster's partitions; it shrinks only by ``drop`` (etcd no
  longer lists it: a move completed, perhaps while this worker was away), which closes the log
  and takes it out of ``worker.logs``, so nothing reads, follows or leads that copy any more.
  Its files stay on disk (a later ``adopt`` reopens them; truncation against the leader's
  epochs decides what of them is kept).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from zlog.config import Config
from zlog.replication.control import partition_name, replicas_of
from zlog.replication.coordination import PartitionState
from zlog.replication.epochs import EpochCache
from zlog.replication.view import BoundedLog
from zlog.storage import PartitionLog

log = logging.getLogger("zlog.replication")


def replica_partitions(cfg: Config, worker: int) -> list[int]:
    """The partitions worker ``worker`` holds a replica of at placement (before etcd says more)."""
    c = cfg.cluster
    return [p for p in range(c.partitions)
            if worker in replicas_of(p, c.partitions, c.workers, cfg.storage.replication_factor)]


class Replicas:
    def __init__(self, worker: Any, cfg: Config) -> None:
        self.worker = worker  # zlog.worker.process.StorageWorker
        self.cfg = cfg
        self.partitions = replica_partitions(cfg, worker.worker_id)
        self.names = {p: partition_name(p) for p in self.partitions}
        self.by_name = {n: p for p, n in self.names.items()}
        self.views: dict[int, BoundedLog] = {}
        self.caches: dict[int, EpochCache] = {}
        self.states: dict[int, PartitionState] = {}  # as etcd last said

    def placement(self) -> dict[str, tuple[int, ...]]:
        """name -> the replicas placement gives it, for the partitions this worker starts with."""
        c = self.cfg.cluster
        return {self.names[p]: replicas_of(p, c.partitions, c.workers, self.cfg.storage.replication_factor)
                for p in self.partitions}

    def log(self, p: int) -> PartitionLog:
        plog: PartitionLog = self.worker.logs[p]
        return plog

    def epoch_path(self, p: int) -> Path:
        return Path(self.worker.storage_dir) / "replication" / f"{self.names[p]}.epochs"

    def cache(self, p: int) -> EpochCache:
        c = self.caches.get(p)
        if c is None:
            c = self.caches[p] = EpochCache.load(self.epoch_path(p))
        return c

    def view(self, p: int) -> BoundedLog:
        v = self.views.get(p)
        plog = self.worker.logs[p]
        if v is None:
            v = self.views[p] = BoundedLog(plog, 0)
        v.plog = plog
        return v

    def adopt(self, name: str) -> int | None:
        """A replica a reassignment added to this worker: open (or create) its log."""
        try:
            p = int(name)
        except ValueError:
            return None
        if not 0 <= p < self.cfg.cluster.partitions:
            return None
        if p not in self.worker.logs:
            self.worker.logs[p] = PartitionLog.open(Path(self.worker.storage_dir) / name, self.cfg.storage)
        log.info("replica added to this worker", extra={"partition": p})
        self.partitions.append(p)
        self.names[p] = name
        self.by_name[name] = p
        return p

    def drop(self, p: int) -> None:
        """etcd no longer lists this worker among ``p``'s replicas: close and forget its copy."""
        plog = self.worker.logs.pop(p, None)
        if plog is not None:
            plog.close()
        name = self.names.pop(p, None)
        if name is not None:
            self.by_name.pop(name, None)
        if p in self.partitions:
            self.partitions.remove(p)
        for d in (self.views, self.caches, self.states):
            d.pop(p, None)
        log.info("replica removed from this worker", extra={"partition": p, "files_kept": str(plog.directory)
                                                             if plog is not None else None})
