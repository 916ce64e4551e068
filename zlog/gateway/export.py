"""``GET /v1/logs/export``: the result of a ``/v1/logs`` search as NDJSON, streamed.

Takes the ``/v1/logs`` filters, ``direction`` and ``cursor``, and ``limit`` (rows, 1..
``MAX_EXPORT_ROWS``, default ``DEFAULT_EXPORT_ROWS``). The body is one stored record per line,
with ``partition`` and ``offset`` spliced in, in the order ``/v1/logs`` pages give them.

Invariants:
- Exactly the records paging ``/v1/logs`` with the same parameters would give, without gaps or
  repeats, cut at ``limit`` rows: the export walks the same ``PageMerge`` cursor.
- Bounded: one page (at most ``MAX_LIMIT`` records) is held at a time and written with chunked
  transfer encoding; a slow reader slows the walk (``write`` waits for the socket) instead of
  growing memory.
- A failure before the first byte is an ordinary JSON error (4xx/5xx). The export refuses to
  leave a partition out (a download must not silently miss records): an unavailable partition
  is 503 before the first byte, and once streaming, the last line is ``{"error": {...}}`` and
  the response ends (the status line is already sent).
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from zlog.gateway.auth import tenant_of
from zlog.gateway.context import CONTEXT
from zlog.gateway.partitions import now_ms, partition_count, scope
from zlog.gateway.read_api import run_search
from zlog.gateway.tenant import check_cursor
from zlog.protocol.errors import BadParameter, ZlogError
from zlog.read.paging import page_order, with_position
from zlog.read.params import parse_limit, parse_params
from zlog.read.query import MAX_LIMIT
from zlog.tenants.quotas import check_range

DEFAULT_EXPORT_ROWS = 10_000
MAX_EXPORT_ROWS = 1_000_000


async def get_export(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    rows = parse_limit(request.query.get("limit"), DEFAULT_EXPORT_ROWS, MAX_EXPORT_ROWS)
    tenant = tenant_of(request)
    now = now_ms()
    q = parse_params([(k, v) for k, v in request.query.items() if k != "limit"], now)
    check_cursor(request, tenant, q.cursor)
    check_range(ctx.limits_of(tenant), q.filter.since_ms, q.filter.until_ms, now)
    n = partition_count(ctx)
    parts = scope(q.filter, n)
    if q.cursor is not None and any(p >= n for p in q.cursor.positions):
        raise BadParameter("cursor", "names a partition this cluster does not have")
    resp: web.StreamResponse | None = None
    cursor = q.cursor
    sent = 0
    try:
        while sent < rows:
            errors: dict[int, ZlogError] = {}
            merge, _, _ = await run_search(ctx, q.filter, parts, q.backward, min(MAX_LIMIT, rows - sent), cursor, errors,
                                           tenant=tenant)
            if errors:
                raise next(iter(errors.values()))
            merge.out.sort(key=page_order, reverse=q.backward)
            chunk = b"".join(with_position(line, p, o) + b"\n" for p, o, line in merge.out)
            if resp is None:
                resp = web.StreamResponse(headers={
                    "Content-Type": "application/x-ndjson",
                    "Content-Disposition": f'attachment; filename="zlog-{time.strftime("%Y%m%dT%H%M%S")}.ndjson"',
                    "Cache-Control": "no-store",
                })
                resp.enable_chunked_encoding()
                await resp.prepare(request)
            if chunk:
                await resp.write(chunk)
            sent += len(merge.out)
            if not merge.more():
                break
            cursor = merge.cursor()
    except ZlogError as exc:
        if resp is None:
            raise
        await resp.write(orjson.dumps({"error": exc.to_json()}) + b"\n")
    assert resp is not None  # the first turn of the loop (rows >= 1) always prepares it
    await resp.write_eof()
    return resp


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/logs/export", get_export)
