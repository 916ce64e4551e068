"""Loading the configuration: defaults < TOML file < ``ZLOG_*`` environment < CLI flags, then validation.

Invariants:
- Parsed once into ``Config``; nothing reads the environment after ``load()``.
- Unknown sections or keys are errors (a typo must not silently fall back to a default).
- The sections are ``Config``'s fields: adding one to ``sections.Config`` is all loading needs.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zlog.config.sections import DEFAULT_CONFIG_PATH, Config, ConfigError, FsyncPolicy, TenantLimits
from zlog.tenants.ids import is_valid

_SECTIONS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(Config))
_LIMIT_KEYS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(TenantLimits))

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
        if target is None and key.endswith(("_dir", "_file")):
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
    if key not in names or (section, key) == ("tenants", "declared"):
        raise ConfigError(f"unknown config key {section}.{key}")
    new_sub = dataclasses.replace(sub, **{key: _coerce(section, key, getattr(sub, key), value)})
    return dataclasses.replace(cfg, **{section: new_sub})


def _declare_tenant(cfg: Config, tenant: str, values: dict[str, Any]) -> Config:
    """``[tenants.<id>]``: a declared tenant and the limits it sets over the ``[tenants]`` defaults."""

    if not is_valid(tenant):
        raise ConfigError(f"[tenants.{tenant[:40]!r}]: not a tenant id (1..150 of 0-9a-zA-Z!-_.*'())")
    t = cfg.tenants
    defaults = t.limits("")
    own = dict(next((o for n, o in t.declared if n == tenant), ()))
    for key, value in values.items():
        if key not in _LIMIT_KEYS:
            raise ConfigError(f"unknown config key tenants.{tenant}.{key}")
        own[key] = _coerce(f"tenants.{tenant}", key, getattr(defaults, key), value)
    declared = tuple((n, o) for n, o in t.declared if n != tenant) + ((tenant, tuple(sorted(own.items()))),)
    return dataclasses.replace(cfg, tenants=dataclasses.replace(t, declared=declared))


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
                if section == "tenants" and isinstance(value, dict):
                    cfg = _declare_tenant(cfg, key, value)
                else:
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
    if not 1 <= s.replication_factor <= c.workers:
        raise ConfigError("storage.replication_factor must be 1..cluster.workers")
    if not 0 <= s.min_insync_replicas <= s.replication_factor or s.replica_lag_ms < 500:
        raise ConfigError("storage.min_insync_replicas must be 0..replication_factor, replica_lag_ms >= 500")
    if s.replica_dead_after_ms < 1000:
        raise ConfigError("storage.replica_dead_after_ms must be >= 1000")
    if c.lease_ttl_ms < 1000:
        raise ConfigError("cluster.lease_ttl_ms must be >= 1000 (etcd leases count whole seconds)")
    if not (4096 <= cfg.seal.block_bytes <= 64 << 20 and 1 <= cfg.seal.level <= 22
            and 0 < cfg.seal.cpu_share <= 1 and cfg.seal.idle_ms >= 0 and cfg.seal.max_backlog >= 0):
        raise ConfigError("seal.block_bytes 4096..64 MiB, seal.level 1..22, seal.cpu_share in (0, 1], "
                          "seal.idle_ms and seal.max_backlog >= 0")
    g = cfg.gateway
    if g.max_body_bytes < 1024 or g.max_records < 1 or g.request_timeout_ms < 1:
        raise ConfigError("gateway limits must be positive (max_body_bytes >= 1024)")
    if g.acks not in ("all", "leader"):
        raise ConfigError("gateway.acks must be all or leader")
    if g.max_inflight_bytes < g.max_body_bytes:
        raise ConfigError("gateway.max_inflight_bytes must be >= gateway.max_body_bytes")
    if cfg.auth.mode not in ("none", "token", "basic"):
        raise ConfigError("auth.mode must be none, token or basic")
    if not is_valid(c.tenant):
        raise ConfigError("cluster.tenant must be a tenant id (1..150 bytes of 0-9 a-z A-Z ! - _ . * ' ( ))")
    t = cfg.tenants
    for name, lim in (("tenants", t.limits("")), *((n, t.limits(n)) for n in t.names())):
        if min(lim.records_per_s, lim.bytes_per_s, lim.max_services, lim.max_query_range_ms,
               lim.max_query_records, lim.retention_ms, lim.retention_bytes, lim.max_partition_bytes) < 0:
            raise ConfigError(f"[{name if name == 'tenants' else 'tenants.' + name}]: limits must be >= 0")
        if lim.burst_s <= 0:
            raise ConfigError(f"[{name if name == 'tenants' else 'tenants.' + name}]: burst_s must be > 0")
    if t.max_tenants < 1:
        raise ConfigError("tenants.max_tenants must be >= 1")
    if cfg.log.format not in ("json", "logfmt"):
        raise ConfigError("log.format must be json or logfmt")
    if cfg.log.level.lower() not in ("debug", "info", "warn", "warning", "error"):
        raise ConfigError("log.level must be debug, info, warning (warn) or error")
    for key in ("tcp", "udp"):
        addr = getattr(cfg.syslog, key)
        host, _, port = addr.rpartition(":")
        if addr and (not host or not port.isdigit() or not 0 < int(port) < 65536):
            raise ConfigError(f"syslog.{key} must be host:port (e.g. 127.0.0.1:1514), got {addr!r}")
    ports = {
        "router.metrics_port": cfg.router.metrics_port,
        "storage.metrics_port_base": cfg.storage.metrics_port_base,
        "gateway.port": g.port,
        "gateway.metrics_port_base": g.metrics_port_base,
    }
    for name, port in ports.items():
        if not 0 < port < 65536:
            raise ConfigError(f"{name} must be a TCP port (1..65535), got {port}")
