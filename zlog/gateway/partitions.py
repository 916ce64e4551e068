"""How a gateway asks storage: one request routed to a partition's owner, the partitions a filter
can match, STATS of several at once.

The read API, the live tail and every other read front end (Loki, stats) ask through here.

Invariants:
- Every request carries the gateway's request timeout; a failure is a ``ZlogError``, never hangs.
- ``scope`` reads only the partitions a service filter names (FNV-1a of the service).
- Every request names the tenant whose partition it reads (``tenant``, required: a read front end
  cannot forget it); the default tenant's bodies name none, as before tenants existed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from zlog.client import AsyncClient
from zlog.gateway.context import GatewayContext
from zlog.protocol.errors import ZlogError
from zlog.protocol.hashing import partition_for
from zlog.protocol.wire import Command
from zlog.read.query import Filter

FETCH_BYTES = 4 * 1024 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


def client_of(ctx: GatewayContext) -> AsyncClient:
    client = ctx.producer.client
    if client is None:
        raise ZlogError("SHUTTING_DOWN", "the gateway has no router connection")
    return client


def partition_count(ctx: GatewayContext) -> int:
    return ctx.producer.partitions or ctx.cfg.cluster.partitions


def timeout_s(ctx: GatewayContext) -> float:
    return ctx.cfg.gateway.request_timeout_ms / 1000.0


def scope(flt: Filter, partitions: int) -> list[int]:
    """The partitions a filter can match: a service filter names them, otherwise all."""
    if flt.services:
        return sorted({partition_for(s, partitions) for s in flt.services})
    return list(range(partitions))


async def ask(ctx: GatewayContext, command: Command, partition: int, body: dict[str, Any],
              tenant: str) -> dict[str, Any]:
    """One read of ``tenant``'s partition ``partition``."""
    if tenant != ctx.cfg.cluster.tenant:
        body = {**body, "tenant": tenant}
    msg = await client_of(ctx).request(command, partition=partition, body=body, timeout=timeout_s(ctx))
    return msg.unpack()


async def stats_all(ctx: GatewayContext, parts: list[int], body: dict[str, Any],
                    tenant: str) -> list[dict[str, Any] | ZlogError]:
    async def one(p: int) -> dict[str, Any] | ZlogError:
        try:
            return await ask(ctx, Command.STATS, p, body, tenant)
        except ZlogError as exc:
            return exc

    return list(await asyncio.gather(*(one(p) for p in parts)))
