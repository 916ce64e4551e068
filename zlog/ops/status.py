"""``zlog status``: what every process of the local cluster says about itself, in one table.

It asks each router for METADATA (owners and per-worker liveness), each partition's owner for
STATS through a router (offsets, bytes, segments), and scrapes the ``/metrics`` port of every
router, worker and gateway the configuration names (and of every worker a router lists beyond
``cluster.workers``: one that joined a replicated cluster). ``--json`` prints the same report as one
JSON object.

Invariants:
- Read-only and bounded: every question has a short timeout and they are asked concurrently, so
  the command answers within a few seconds even when every process is down.
- A process that does not answer is reported as ``down`` with the reason; it never makes the
  command fail with a traceback. The exit code is 0 when nothing is missing (every router up,
  every partition owned by a live worker, every configured gateway scraped), 1 otherwise.
- The report's shape and its rendering are pure (``zlog.ops.report``): the I/O lives here, in
  ``gather``, so the shape of the report is tested without sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from zlog.client import AsyncClient
from zlog.config import Config
from zlog.ops.report import Raw, Samples, build_report
from zlog.ops.report_text import render
from zlog.protocol.errors import ZlogError
from zlog.protocol.wire import Command
from zlog.security.curve import client_curve

TIMEOUT_S = 1.0
# -- I/O ------------------------------------------------------------------------------------


def _host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def parse_metrics(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


async def _scrape(session: aiohttp.ClientSession, url: str) -> Samples | str:
    try:
        async with session.get(url) as resp:
            if resp.status != 200:
                return f"HTTP {resp.status}"
            return parse_metrics(await resp.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return _why(exc)


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | str:
    try:
        async with session.get(url) as resp:
            body = orjson.loads(await resp.read())
            return {"status": resp.status, "body": body}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return _why(exc)


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection refused at {exc.host}:{exc.port}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _request(client: AsyncClient, command: Command, deadline: float, **kw: Any) -> dict[str, Any] | str:
    """One request, retried while no connection is up yet (the DEALER refuses to queue)."""
    while True:
        left = deadline - time.monotonic()
        try:
            return (await client.request(command, timeout=max(0.05, left), **kw)).unpack()
        except ZlogError as exc:
            if exc.code != "BACKPRESSURE":
                return f"{exc.code}: {exc.message}"
            if left <= 0.05:
                return "no connection (is it running?)"
        await asyncio.sleep(0.02)


async def _not_asked() -> str:
    return "not asked"


async def gather(cfg: Config, timeout: float = TIMEOUT_S, tenant: str | None = None) -> Raw:
    """Everything the report needs; partition statistics are ``tenant``'s (None: the default's)."""
    raw = Raw(now=time.time())
    deadline = time.monotonic() + timeout
    curve = client_curve(cfg, "gateway")  # an operator's tool: it speaks with the gateways' key
    clients = [AsyncClient([ep], curve=curve) for ep in cfg.router.front]
    try:
        http_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=http_timeout) as session:
            router_host = "127.0.0.1"
            gw = _host(cfg.gateway.host)
            scrapes = asyncio.gather(
                asyncio.gather(*(_scrape(session, f"http://{router_host}:{cfg.router.metrics_port + i}/metrics")
                                 for i in range(len(cfg.router.front)))),
                asyncio.gather(*(_scrape(session, f"http://{router_host}:{cfg.worker_metrics_port(w)}/metrics")
                                 for w in range(cfg.cluster.workers))),
                asyncio.gather(*(_scrape(session, f"http://{gw}:{cfg.gateway.metrics_port_base + i}/metrics")
                                 for i in range(cfg.gateway.processes))),
                _get_json(session, f"http://{gw}:{cfg.gateway.port}/ready"),
                _scrape(session, f"http://{gw}:{cfg.syslog.metrics_port}/metrics") if cfg.syslog.tcp or cfg.syslog.udp
                else _not_asked(),
            )
            metas = asyncio.gather(*(_request(c, Command.METADATA, deadline) for c in clients))
            raw.metadata = list(await metas)
            # Workers that joined beyond cluster.workers are known from the routers only.
            joined = sorted({int(w["worker"]) for m in raw.metadata if isinstance(m, dict)
                             for w in m.get("workers", []) if int(w["worker"]) >= cfg.cluster.workers})
            extra = asyncio.gather(*(_scrape(session, f"http://{router_host}:{cfg.worker_metrics_port(w)}/metrics")
                                     for w in joined))
            # Partition statistics travel through the first router that answered.
            live = [c for c, m in zip(clients, raw.metadata, strict=True) if isinstance(m, dict)]
            if live:
                stats_deadline = time.monotonic() + timeout
                answers = await asyncio.gather(
                    *(_request(live[0], Command.STATS, stats_deadline, partition=p,
                               body={} if tenant is None else {"tenant": tenant})
                      for p in range(cfg.cluster.partitions))
                )
                raw.stats = dict(enumerate(answers))
            else:
                raw.stats = {p: "no router answered" for p in range(cfg.cluster.partitions)}
            routers, workers, gateways, health, syslog = await scrapes
            raw.syslog_metrics = syslog
            raw.router_metrics, raw.gateway_metrics = list(routers), list(gateways)
            raw.worker_metrics = dict(enumerate(workers)) | dict(zip(joined, await extra, strict=True))
            raw.health = health
    finally:
        for c in clients:
            c.close()
    return raw


def run(cfg: Config, args: argparse.Namespace) -> int:
    raw = asyncio.run(gather(cfg, tenant=getattr(args, "tenant", None)))
    report = build_report(cfg, raw)
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    return 0 if report["ok"] else 1
