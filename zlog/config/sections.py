"""The configuration's shape: one frozen dataclass per TOML section, every key with its default.

Invariants:
- Frozen and passed explicitly: no module-level mutable state.
- Every key has a default, so an empty file (or none) gives a working local cluster.
- A new section is a field of ``Config`` whose default is its dataclass; loading finds it there.
- The partition -> worker assignment is a pure function of (partitions, workers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("conf/zlog.toml")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class FsyncPolicy:
    """When an appended batch is forced to disk.

    ``always``: every commit (group commit) is fsynced before it is acknowledged.
    ``interval``: fsync at most every ``interval_ms``; an ack means written to the OS.
    ``never``: the OS decides; an ack means written to the OS.
    """

    mode: str = "always"
    interval_ms: int = 0

    @classmethod
    def parse(cls, text: str) -> FsyncPolicy:
        text = text.strip().lower()
        if text in ("always", "never"):
            return cls(text, 0)
        if text.startswith("interval:"):
            try:
                ms = int(text.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"fsync: bad interval in {text!r}") from None
            if ms <= 0:
                raise ConfigError("fsync: interval must be > 0 ms")
            return cls("interval", ms)
        raise ConfigError(f"fsync: expected always, never or interval:<ms>, got {text!r}")

    def __str__(self) -> str:
        return f"interval:{self.interval_ms}" if self.mode == "interval" else self.mode


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    node_id: str = "zlog-1"
    partitions: int = 4
    workers: int = 2
    data_dir: Path = Path("data")
    tenant: str = "default"
    # CurveZMQ on every socket between producers, routers and workers (docs/security.md);
    # without it every zmq endpoint must be on loopback.
    curve: bool = False
    keys_dir: Path | None = None  # default: <data_dir>/keys (zlog keys generate)
    # Replication (storage.replication_factor > 1): etcd endpoints ("http://host:port"); none =
    # the local etcd `zlog up` runs, on etcd_listen:etcd_client_port. host is what a worker
    # advertises to its peers (replicas go to distinct hosts when workers name theirs).
    etcd: tuple[str, ...] = ()
    etcd_prefix: str = "/zlog"
    etcd_listen: str = "127.0.0.1"
    etcd_client_port: int = 2379
    etcd_peer_port: int = 2380
    lease_ttl_ms: int = 3000
    host: str = "127.0.0.1"
    replication_port_base: int = 9200  # worker N's followers fetch from tcp://host:base+N


@dataclass(frozen=True, slots=True)
class RouterConfig:
    # Several routers may run; producers and workers take the whole list.
    front: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    back: tuple[str, ...] = ("tcp://127.0.0.1:5556",)
    metrics_port: int = 9100
    heartbeat_ms: int = 1000
    liveness: int = 3  # missed heartbeat intervals before a peer is dead
    hwm: int = 10_000  # messages queued per peer before sends raise zmq.Again


@dataclass(frozen=True, slots=True)
class StorageConfig:
    fsync: FsyncPolicy = field(default_factory=FsyncPolicy)
    segment_bytes: int = 128 * 1024 * 1024
    segment_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = 0  # per partition; 0 = unlimited
    retention_ms: int = 0  # 0 = keep forever
    retention_check_ms: int = 30_000  # how often a worker applies retention
    index_interval_bytes: int = 4096
    max_record_bytes: int = 256 * 1024
    metrics_port_base: int = 9110  # worker N serves metrics on base + N
    max_batch_records: int = 100_000
    scan_budget_bytes: int = 8 * 1024 * 1024  # per SEARCH request, keeps the worker responsive
    replication_factor: int = 1  # copies of each partition, on distinct workers (1: no etcd)
    min_insync_replicas: int = 0  # acks=all needs an ISR this large; 0 = min(2, replication_factor)
    replica_lag_ms: int = 4000  # a follower not keeping up for this long leaves the ISR (< request timeout)
    replica_dead_after_ms: int = 300_000  # a worker gone this long loses its replicas to live workers


@dataclass(frozen=True, slots=True)
class SealConfig:
    """Sealing closed segments into compressed, indexed ``.jsonl.zst`` files (docs/sealed.md)."""

    enabled: bool = True
    block_bytes: int = 256 * 1024  # lines per zstd frame; a fetch decompresses one
    level: int = 9  # zstd level: 9 is ~20x on typical logs at ~1.5 us of CPU per record
    cpu_share: float = 0.5  # of one core, for the low-priority child process that seals
    # Sealing waits for ingest to be quiet this long (the seal process is paused meanwhile),
    # unless more than max_backlog closed segments per worker are waiting.
    idle_ms: int = 1000
    max_backlog: int = 8


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # One process: on 2 cores shared with router and workers, a second gateway costs 7-10% more
    # CPU per log (docs/benchmarks.md); more cores than processes of the cluster want more.
    processes: int = 1
    metrics_port_base: int = 9120  # gateway N also serves /metrics on base + N
    max_body_bytes: int = 8 * 1024 * 1024  # after decompression, too
    max_records: int = 20_000
    max_service_bytes: int = 256
    max_level_bytes: int = 32
    max_message_bytes: int = 64 * 1024
    max_labels: int = 64
    max_label_key_bytes: int = 128
    max_label_value_bytes: int = 1024
    request_timeout_ms: int = 5000
    # Produce batching: records of concurrent requests share messages to the router. A batch
    # waits up to linger_ms to grow; at most inflight_batches per partition are unacknowledged.
    linger_ms: float = 2.0
    inflight_batches: int = 4
    max_inflight_requests: int = 512
    max_inflight_bytes: int = 64 * 1024 * 1024  # request bodies being handled at once
    # Records per second each client address may ingest per gateway process; 0 = no limit.
    # Beyond it: 429 + Retry-After. Bursts up to two seconds' worth are allowed.
    rate_limit_per_client: int = 0
    retry_after_s: int = 1
    trusted_proxies: tuple[str, ...] = ()
    wal: bool = True  # spool batches that storage cannot take now, answer 202, replay later
    wal_dir: Path | None = None  # default: <data_dir>/wal/gateway-<index>
    wal_max_bytes: int = 256 * 1024 * 1024
    idempotency_window_s: int = 600
    acks: str = "all"  # default for POST /v1/logs: "all" (every in-sync replica) or "leader"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may call the gateway's HTTP API (docs/security.md).

    ``none``: nobody is asked; the tenant is ``X-Scope-OrgID`` or ``cluster.tenant``, and the
    gateway refuses to listen beyond loopback unless ``allow_insecure``. ``token``: a bearer
    token, ``basic``: a user and password; both come from ``credentials_file`` and name a tenant
    and a role (write, read, admin).
    """

    mode: str = "none"  # none | token | basic
    credentials_file: Path | None = None  # default: <data_dir>/credentials.json
    allow_insecure: bool = False
    open_paths: tuple[str, ...] = ("/metrics", "/ready", "/healthz")
    # A verified credential is remembered (by a keyed digest, never in clear) this long.
    cache_s: float = 60.0


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    """Validation of the foreign ingest APIs (Loki push, OTLP, Elasticsearch bulk), Loki's defaults."""

    max_labels_per_stream: int = 15  # Loki's max_label_names_per_series
    max_age_ms: int = 7 * 24 * 3600 * 1000  # older entries are refused (Loki's reject_old_samples_max_age)
    grace_ms: int = 10 * 60 * 1000  # entries further in the future are refused (creation_grace_period)
    es_version: str = "8.17.0"  # what GET / answers Elasticsearch clients as version.number


@dataclass(frozen=True, slots=True)
class SyslogConfig:
    """The syslog listener (``zlog syslog``); off unless an address is set."""

    tcp: str = ""  # host:port, e.g. "127.0.0.1:1514"; "" = no TCP listener
    udp: str = ""  # host:port; "" = no UDP listener
    metrics_port: int = 9130
    max_message_bytes: int = 64 * 1024  # a longer message is counted as dropped, never stored cut
    batch_records: int = 500  # records per produce batch
    linger_ms: float = 20.0  # how long a partial batch waits for more
    max_pending: int = 20_000  # records parsed and not yet stored; beyond, new ones are dropped (counted)


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "json"  # json | logfmt


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """One tenant's quotas; 0 means no limit. ``[tenants]`` holds the defaults, ``[tenants.<id>]``
    a declared tenant's own values (keys it does not name keep the defaults)."""

    records_per_s: int = 0  # ingest rate, shared by every gateway process (the router's bucket)
    bytes_per_s: int = 0  # ingest rate in bytes of stored lines
    burst_s: float = 2.0  # a bucket holds this many seconds of rate
    max_services: int = 0  # distinct services (streams) a tenant may write
    max_query_range_ms: int = 0  # until - since of one search
    max_query_records: int = 0  # records one read may return (limit=)
    retention_ms: int = 0  # age after which the tenant's closed segments are deleted
    retention_bytes: int = 0  # per partition of the tenant: oldest segments go beyond this
    max_partition_bytes: int = 0  # storage quota per partition: beyond it, 429 QUOTA_EXCEEDED


_LIMIT_KEYS = frozenset(TenantLimits.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class TenantsConfig(TenantLimits):
    auto_create: bool = True  # a tenant appears when first written; false: only declared ones
    max_tenants: int = 1000  # tenants a worker keeps open (each has its own partition logs)
    # Declared tenants: (id, the limits it sets itself); every other limit is the default above,
    # so an environment override of a default reaches declared tenants too.
    declared: tuple[tuple[str, tuple[tuple[str, int | float], ...]], ...] = field(
        default=(), metadata={"subtables": True})

    def limits(self, tenant: str) -> TenantLimits:
        values = {k: getattr(self, k) for k in _LIMIT_KEYS}
        for name, own in self.declared:
            if name == tenant:
                values.update(own)
        return TenantLimits(**values)

    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.declared)


@dataclass(frozen=True, slots=True)
class Config:
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    seal: SealConfig = field(default_factory=SealConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    syslog: SyslogConfig = field(default_factory=SyslogConfig)
    log: LogConfig = field(default_factory=LogConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tenants: TenantsConfig = field(default_factory=TenantsConfig)

    def partitions_of(self, worker_id: int) -> tuple[int, ...]:
        return assign_partitions(self.cluster.partitions, self.cluster.workers)[worker_id]

    def owner_of(self, partition: int) -> int:
        return owner_of(partition, self.cluster.partitions, self.cluster.workers)

    def worker_metrics_port(self, worker_id: int) -> int:
        return self.storage.metrics_port_base + worker_id

    @property
    def min_isr(self) -> int:
        r = self.storage.replication_factor
        return self.storage.min_insync_replicas or min(2, r)


def assign_partitions(partitions: int, workers: int) -> tuple[tuple[int, ...], ...]:
    """Contiguous blocks: 4 partitions over 2 workers -> (0, 1), (2, 3)."""
    return tuple(
        tuple(p for p in range(partitions) if owner_of(p, partitions, workers) == w)
        for w in range(workers)
    )


def owner_of(partition: int, partitions: int, workers: int) -> int:
    return partition * workers // partitions
