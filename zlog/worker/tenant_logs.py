"""The partition logs of a worker's non-default tenants: opened, created and refused here.

The default tenant's logs stay the worker's ``logs`` (partition -> log, as before tenants, which
replication and sealing build on); every other tenant's partition ``p`` of the same owned
numbers lives here, keyed by (tenant, p), in its own directory (``zlog.tenants.layout``).

Invariants:
- A tenant's logs are opened at start when their directories exist, and on the tenant's first
  write otherwise; a read never creates anything (``get`` only looks).
- ``for_write`` refuses with a named Nack and creates nothing: a name that is not a tenant id,
  an undeclared tenant while ``tenants.auto_create`` is off or the cluster is replicated, one
  tenant more than ``tenants.max_tenants``.
- Replicated, the declared tenants' logs of every partition a worker holds a replica of are
  opened (created) by ``open_declared`` before the worker leads or follows it, and ``for_write``
  only finds them: a log exists on a replica before anything is written to it, so a leader
  never stores a record in a log its followers do not fetch.
- Each tenant's engine settings carry its own retention (``storage_of``).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from collections.abc import Iterator
from pathlib import Path

from zlog.config import Config, StorageConfig
from zlog.protocol import bodies
from zlog.storage import PartitionLog
from zlog.storage.errors import StorageError
from zlog.tenants.ids import is_valid
from zlog.tenants.layout import PartitionKey, on_disk, tenant_root

log = logging.getLogger("zlog.worker")

FDS_PER_LOG = 4  # an open partition log: active segment data, index, time index, .batches
FDS_SPARE = 256  # sockets, metrics, closed segments being read


def storage_of(cfg: Config, tenant: str) -> StorageConfig:
    """The engine's settings for one tenant: its own retention where it has one."""
    lim = cfg.tenants.limits(tenant)
    s = cfg.storage
    return dataclasses.replace(s, retention_ms=lim.retention_ms or s.retention_ms,
                               retention_bytes=lim.retention_bytes or s.retention_bytes)


class TenantLogs:
    def __init__(self, cfg: Config, storage_dir: Path, owned: tuple[int, ...]) -> None:
        self.cfg = cfg
        self.storage_dir = storage_dir
        self.owned = owned
        self.default = cfg.cluster.tenant
        self.logs: dict[PartitionKey, PartitionLog] = {}
        self.tenants: set[str] = {self.default}
        for key in on_disk(storage_dir, owned, self.default):
            if key[0] != self.default:
                self._open(key)

    def _open(self, key: PartitionKey) -> PartitionLog:
        t0 = time.monotonic()
        directory = tenant_root(self.storage_dir, key[0], self.default) / str(key[1])
        plog = PartitionLog.open(directory, storage_of(self.cfg, key[0]))
        self.logs[key] = plog
        self.tenants.add(key[0])
        log.info("partition open", extra={"tenant": key[0], "partition": key[1], "next_offset": plog.next_offset,
                                           "segments": plog.segment_count, "bytes": plog.size_bytes,
                                           "ms": round((time.monotonic() - t0) * 1000, 1)})
        return plog

    def get(self, tenant: str, p: int) -> PartitionLog | None:
        return self.logs.get((tenant, p))

    def items(self) -> Iterator[tuple[str, int, PartitionLog]]:
        for (t, p), plog in self.logs.items():
            yield t, p, plog

    def for_write(self, tenant: str, p: int, *, replicated: bool) -> PartitionLog | bodies.Nack:
        """``tenant``'s log of partition ``p``, created on its first write; a Nack says why not."""
        plog = self.logs.get((tenant, p))
        if plog is not None:
            return plog
        if not is_valid(tenant):
            return bodies.Nack("INVALID_TENANT", "the batch's tenant is not a tenant id", False, p)
        t = self.cfg.tenants
        if replicated:
            # Replicas fetch the declared tenants' logs only (zlog.replication.logset).
            if tenant not in t.names():
                return bodies.Nack("UNKNOWN_TENANT", f"tenant {tenant!r} is not declared; a replicated cluster "
                                   "stores the tenants its [tenants.<id>] tables declare", False, p)
            return bodies.Nack("STORAGE_ERROR", f"tenant {tenant!r}: partition {p} is not open on this worker",
                               True, p)
        if tenant not in self.tenants:
            if not t.auto_create and tenant not in t.names():
                return bodies.Nack("UNKNOWN_TENANT", f"tenant {tenant!r} is not declared", False, p)
            if len(self.tenants) >= t.max_tenants:
                return bodies.Nack("TOO_MANY_TENANTS", f"this cluster keeps at most {t.max_tenants} tenants",
                                   False, p)
        try:
            return self._open((tenant, p))
        except (StorageError, OSError) as exc:
            log.error("cannot open partition", extra={"tenant": tenant, "partition": p, "detail": str(exc)})
            return bodies.Nack("STORAGE_ERROR", f"cannot open the tenant's partition: {exc}", True, p)


    def open_declared(self, p: int) -> list[str]:
        """Open (create when new) partition ``p`` of every declared tenant but the default; the
        tenants whose log is open (a failure is logged and leaves that tenant's log out)."""
        opened = []
        for tenant in sorted(set(self.cfg.tenants.names()) - {self.default}):
            if (tenant, p) not in self.logs:
                try:
                    self._open((tenant, p))
                except (StorageError, OSError, ValueError) as exc:
                    log.error("cannot open partition", extra={"tenant": tenant, "partition": p, "detail": str(exc)})
                    continue
            opened.append(tenant)
        return opened


def room_for_tenants(cfg: Config, worker_id: int) -> None:
    """Raise the soft open-files limit (up to the hard one) to what ``tenants.max_tenants`` open
    partition logs need, so that a new tenant's first write cannot fail for want of a descriptor;
    say so when even the hard limit is short."""
    # Replicated, a worker may come to hold a replica of any partition (reassignment).
    held = cfg.cluster.partitions if cfg.storage.replication_factor > 1 else len(cfg.partitions_of(worker_id))
    need = cfg.tenants.max_tenants * held * FDS_PER_LOG + FDS_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < need:
        log.warning("open-files limit below what tenants.max_tenants may need",
                    extra={"limit": target, "need": need, "max_tenants": cfg.tenants.max_tenants})
