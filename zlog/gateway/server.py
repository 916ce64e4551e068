"""The gateway's HTTP server: aiohttp's runner, with every refusal in the API's JSON error shape.

Requests that reach the application are answered by handlers and the ``errors_as_json``
middleware. A request aiohttp's parser refuses before any handler runs (a malformed request
line or header, a line too long, a broken chunked body) is answered by the connection handler's
``handle_error``, which writes plain text; here it writes ``{"error": CODE, "message": ...}``
with the same status, as every other zlog error.

Invariants:
- The status of a parser refusal is aiohttp's own (400, 413, 431, 500 ...); only the body differs.
- The message names the problem without echoing the request (no header values, no body bytes).
- The connection is closed after such an answer, as aiohttp does.
- Such a refusal is logged as one line naming the error's class, never with the request's bytes.
- A hot route (``POST /v1/logs``) is answered by the same middlewares and handler as through the
  router, resolved once; only the per-request lookup is skipped (``_HotRoutes``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_urldispatcher import PlainResource, UrlMappingMatchInfo

log = logging.getLogger("zlog.gateway.server")

_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT",
          413: "PAYLOAD_TOO_LARGE", 414: "URI_TOO_LONG", 415: "UNSUPPORTED_MEDIA_TYPE",
          431: "HEADERS_TOO_LARGE", 500: "INTERNAL", 503: "UNAVAILABLE"}


def error_code(status: int) -> str:
    """The error code of an HTTP refusal that has no more specific zlog error."""
    return _CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL")


def refusal_body(status: int, message: str) -> bytes:
    return orjson.dumps({"error": error_code(status), "message": message})


class _JsonErrorHandler(RequestHandler):
    __slots__ = ()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # A request the parser refused is the client's fault: one line naming the kind of error,
        # never aiohttp's traceback, whose message quotes the raw bytes (an Authorization header
        # with a stray CR would land in the log).
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            log.info("request refused by the HTTP parser", extra={"error": type(exc).__name__, "status": exc.code})
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs, and checks nothing was sent
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "error"
        # aiohttp's messages for parser errors name the failed rule ("Invalid method ...") and may
        # quote the offending bytes; a stable phrase plus the exception's class is enough to act on.
        detail = phrase if exc is None or status >= 500 else f"{phrase}: {type(exc).__name__}"
        resp = web.Response(status=plain.status, body=refusal_body(plain.status, detail),
                            content_type="application/json")
        resp.force_close()
        return resp


class _JsonErrorServer(web.Server):
    __slots__ = ()

    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class _HotRoutes:
    """The server's request handler: a request for one of a few exact (method, path) routes goes
    straight to that route's handler wrapped in the app's middlewares, both resolved once at
    start-up; anything else (and any request with ``Expect``) goes to the app, router and all.

    The hot path runs exactly what the app would: the same middlewares in the same order around
    the same handler, with the route's match info; it only skips the router's lookup and the
    per-request match info, which the app needs for sub-applications (the gateway has none)."""

    def __init__(self, app: web.Application, fallback: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
                 hot: Iterable[tuple[str, str]]) -> None:
        self.fallback = fallback
        wanted = set(hot)
        self.routes: dict[tuple[str, str], tuple[UrlMappingMatchInfo, Callable[[Any], Awaitable[Any]]]] = {}
        for route in app.router.routes():
            resource = route.resource
            key = (route.method, resource.canonical if resource is not None else "")
            if key not in wanted or not isinstance(resource, PlainResource):
                continue
            info = UrlMappingMatchInfo({}, route)
            info.add_app(app)
            info.freeze()
            handler: Callable[[Any], Awaitable[Any]] = route.handler
            for mw in reversed(app.middlewares):
                handler = functools.partial(mw, handler=handler)
            self.routes[key] = (info, handler)

    async def __call__(self, request: BaseRequest) -> web.StreamResponse:
        hit = self.routes.get((request.method, request.path))
        if hit is None or hdrs.EXPECT in request.headers:
            return await self.fallback(request)
        request._match_info = hit[0]  # type: ignore[attr-defined]  # what the router would have set
        response: web.StreamResponse = await hit[1](request)
        return response


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer parser refusals in JSON, and whose ``hot``
    routes skip the router (``_HotRoutes``)."""

    def __init__(self, app: web.Application, *, hot: Iterable[tuple[str, str]] = (), **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._hot = tuple(hot)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds its server with private arguments (its handler and request factory);
        # changing the class keeps them and swaps only how a connection handler is made.
        server.__class__ = _JsonErrorServer
        if self._hot:  # read by each connection handler when it is made, so before any connection
            server.request_handler = _HotRoutes(self.app, server.request_handler, self._hot)
        return server


async def serve(app: web.Application, host: str, port: int, stop: asyncio.Event, *,
                shutdown_timeout: float, hot: Iterable[tuple[str, str]] = ()) -> None:
    """Listen on (host, port) until ``stop`` is set, then shut down gracefully within the timeout.

    The listener sets SO_REUSEPORT (several gateway processes share the port) and SO_REUSEADDR
    (a restart never waits for the last run's connections in TIME_WAIT), as every zlog listener
    does: libzmq sets it on TCP binds, prometheus-client on /metrics."""
    runner = GatewayRunner(app, hot=hot, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=True, reuse_address=True)
        await site.start()
        await stop.wait()
    finally:
        await runner.cleanup()
