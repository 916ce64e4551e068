"""A tenant's ingest limits at the gateway: ask the router's shared buckets before storing.

Invariants:
- Asked only when the tenant has a rate or services limit: a tenant without limits (the
  default) costs nothing here, not one message.
- One router keeps a tenant's buckets: the one at ``fnv1a(tenant) % routers``, so every gateway
  process (and every host) draws on the same bucket while that router lives.
- Over a limit the request is refused before anything is stored (429 + Retry-After naming the
  limit); a router that does not answer in time does not refuse ingest (fail open, counted as
  ``ADMIT_UNAVAILABLE``): the limits protect the cluster, they must not take ingest down.
"""

from __future__ import annotations

from zlog.gateway.context import GatewayContext
from zlog.ingest.records import Group
from zlog.protocol import bodies
from zlog.protocol.errors import OverLimit, ZlogError  # OverLimit: what admit raises
from zlog.protocol.hashing import fnv1a_32
from zlog.protocol.wire import Command

ADMIT_TIMEOUT_S = 1.0


async def admit(ctx: GatewayContext, tenant: str, groups: dict[str, Group], total: int) -> None:
    """Raise ``OverLimit`` when ``tenant`` may not ingest these records now."""
    lim = ctx.limits_of(tenant)
    if not (lim.records_per_s or lim.bytes_per_s or lim.max_services):
        return
    client = ctx.producer.client
    if client is None:
        return
    nbytes = sum(len(g.data) for g in groups.values())  # stored bytes: the lines and their newlines
    req = bodies.AdmitRequest(tenant, total, nbytes, tuple(groups) if lim.max_services else ())
    try:
        msg = await client.request(Command.ADMIT, body=bodies.admit_body(req), timeout=ADMIT_TIMEOUT_S,
                                   socket_index=fnv1a_32(tenant.encode()) % len(client.sockets))
        answer = msg.unpack()
    except ZlogError:
        ctx.metrics.errors.labels(kind="ADMIT_UNAVAILABLE").inc()
        return
    if answer.get("ok") is False:
        code = str(answer.get("code", "TENANT_RATE_LIMITED"))
        retry = answer.get("retry_after", 1)
        ctx.metrics.errors.labels(kind=code).inc()
        raise OverLimit(code, str(answer.get("message", "")), retry if isinstance(retry, int) and retry > 0 else 1)
