"""Security headers on every gateway answer: a Content-Security-Policy for the viewer and friends.

The viewer is static files from ``/ui/`` that fetch JSON from the same origin; the policy lets
a page load scripts, styles, images and connections from that origin only, so a record that
slipped markup past the viewer's escaping still cannot run a script or send data elsewhere.

Invariants:
- Set in ``on_response_prepare``: every answer gets them, streams (SSE) and errors included,
  and a handler cannot forget them.
- No inline script or style is allowed, so the viewer's files must not use any (its CSS
  custom properties are set through the CSSOM, which CSP does not restrict).
"""

from __future__ import annotations

from aiohttp import web

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def _add(request: web.Request, response: web.StreamResponse) -> None:
    for k, v in HEADERS.items():
        response.headers.setdefault(k, v)


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(_add)
