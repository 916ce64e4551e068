"""What the gateway does with the tenant of a request (``zlog.gateway.auth.tenant_of`` says which).

Invariants:
- ``wire_tenant`` is what a batch names on the wire: None for the default tenant, so the
  default tenant's messages are byte for byte those of a cluster without tenants.
- ``check_cursor``: a cursor or tail event id made for another tenant is not found (404), so a
  tenant learns nothing of another's partitions, not even that the cursor was valid there.
"""

from __future__ import annotations

from aiohttp import web

from zlog.gateway.context import CONTEXT
from zlog.protocol.errors import ZlogError
from zlog.read.paging import Cursor


def wire_tenant(request: web.Request, tenant: str) -> str | None:
    return None if tenant == request.app[CONTEXT].cfg.cluster.tenant else tenant


def check_cursor(request: web.Request, tenant: str, cursor: Cursor | None) -> None:
    """A cursor (or tail event id) made for another tenant is not found: 404, never its data.
    A cursor naming no tenant was made before tenants existed: the default tenant's."""
    if cursor is None:
        return
    made_for = cursor.tenant if cursor.tenant is not None else request.app[CONTEXT].cfg.cluster.tenant
    if made_for != tenant:
        raise ZlogError("NOT_FOUND", "no such cursor")
