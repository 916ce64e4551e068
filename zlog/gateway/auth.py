"""Who is calling: the gateway middleware that gives every request a tenant and a role.

After ``authenticate``, ``request["tenant"]`` is a valid tenant id and ``request["role"]`` one
of ``write``, ``read``, ``admin``; handlers read the tenant through ``tenant_of(request)``.

Invariants:
- ``auth.mode = "none"``: the tenant is ``X-Scope-OrgID`` when present (validated by
  ``zlog.tenants.ids``; an invalid one is a 400, never a fallback) or ``cluster.tenant``; the
  role is ``admin``. ``run`` refuses a non-loopback listen address then, unless
  ``auth.allow_insecure``.
- ``token`` / ``basic``: every request outside ``auth.open_paths`` carries a valid credential
  of that scheme or gets 401 with ``WWW-Authenticate``; a credential whose role may not do the
  request gets 403. The tenant is the credential's; ``X-Scope-OrgID`` may only repeat it (an
  ``admin`` credential may name any tenant).
- No answer echoes a presented credential, and none is logged: refusals name the problem only.
- In ``token`` mode a signed-in browser's cookie stands for the header on reads only
  (``zlog.gateway.session``); a request with an ``Authorization`` header is judged by it alone.
- Two ``X-Scope-OrgID`` headers are a 400 and two ``Authorization`` headers a 401: a request
  never means two tenants or two credentials.
- Slow checks (scrypt) run in threads, at most ``CHECKS_AT_ONCE`` at a time with at most
  ``MAX_WAITING`` queued; beyond that the answer is 503 at once, so a flood of wrong
  credentials cannot queue unbounded work. Verified credentials are cached (``Verifier``).
- A client (``client_ip``, which believes X-Forwarded-For only from trusted proxies) with more
  than ``lockout.MAX_FAILURES`` hashed failures in a minute gets 429 without a check until the
  minute ends (``zlog.security.lockout``).
- ``reload`` (SIGHUP) swaps the credentials whole, or keeps the old ones when the file is bad.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from zlog.config import Config
from zlog.gateway import headers, session
from zlog.gateway.context import CONTEXT, error_response
from zlog.protocol.errors import ZlogError
from zlog.security import credentials, roles
from zlog.security.credentials import CredentialsError, Principal
from zlog.security.lockout import Lockout
from zlog.security.verifier import Presented, Verifier, parse_authorization
from zlog.tenants import ids

log = logging.getLogger("zlog.gateway.auth")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TENANT = "tenant"
ROLE = "role"
PRINCIPAL = "principal"
CHECKS_AT_ONCE = 2
MAX_WAITING = 64
_SCHEME = {"token": "bearer", "basic": "basic"}
_CHALLENGE = {"token": 'Bearer realm="zlog"', "basic": 'Basic realm="zlog", charset="UTF-8"'}


@dataclass(slots=True)
class AuthState:
    """One per gateway process: the mode, the credentials in force, the check queue."""

    cfg: Config
    verifier: Verifier
    open_paths: frozenset[str]
    waiting: int = 0
    lockout: Lockout = field(default_factory=Lockout)
    checks: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(CHECKS_AT_ONCE))

    @classmethod
    def create(cls, cfg: Config) -> AuthState:
        creds = credentials.load(credentials.path_of(cfg)) if cfg.auth.mode != "none" else credentials.Credentials()
        return cls(cfg, Verifier(creds, cfg.auth.cache_s), frozenset(cfg.auth.open_paths))

    def reload(self) -> bool:
        if self.cfg.auth.mode == "none":
            return True
        path = credentials.path_of(self.cfg)
        try:
            creds = credentials.load(path)
        except CredentialsError as exc:
            log.error("credentials not reloaded; the previous ones stay in force", extra={"detail": str(exc)})
            return False
        self.verifier.replace(creds)
        log.info("credentials reloaded", extra={"path": str(path), "tokens": len(creds.tokens),
                                                 "users": len(creds.users)})
        return True


AUTH = web.AppKey("zlog_auth", AuthState)


def setup(app: web.Application, cfg: Config) -> None:
    """Install what the middleware needs, and the security headers of every answer."""
    app[AUTH] = AuthState.create(cfg)
    headers.setup(app)


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


def _refuse(code: str, message: str, mode: str) -> web.Response:
    resp = error_response(ZlogError(code, message))
    if code == "UNAUTHORIZED":
        resp.headers["WWW-Authenticate"] = _CHALLENGE[mode]
    return resp


async def _principal(state: AuthState, presented: Presented, client: str) -> Principal | web.Response | None:
    v = state.verifier
    hit = v.cached(presented)
    if isinstance(hit, Principal):
        return hit
    if hit is False:
        return None
    if not v.needs_hashing(presented):
        return None
    wait = state.lockout.blocked(client, time.monotonic())
    if wait > 0:
        return error_response(ZlogError("RATE_LIMITED", "too many failed credential checks from this client"),
                              retry_after=max(1, math.ceil(wait)))
    if state.waiting >= MAX_WAITING:
        return error_response(ZlogError("BACKPRESSURE", "too many credential checks in progress"))
    state.waiting += 1
    try:
        async with state.checks:
            generation = v.generation
            principal = await asyncio.get_running_loop().run_in_executor(None, v.check, presented, generation)
    finally:
        state.waiting -= 1
    if principal is None:
        state.lockout.failed(client, time.monotonic())
    return principal


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    state = request.app.get(AUTH)
    mode = state.cfg.auth.mode if state is not None else "none"
    tenant_headers = request.headers.getall(ids.TENANT_HEADER, [])
    if len(tenant_headers) > 1:  # which one a proxy or handler would read is anybody's guess: refuse both
        return error_response(ids.InvalidTenant(f"at most one {ids.TENANT_HEADER} header"))
    header_tenant = tenant_headers[0] if tenant_headers else None
    if (state is None or mode == "none" or request.path in state.open_paths
            or session.opens_without_credential(request, mode)):
        try:
            request[TENANT] = ids.from_header(header_tenant, ctx.cfg.cluster.tenant)
        except ZlogError as exc:
            return error_response(exc)
        request[ROLE] = "admin" if mode == "none" else "read"
        return await handler(request)
    given = request.headers.getall("Authorization", [])
    if given:
        presented = parse_authorization(given[0]) if len(given) == 1 else None
    else:
        presented = session.cookie_credential(request, mode)
    if presented is None or presented.scheme != _SCHEME[mode]:
        want = "a bearer token" if mode == "token" else "a user and password (HTTP basic)"
        return _refuse("UNAUTHORIZED", f"this API needs {want} in the Authorization header", mode)
    principal = await _principal(state, presented, ctx.client_ip(request))
    if isinstance(principal, web.Response):
        return principal
    if principal is None:
        return _refuse("UNAUTHORIZED", "the credential is not valid", mode)
    tenant = principal.tenant
    if header_tenant is not None:
        try:
            named = ids.validate(header_tenant)
        except ZlogError as exc:
            return error_response(exc)
        if named != tenant and principal.role != "admin":
            return _refuse("FORBIDDEN", "this credential may act only for its own tenant", mode)
        tenant = named
    needed = roles.required_role(request.method, request.path)
    if not roles.allows(principal.role, needed):
        return _refuse("FORBIDDEN", f"a {principal.role} credential may not do this (it needs {needed})", mode)
    request[TENANT] = tenant
    request[ROLE] = principal.role
    request[PRINCIPAL] = principal.name
    return await handler(request)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(cfg: Config, host: str) -> str | None:
    """Why the gateway must not listen on ``host`` with this configuration, or None."""
    if cfg.auth.mode == "none" and not is_loopback(host) and not cfg.auth.allow_insecure:
        return (f"auth.mode is none and gateway.host is {host}: anyone who can reach it could read and "
                "write every tenant's logs. Set auth.mode to token or basic (docs/security.md), listen on "
                "127.0.0.1, or set auth.allow_insecure = true to accept that")
    return None
