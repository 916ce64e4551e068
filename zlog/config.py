"""zlog configuration: one TOML file, overridden by ``ZLOG_*`` environment variables, then by CLI flags.

Invariants:
- Configuration is parsed once into frozen dataclasses and passed explicitly; there is no
  module-level mutable state and nothing reads the environment after ``load()``.
- Every key has a default, so an empty file (or none) gives a working local cluster.
- Unknown sections or keys are errors (a typo must not silently fall back to a default).
- The partition -> worker assignment is a pure function of (partitions, workers).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    index_interval_bytes: int = 4096
    max_record_bytes: int = 256 * 1024
    metrics_port_base: int = 9110  # worker N serves metrics on base + N
    max_batch_records: int = 100_000
    scan_budget_bytes: int = 8 * 1024 * 1024  # per SEARCH request, keeps the worker responsive


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    processes: int = 2
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


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "json"  # json | logfmt


@dataclass(frozen=True, slots=True)
class Config:
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def partitions_of(self, worker_id: int) -> tuple[int, ...]:
        return assign_partitions(self.cluster.partitions, self.cluster.workers)[worker_id]

    def owner_of(self, partition: int) -> int:
        return owner_of(partition, self.cluster.partitions, self.cluster.workers)

    def worker_metrics_port(self, worker_id: int) -> int:
        return self.storage.metrics_port_base + worker_id


def assign_partitions(partitions: int, workers: int) -> tuple[tuple[int, ...], ...]:
    """Contiguous blocks: 4 partitions over 2 workers -> (0, 1), (2, 3)."""
    return tuple(
        tuple(p for p in range(partitions) if owner_of(p, partitions, workers) == w)
        for w in range(workers)
    )


def owner_of(partition: int, partitions: int, workers: int) -> int:
    return partition * workers // partitions


# -- loading -----------------------------------------------------------------------------

_SECTIONS: dict[str, type[Any]] = {
    "cluster": ClusterConfig,
    "router": RouterConfig,
    "storage": StorageConfig,
    "gateway": GatewayConfig,
    "log": LogConfig,
}

# Short environment names users reach for first.
_ENV_ALIASES = {
    "ZLOG_DATA_DIR": ("cluster", "data_dir"),
    "ZLOG_HTTP_PORT": ("gateway", "port"),
    "ZLOG_NODE_ID": ("cluster", "node_id"),
    "ZLOG_FSYNC": ("storage", "fsync"),
    "ZLOG_LOG_LEVEL": ("log", "level"),
}


def _coerce(section: str, key: str, target: Any, value: Any) -> Any:
    """Turn a TOML value or an environment string into the dataclass field's type."""
    name = f"{section}.{key}"
    try:
        if isinstance(target, FsyncPolicy):
            return value if isinstance(value, FsyncPolicy) else FsyncPolicy.parse(str(value))
        if isinstance(target, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(target, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ConfigError(f"{name}: expected an integer")
            return int(value)
        if isinstance(target, float):
            if isinstance(value, bool):
                raise ConfigError(f"{name}: expected a number")
            return float(value)
        if isinstance(target, Path):
            if value in ("", None):
                raise ConfigError(f"{name}: must not be empty")
            return Path(value)
        if target is None and key.endswith("_dir"):
            return Path(value) if value not in ("", None) else None
        if isinstance(target, tuple):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
        if isinstance(target, str):
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return value


def _apply(cfg: Config, section: str, key: str, value: Any) -> Config:
    if section not in _SECTIONS:
        raise ConfigError(f"unknown config section [{section}]")
    sub = getattr(cfg, section)
    names = {f.name for f in dataclasses.fields(sub)}
    if key not in names:
        raise ConfigError(f"unknown config key {section}.{key}")
    new_sub = dataclasses.replace(sub, **{key: _coerce(section, key, getattr(sub, key), value)})
    return dataclasses.replace(cfg, **{section: new_sub})


def load(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[tuple[str, str, Any]] = (),
) -> Config:
    """Build the configuration: defaults < TOML file < environment < explicit overrides.

    ``path`` None means ``$ZLOG_CONFIG`` or ``conf/zlog.toml`` when it exists. ``overrides``
    are (section, key, value) triples, as CLI flags produce them.
    """
    env = os.environ if env is None else env
    cfg = Config()
    if path is None:
        env_path = env.get("ZLOG_CONFIG")
        path = Path(env_path) if env_path else (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(f"config: [{section}] must be a table")
            for key, value in values.items():
                cfg = _apply(cfg, section, key, value)
    for name, value in sorted(env.items()):
        if not name.startswith("ZLOG_") or name == "ZLOG_CONFIG":
            continue
        if name in _ENV_ALIASES:
            section, key = _ENV_ALIASES[name]
        else:
            rest = name[5:].lower()
            section, _, key = rest.partition("_")
            if section not in _SECTIONS or not key:
                continue  # not ours (e.g. ZLOG_TEST_*): ignore rather than fail
        cfg = _apply(cfg, section, key, value)
    for section, key, value in overrides:
        cfg = _apply(cfg, section, key, value)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    c = cfg.cluster
    if c.partitions < 1 or c.workers < 1:
        raise ConfigError("cluster.partitions and cluster.workers must be >= 1")
    if c.workers > c.partitions:
        raise ConfigError("cluster.workers must not exceed cluster.partitions")
    if not c.node_id or len(c.node_id) > 128:
        raise ConfigError("cluster.node_id must be 1..128 characters")
    if not cfg.router.front or not cfg.router.back:
        raise ConfigError("router.front and router.back need at least one endpoint")
    if cfg.router.heartbeat_ms < 10 or cfg.router.liveness < 1:
        raise ConfigError("router.heartbeat_ms must be >= 10 and router.liveness >= 1")
    s = cfg.storage
    if s.segment_bytes < 1024 or s.index_interval_bytes < 64:
        raise ConfigError("storage.segment_bytes >= 1024 and storage.index_interval_bytes >= 64")
    if s.max_record_bytes < 64:
        raise ConfigError("storage.max_record_bytes must be >= 64")
    g = cfg.gateway
    if g.max_body_bytes < 1024 or g.max_records < 1 or g.request_timeout_ms < 1:
        raise ConfigError("gateway limits must be positive (max_body_bytes >= 1024)")
    if g.max_inflight_bytes < g.max_body_bytes:
        raise ConfigError("gateway.max_inflight_bytes must be >= gateway.max_body_bytes")
    if cfg.log.format not in ("json", "logfmt"):
        raise ConfigError("log.format must be json or logfmt")
    if cfg.log.level.lower() not in ("debug", "info", "warn", "warning", "error"):
        raise ConfigError("log.level must be debug, info, warning (warn) or error")
    ports = {
        "router.metrics_port": cfg.router.metrics_port,
        "storage.metrics_port_base": cfg.storage.metrics_port_base,
        "gateway.port": g.port,
        "gateway.metrics_port_base": g.metrics_port_base,
    }
    for name, port in ports.items():
        if not 0 < port < 65536:
            raise ConfigError(f"{name} must be a TCP port (1..65535), got {port}")
