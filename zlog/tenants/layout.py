"""Where a tenant's partition lives: the one place that turns (tenant, partition) into a directory.

Layout under the data directory:

    <data>/<partition>/                      the default tenant (``cluster.tenant``)
    <data>/tenants/<tenant>/<partition>/     every other tenant

The default tenant keeps the single-tenant layout, so a data directory written before tenants
existed is that tenant's data as it is, with no migration step to run or to crash half-way.
The other tenants live under ``tenants/``, a name that can never be a partition (partitions are
digits only), so the two layouts never collide.

Routing is by partition number alone: partition ``p`` of every tenant has the same owner, and the
tenant travels in the batch (``tenant`` in PRODUCE, FETCH, SEARCH and STATS bodies). So the router's
table, the producer's owner map and the FNV-1a partitioning inside a tenant are unchanged.

Invariants:
- Pure path arithmetic except ``on_disk`` (one directory listing).
- A tenant id reaching this module has passed ``zlog.tenants.ids.is_valid`` (one path component,
  never ``.``/``..``, no ``/``); ``partition_dir`` refuses anything else rather than trust it.
"""

from __future__ import annotations

from pathlib import Path

from zlog.tenants.ids import is_valid

TENANTS_DIR = "tenants"
# A stored partition: (tenant, partition number). Offsets are per key, never shared.
PartitionKey = tuple[str, int]


def tenant_root(data_dir: Path, tenant: str, default: str) -> Path:
    """The directory holding ``tenant``'s partitions (the data dir itself for the default)."""
    if tenant == default:
        return data_dir
    if not is_valid(tenant):
        raise ValueError(f"not a tenant id: {tenant[:40]!r}")
    return data_dir / TENANTS_DIR / tenant


def partition_dir(data_dir: Path, key: PartitionKey, default: str) -> Path:
    tenant, partition = key
    if partition < 0:
        raise ValueError(f"partition out of range: {partition}")
    return tenant_root(data_dir, tenant, default) / str(partition)


def on_disk(data_dir: Path, partitions: tuple[int, ...], default: str) -> list[PartitionKey]:
    """The (tenant, partition) directories that exist for ``partitions``, default tenant first;
    names under ``tenants/`` that are not tenant ids are ignored (and never touched)."""
    found: list[PartitionKey] = [(default, p) for p in partitions]
    root = data_dir / TENANTS_DIR
    try:
        names = sorted(e.name for e in root.iterdir() if e.is_dir())
    except FileNotFoundError:
        return found
    for name in names:
        if name == default or not is_valid(name):
            continue
        found += [(name, p) for p in partitions if (root / name / str(p)).is_dir()]
    return found
