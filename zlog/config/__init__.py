"""zlog configuration: one TOML file, overridden by ``ZLOG_*`` environment variables, then by CLI flags.

``sections`` is its shape (frozen dataclasses with defaults), ``loading`` how it is read and
checked. Everything a caller needs is named here: ``from zlog.config import Config, load``.

Invariants:
- Configuration is parsed once into frozen dataclasses and passed explicitly.
"""

from zlog.config.loading import load, validate
from zlog.config.sections import (
    DEFAULT_CONFIG_PATH,
    AuthConfig,
    ClusterConfig,
    Config,
    ConfigError,
    FsyncPolicy,
    GatewayConfig,
    IntakeConfig,
    LogConfig,
    RouterConfig,
    SealConfig,
    StorageConfig,
    SyslogConfig,
    TenantLimits,
    TenantsConfig,
    assign_partitions,
    owner_of,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AuthConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "FsyncPolicy",
    "GatewayConfig",
    "IntakeConfig",
    "LogConfig",
    "RouterConfig",
    "SealConfig",
    "StorageConfig",
    "SyslogConfig",
    "TenantLimits",
    "TenantsConfig",
    "assign_partitions",
    "load",
    "owner_of",
    "validate",
]
