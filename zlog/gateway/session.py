"""Signing a browser in with a bearer token: ``/v1/session`` and the cookie that carries it.

A browser cannot attach an ``Authorization`` header to a page, an ``EventSource`` or a download
link, so in ``auth.mode = "token"`` the viewer signs in once: ``POST /v1/session`` with the token
in the ``Authorization`` header (the auth middleware verifies it like any other request) answers
with the token in an ``HttpOnly; SameSite=Strict`` cookie, which the browser then sends with
every read the viewer makes.

Invariants:
- The cookie is a credential for reads only: it is taken for ``GET``/``HEAD`` requests without
  an ``Authorization`` header, never for a write, a ``POST`` query or an admin call, so no page
  of another site can make a signed-in browser change anything (and ``SameSite=Strict`` keeps
  the browser from sending it cross-site at all).
- The cookie is verified on every request exactly as the header would be (same cache, same
  lockout, same role table); a revoked token stops working at the next reload, cookie or not.
- Only ``token`` mode has sessions: under ``basic`` the browser sends the user's credentials
  itself, and under ``none`` there is nothing to sign in to.
- In ``token`` mode the viewer's static files (fixed bodies, no data) load without a credential,
  so a browser can show the sign-in form; everything they then fetch needs the credential.
- ``DELETE /v1/session`` clears the cookie and needs no credential: it grants nothing.
- The cookie is ``Secure`` when the browser's connection is HTTPS (the gateway's own, or a
  trusted proxy's ``X-Forwarded-Proto: https``), so it never travels in clear after that.
- Nothing here logs or echoes the token.
"""

from __future__ import annotations

from aiohttp import web

from zlog.gateway.context import CONTEXT, error_response
from zlog.protocol.errors import ZlogError
from zlog.security import roles
from zlog.security.verifier import Presented, parse_authorization

PATH = "/v1/session"
COOKIE = "zlog_token"
MAX_AGE_S = 12 * 3600


def cookie_credential(request: web.Request, mode: str) -> Presented | None:
    """The bearer token a signed-in browser's cookie carries, where a cookie may stand for one."""
    if mode != "token" or request.method not in roles.READ_METHODS:
        return None
    value = request.cookies.get(COOKIE)
    return Presented("bearer", value) if value else None


def opens_without_credential(request: web.Request, mode: str) -> bool:
    """Requests the middleware lets through unauthenticated because of sessions."""
    if request.path == PATH and request.method == "DELETE":
        return True
    return mode == "token" and request.method in roles.READ_METHODS and roles.is_static(request.path)


async def sign_in(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    mode = ctx.cfg.auth.mode
    if mode == "basic":
        return error_response(ZlogError("NO_SESSION", "auth.mode is basic: the browser sends the user's "
                                        "credentials itself, there is no session to open"))
    body: dict[str, object] = {"mode": mode, "tenant": request.get("tenant"), "role": request.get("role")}
    resp = web.json_response(body)
    if mode == "token":
        presented = parse_authorization(request.headers.get("Authorization"))
        assert presented is not None  # the auth middleware let the request through with it
        resp.set_cookie(COOKIE, presented.value, max_age=MAX_AGE_S, path="/", httponly=True, samesite="Strict",
                        secure=ctx.is_https(request))
    return resp


async def who(request: web.Request) -> web.Response:
    """Who the browser is signed in as (the viewer shows a sign-out button when it has a session)."""
    mode = request.app[CONTEXT].cfg.auth.mode
    return web.json_response({"mode": mode, "tenant": request.get("tenant"), "role": request.get("role"),
                              "session": mode == "token" and COOKIE in request.cookies
                              and "Authorization" not in request.headers})


async def sign_out(request: web.Request) -> web.Response:
    resp = web.json_response({"signed_out": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


def setup(app: web.Application) -> None:
    app.router.add_post(PATH, sign_in)
    app.router.add_get(PATH, who)
    app.router.add_delete(PATH, sign_out)
