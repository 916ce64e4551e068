"""The gateway process: an aiohttp server whose ingest handler is a zmq ``AsyncProducer``.

Several gateway processes share one port through SO_REUSEPORT; each also serves its own
``/metrics`` on ``gateway.metrics_port_base + index`` so Prometheus sees every process.

Invariants:
- Every response, errors included, is JSON with a named ``error`` code on failure; no handler
  lets an exception become an HTML 500 page.
- ``/healthz`` answers while the process lives; ``/ready`` only when a router (any of them) answers
  and every partition has a live owner, and says what is missing otherwise.
- SIGTERM stops accepting connections, lets in-flight requests finish (bounded by the request
  deadline), flushes the producer and exits; a second SIGTERM exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from zlog.client import AsyncProducer
from zlog.config import Config
from zlog.gateway import (
    auth,
    elastic,
    export,
    loki_push,
    loki_query,
    loki_tail,
    otlp,
    read_api,
    session,
    stats_api,
    tail,
    ui,
)
from zlog.gateway import server as http_server
from zlog.gateway.auth import AUTH, authenticate, check_listen, is_loopback
from zlog.gateway.context import CONTEXT, GatewayContext, error_response
from zlog.gateway.ingest import post_logs
from zlog.gateway.server import refusal_body
from zlog.gateway.spool import Spool
from zlog.gateway.wal import IngestWal
from zlog.ops.metrics import serve
from zlog.ops.runtime import freeze_startup_garbage, stop_event_on_signals, tune_malloc
from zlog.protocol.errors import ZlogError
from zlog.protocol.wire import Command
from zlog.replication.etcd_server import discovery_endpoints
from zlog.security import credentials
from zlog.security.credentials import CredentialsError
from zlog.security.curve import client_curve

log = logging.getLogger("zlog.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HOT_ROUTES = (("POST", "/v1/logs"),)  # skip the router's lookup (zlog.gateway.server._HotRoutes)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.Response(body=refusal_body(exc.status, exc.reason), status=exc.status,
                            content_type="application/json", headers=headers)
    except ZlogError as exc:
        return error_response(exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(ZlogError("INTERNAL", f"{type(exc).__name__}"))


async def healthz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.json_response({"status": "ok", "node_id": ctx.cfg.cluster.node_id, "pid": os.getpid(),
                              "gateway": ctx.index, "uptime_s": round(time.time() - ctx.started, 1)})


async def ready(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    client = ctx.producer.client
    body: dict[str, Any] = {"ready": False, "router": False}
    if client is None:
        body["missing"] = ["router"]
        return web.json_response(body, status=503)
    # Any router will do: the producer fails over between them, so one live router is enough.
    meta: dict[str, Any] | None = None
    for i in range(len(client.sockets)):
        try:
            meta = (await client.request(Command.METADATA, timeout=1.0, socket_index=i)).unpack()
            break
        except ZlogError as exc:
            body.update(error=exc.code, message=exc.message)
    if meta is None:
        body["missing"] = ["router"]
        return web.json_response(body, status=503, headers={"Retry-After": "1"})
    body.pop("error", None)
    body.pop("message", None)
    owners = meta.get("owners", [])
    missing = [p for p, o in enumerate(owners) if o is None]
    body.update(router=True, partitions=meta.get("partitions"), owners=owners,
                workers=[{"worker": w.get("worker"), "pid": w.get("pid"), "partitions": w.get("partitions")}
                         for w in meta.get("workers", [])])
    if missing:
        body["missing"] = [f"partition {p} has no live owner" for p in missing]
        return web.json_response(body, status=503, headers={"Retry-After": "1"})
    body["ready"] = True
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    return web.Response(body=generate_latest(ctx.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def new_producer(cfg: Config, acks: str) -> AsyncProducer:
    """The gateway's producer; replicated, it learns routers and leaders from etcd."""
    return AsyncProducer(list(cfg.router.front), node_id=cfg.cluster.node_id,
                         delivery_timeout_s=cfg.gateway.request_timeout_ms / 1000.0, hwm=cfg.router.hwm,
                         linger_ms=cfg.gateway.linger_ms, max_inflight=cfg.gateway.inflight_batches, acks=acks,
                         curve=client_curve(cfg, "gateway"), etcd=discovery_endpoints(cfg),
                         etcd_prefix=cfg.cluster.etcd_prefix)


async def make_app(cfg: Config, index: int = 0) -> web.Application:
    producer = new_producer(cfg, cfg.gateway.acks)
    await producer.start(timeout=30.0)
    ctx = GatewayContext.create(cfg, producer, index)
    app = web.Application(client_max_size=cfg.gateway.max_body_bytes, middlewares=[errors_as_json, authenticate])
    app[CONTEXT] = ctx
    auth.setup(app, cfg)
    app.router.add_post("/v1/logs", post_logs)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    read_api.setup(app)
    tail.setup(app)
    export.setup(app)
    ui.setup(app)
    session.setup(app)
    stats_api.setup(app)
    loki_push.setup(app)
    otlp.setup(app)
    elastic.setup(app)
    loki_query.setup(app)
    loki_tail.setup(app)

    spool_task: asyncio.Task[None] | None = None
    spool: Spool | None = None
    if cfg.gateway.wal:
        wal_dir = cfg.gateway.wal_dir or cfg.cluster.data_dir / "wal" / f"gateway-{index}"
        spool = Spool(IngestWal(wal_dir, cfg.gateway.wal_max_bytes), producer, ctx.metrics,
                      cfg.gateway.request_timeout_ms / 1000.0)
        producer.spool = spool.hook
        spool_task = asyncio.ensure_future(spool.run())
    ctx.extras["spool_hook"] = None if spool is None else spool.hook

    async def close_producer(app: web.Application) -> None:
        for other in list(ctx.extras.get("producers", {}).values()):
            await other.close(timeout=cfg.gateway.request_timeout_ms / 1000.0)
        await producer.close(timeout=cfg.gateway.request_timeout_ms / 1000.0)
        if spool is not None and spool_task is not None:
            spool.stop()
            spool_task.cancel()

    app.on_cleanup.append(close_producer)
    return app


def run(cfg: Config, index: int = 0, host: str | None = None, port: int | None = None) -> int:
    from zlog.ops.logs import setup_logging

    setup_logging(cfg.log, "gateway", gateway=index)
    tune_malloc()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    host = host or cfg.gateway.host
    port = port or cfg.gateway.port
    refusal = check_listen(cfg, host)
    if refusal:
        log.error("gateway refuses to start", extra={"reason": refusal})
        return 2
    if cfg.auth.mode == "none" and not is_loopback(host):
        log.warning("authentication is off and the gateway listens beyond loopback (auth.allow_insecure)",
                    extra={"host": host})
    try:
        credentials.load(credentials.path_of(cfg)) if cfg.auth.mode != "none" else None
    except CredentialsError as exc:
        log.error("gateway refuses to start: bad credentials file", extra={"reason": str(exc)})
        return 2
    try:
        client_curve(cfg, "gateway")
    except ValueError as exc:
        log.error("gateway refuses to start: no CurveZMQ key", extra={"reason": str(exc)})
        return 2
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = loop.run_until_complete(make_app(cfg, index))
    serve(cfg.gateway.metrics_port_base + index, app[CONTEXT].metrics.registry, host=cfg.gateway.host)
    freeze_startup_garbage()
    stop = stop_event_on_signals(loop)
    loop.add_signal_handler(signal.SIGHUP, app[AUTH].reload)
    log.info("gateway started", extra={"url": f"http://{host}:{port}", "pid": os.getpid(), "auth": cfg.auth.mode,
                                        "routers": list(cfg.router.front), "node_id": cfg.cluster.node_id})
    try:
        loop.run_until_complete(http_server.serve(app, host, port, stop,
                                                  shutdown_timeout=cfg.gateway.request_timeout_ms / 1000.0 + 1,
                                                  hot=HOT_ROUTES))
    finally:
        # What run_app would do: nothing left pending when the loop closes.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    log.info("gateway stopped")
    return 0
