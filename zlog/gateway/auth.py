"""Who is calling: the gateway middleware that gives every request a tenant and a role.

After this middleware, ``request["tenant"]`` is a valid tenant id and ``request["role"]`` one
of ``write``, ``read``, ``admin``; handlers read the tenant through ``tenant_of(request)``.

Invariants:
- With ``auth.mode = "none"`` the tenant is ``X-Scope-OrgID`` when present (validated by
  ``zlog.tenants.ids``: an invalid one is a 400, never a fallback to the default) or
  ``cluster.tenant``; the role is ``admin`` (nobody is asked, so nobody is refused).
- No handler runs for a request whose tenant is not a valid id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from zlog.gateway.context import CONTEXT, error_response
from zlog.protocol.errors import ZlogError
from zlog.tenants import ids

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TENANT = "tenant"
ROLE = "role"


def tenant_of(request: web.Request) -> str:
    """The tenant a request acts for, as the auth middleware decided it."""
    tenant = request.get(TENANT)
    if tenant is None:
        # Only an app built without the middleware (a unit test) gets here: decide as mode none.
        tenant = ids.from_header(request.headers.get(ids.TENANT_HEADER), request.app[CONTEXT].cfg.cluster.tenant)
        request[TENANT] = tenant
    return str(tenant)


def role_of(request: web.Request) -> str:
    return str(request.get(ROLE, "admin"))


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    try:
        request[TENANT] = ids.from_header(request.headers.get(ids.TENANT_HEADER), ctx.cfg.cluster.tenant)
    except ZlogError as exc:
        return error_response(exc)
    request[ROLE] = "admin"
    return await handler(request)
