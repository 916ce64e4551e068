"""Loki's live tail: ``GET /loki/api/v1/tail`` over a WebSocket, as Loki and Grafana's live view speak it.

Parameters: ``query`` (a LogQL log query), ``start`` (default an hour ago), ``limit`` (entries sent
at once on connect, default 100), ``delay_for`` (seconds, at most 5; accepted, new entries are sent
as soon as they are committed). Each message is a text frame
``{"streams": [{"stream": {labels}, "values": [["<ns>", "<line>"]]}], "dropped_entries": null}``.

Invariants:
- First the newest ``limit`` entries since ``start`` (oldest first), then every entry committed
  after the heads seen at connect, in forward order per partition: no entry is sent twice and none
  committed after the connect is skipped while the socket keeps up.
- The pipeline runs on the workers (a forward SEARCH with ``logql`` per poll, every ``POLL_S``);
  each poll is one bounded page, so a burst arrives over several polls rather than at once.
- At most ``MAX_TAILS`` tails per gateway process (then 503 BACKPRESSURE before the upgrade); a
  storage failure after the upgrade closes the socket with code 1011 and its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from aiohttp import WSMsgType, web

from zlog.gateway.auth import tenant_of
from zlog.gateway.context import CONTEXT
from zlog.gateway.loki_query import log_streams, parse_query
from zlog.loki import ast
from zlog.loki.requests import DEFAULT_SINCE_NS, parse_duration, parse_limit, parse_time
from zlog.protocol.errors import BadParameter, ZlogError

POLL_S = 0.5
PAGE = 1000
MAX_TAILS = 64
MAX_DELAY_S = 5
_ACTIVE = web.AppKey("zlog_loki_tails", list)


def _frame(streams: list[dict[str, object]]) -> str:
    return orjson.dumps({"streams": streams, "dropped_entries": None}).decode()


async def get_tail(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    tenant = tenant_of(request)
    text = request.query.get("query", "")
    if not text:
        raise BadParameter("query", "required")
    q = parse_query(text)
    if not isinstance(q, ast.LogQuery):
        raise BadParameter("query", "tail takes a log query, not a metric query")
    start = parse_time(request.query.get("start"), "start", time.time_ns() - DEFAULT_SINCE_NS)
    limit = parse_limit(request.query.get("limit"))
    delay = parse_duration(request.query.get("delay_for"), "delay_for")
    if delay is not None and delay > MAX_DELAY_S * 10**9:
        raise BadParameter("delay_for", f"must be at most {MAX_DELAY_S} seconds")
    active = request.app[_ACTIVE]
    if len(active) >= MAX_TAILS:
        raise ZlogError("BACKPRESSURE", f"at most {MAX_TAILS} live tails per gateway")
    first, merge, _, _ = await log_streams(ctx, q, start, None, limit, True, tenant=tenant)
    cursor = merge.tail_cursor()
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    active.append(ws)
    reader = asyncio.ensure_future(_drain(ws))
    try:
        for s in first:
            s["values"] = list(reversed(s["values"]))  # oldest first, as Loki sends them
        if first:
            await ws.send_str(_frame(first))
        while not ws.closed and not reader.done():
            if cursor is None:  # no head seen at connect (a partition was away): start from now
                _, merge, _, _ = await log_streams(ctx, q, time.time_ns(), None, 1, True, tenant=tenant)
                cursor = merge.tail_cursor()
            else:
                streams, merge, _, _ = await log_streams(ctx, q, start, None, PAGE, False, cursor, tenant=tenant)
                cursor = merge.cursor()
                if streams:
                    await ws.send_str(_frame(streams))
                if merge.out:
                    continue  # more may be waiting: poll again at once
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), POLL_S)
    except ZlogError as exc:
        await ws.close(code=1011, message=f"{exc.code}: {exc.message}"[:120].encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        active.remove(ws)
        reader.cancel()
        if not ws.closed:
            await ws.close()
    return ws


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, so that a close from it is noticed."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            return


def setup(app: web.Application) -> None:
    app[_ACTIVE] = []
    app.router.add_get("/loki/api/v1/tail", get_tail)
