"""The partitions a storage worker holds a replica of: their names, logs, epoch caches, views.

A partition held is replicated as all of its logs: the default tenant's and each declared
tenant's (``zlog.replication.logset``); logs, caches and views are keyed by the log's name.

Invariants:
- The default tenant's log of p is ``worker.logs[p]``, another tenant's is in
  ``worker.tenant_logs`` (the worker's dicts, shared with its write and read paths); a log is
  replaced there when a truncation reopens it, and ``view(name)`` always bounds the current one.
- Every log of a partition held exists before the worker leads or follows it (``hold`` opens,
  creating them when new), so no tenant's record is ever stored where followers do not fetch.
- Epoch caches live in ``<storage_dir>/replication/<p>.epochs`` (another tenant's under
  ``replication/tenants/<tenant>/``, as its data is) and are loaded once.
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
from zlog.replication.logset import LogKey, log_name
from zlog.replication.view import BoundedLog
from zlog.storage import PartitionLog
from zlog.tenants.layout import tenant_root

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
        self.keys: dict[str, LogKey] = {}  # log name -> (tenant, partition), every log held
        self.log_names: dict[int, list[str]] = {}  # partition -> its logs' names, the default's first
        for p in self.partitions:
            self.hold(p)
        self.views: dict[str, BoundedLog] = {}
        self.caches: dict[str, EpochCache] = {}
        self.states: dict[int, PartitionState] = {}  # as etcd last said

    def placement(self) -> dict[str, tuple[int, ...]]:
        """name -> the replicas placement gives it, for the partitions this worker starts with."""
        c = self.cfg.cluster
        return {self.names[p]: replicas_of(p, c.partitions, c.workers, self.cfg.storage.replication_factor)
                for p in self.partitions}

    def hold(self, p: int) -> None:
        """Replicate partition ``p``'s logs: the default tenant's and each declared tenant's."""
        names = [self.names[p]]
        self.keys[names[0]] = (None, p)
        for tenant in self.worker.tenant_logs.open_declared(p):
            names.append(log_name(tenant, p))
            self.keys[names[-1]] = (tenant, p)
        self.log_names[p] = names

    def log(self, name: str) -> PartitionLog:
        tenant, p = self.keys[name]
        plog: PartitionLog = self.worker.logs[p] if tenant is None else self.worker.tenant_logs.logs[(tenant, p)]
        return plog

    def replace(self, name: str, plog: PartitionLog) -> None:
        """``name``'s log reopened (a truncation): the worker's paths use the new one from now on."""
        tenant, p = self.keys[name]
        if tenant is None:
            self.worker.logs[p] = plog
        else:
            self.worker.tenant_logs.logs[(tenant, p)] = plog

    def epoch_path(self, name: str) -> Path:
        tenant, p = self.keys[name]
        default = self.worker.default_tenant
        return tenant_root(Path(self.worker.storage_dir) / "replication", tenant or default, default) / f"{p}.epochs"

    def cache(self, name: str) -> EpochCache:
        c = self.caches.get(name)
        if c is None:
            c = self.caches[name] = EpochCache.load(self.epoch_path(name))
        return c

    def view(self, name: str) -> BoundedLog:
        v = self.views.get(name)
        plog = self.log(name)
        if v is None:
            v = self.views[name] = BoundedLog(plog, 0)
        v.plog = plog
        return v

    def view_of(self, tenant: str | None, p: int) -> BoundedLog | None:
        """``tenant``'s partition ``p`` as readers see it (None: a log not replicated here)."""
        name = log_name(tenant, p)
        return self.view(name) if name in self.keys else None

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
        self.hold(p)
        return p

    def drop(self, p: int) -> None:
        """etcd no longer lists this worker among ``p``'s replicas: close and forget its copy
        (every tenant's log of it)."""
        for tenant, _ in [self.keys.pop(n) for n in self.log_names.pop(p, ()) if n in self.keys]:
            if tenant is not None:
                other = self.worker.tenant_logs.logs.pop((tenant, p), None)
                if other is not None:
                    other.close()
            self.views.pop(log_name(tenant, p), None)
            self.caches.pop(log_name(tenant, p), None)
        plog = self.worker.logs.pop(p, None)
        if plog is not None:
            plog.close()
        name = self.names.pop(p, None)
        if name is not None:
            self.by_name.pop(name, None)
        if p in self.partitions:
            self.partitions.remove(p)
        self.states.pop(p, None)
        log.info("replica removed from this worker", extra={"partition": p, "files_kept": str(plog.directory)
                                                             if plog is not None else None})
