"""What every gateway handler shares: configuration, the producer, metrics, limits.

Invariants:
- One ``GatewayContext`` per gateway process, created at start-up and stored on the aiohttp
  app under ``CONTEXT``; handlers reach everything through it (no module-level state).
- The producer and its client are the process's only zmq sockets.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from zlog.client import AsyncProducer
from zlog.config import Config, TenantLimits
from zlog.gateway.ratelimit import RateLimiter
from zlog.ingest.records import Limits
from zlog.ops.metrics import GatewayMetrics
from zlog.protocol.errors import ZlogError
from zlog.tenants.quotas import LimitsOf

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class GatewayContext:
    cfg: Config
    producer: AsyncProducer
    metrics: GatewayMetrics
    limits: Limits
    index: int = 0
    trusted: tuple[Network, ...] = ()
    inflight: int = 0
    inflight_bytes: int = 0
    limiter: RateLimiter | None = None
    started: float = field(default_factory=time.time)
    extras: dict[str, Any] = field(default_factory=dict)
    tenant_limits: LimitsOf | None = None  # [tenants] limits, memoised per tenant

    def limits_of(self, tenant: str) -> TenantLimits:
        if self.tenant_limits is None:
            self.tenant_limits = LimitsOf(self.cfg.tenants)
        return self.tenant_limits(tenant)

    @classmethod
    def create(cls, cfg: Config, producer: AsyncProducer, index: int = 0) -> GatewayContext:
        trusted = tuple(ipaddress.ip_network(p, strict=False) for p in cfg.gateway.trusted_proxies)
        rate = cfg.gateway.rate_limit_per_client
        limiter = RateLimiter(rate) if rate > 0 else None
        return cls(cfg, producer, GatewayMetrics(), Limits.from_config(cfg.gateway, cfg.storage), index, trusted,
                   limiter=limiter)

    def client_ip(self, request: web.Request) -> str:
        """The peer's host; X-Forwarded-For is believed only when the peer is a trusted proxy."""
        peer = request.remote or ""
        if not self.trusted or not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        # Walk from the nearest hop back; the first address that is not a trusted proxy is the client.
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def is_https(self, request: web.Request) -> bool:
        """Whether the client's connection is HTTPS: ours, or a trusted proxy's X-Forwarded-Proto."""
        if request.scheme == "https":
            return True
        return (bool(self.trusted) and self._is_trusted(request.remote or "")
                and request.headers.get("X-Forwarded-Proto", "").strip().lower() == "https")

    def _is_trusted(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)


CONTEXT = web.AppKey("zlog_context", GatewayContext)


def error_response(exc: ZlogError, *, retry_after: int = 1, extra: dict[str, Any] | None = None) -> web.Response:
    """The one way an error leaves the gateway: named code, message, status, Retry-After for 503/429."""
    body = exc.to_json()
    if extra:
        body.update(extra)
    headers = {}
    if exc.http_status in (429, 503):
        headers["Retry-After"] = str(retry_after)
    return web.json_response(body, status=exc.http_status, headers=headers, dumps=_dumps)


def _dumps(obj: Any) -> str:
    import orjson

    return orjson.dumps(obj).decode()
