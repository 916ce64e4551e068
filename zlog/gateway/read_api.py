"""The gateway's read API: search, fetch, partitions and services (request/response).

Endpoints (all GET): ``/v1/logs``, ``/v1/query`` (the original's), ``/v1/services``,
``/v1/partitions``, ``/v1/partitions/{p}/records``. ``setup`` also registers the live tail
(``zlog.gateway.tail``, ``/v1/tail``) and the log viewer (``zlog.gateway.ui``, ``/`` and ``/ui/*``).

Invariants:
- A read touches only the partitions its filter can match: a service filter reaches only that
  service's partition(s); every request to a worker is one bounded SEARCH/FETCH/STATS.
- ``/v1/logs`` merges partitions with ``PageMerge``: a page never repeats or skips a record
  relative to the previous page's cursor. A search is bounded by a wall-clock deadline; when it
  runs out the page is returned short, with a cursor and ``more: true``.
- Records leave as stored, spliced with ``partition`` and ``offset`` (never re-encoded).
- Bad parameters answer 400 naming the parameter; storage failures keep their own status
  (503 no owner, 504 timeout), never 400.
- Every request to a worker names the caller's tenant (``tenant_of``): a read sees that
  tenant's partitions only, and a cursor made for another tenant is 404 (``check_cursor``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from zlog.gateway.auth import tenant_of
from zlog.gateway.context import CONTEXT, GatewayContext
from zlog.gateway.partitions import (
    FETCH_BYTES,
    ask,
    client_of,
    now_ms,
    partition_count,
    scope,
    stats_all,
    timeout_s,
)
from zlog.gateway.tenant import check_cursor
from zlog.protocol.errors import BadParameter, ZlogError
from zlog.protocol.wire import Command
from zlog.read.paging import Cursor, PageMerge, page_order, with_position
from zlog.read.params import parse_params
from zlog.read.query import MAX_LIMIT, Filter
from zlog.replication.summary import summarize
from zlog.tenants.quotas import capped, check_limit, check_range

SEARCH_DEADLINE_S = 2.0


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


async def run_search(ctx: GatewayContext, flt: Filter, parts: list[int], backward: bool, limit: int,
                     cursor: Cursor | None, errors: dict[int, ZlogError] | None = None,
                     logql: str | None = None, *, tenant: str) -> tuple[PageMerge, int, int]:
    """Fill one page; returns the merge (records, cursor) and the records and bytes scanned.

    A partition whose owner cannot answer (a retryable error) is left out and named in
    ``errors``; when every partition is out, the first error is raised (a 503/504, never a 400).
    """
    errors = {} if errors is None else errors
    merge = PageMerge(parts, backward, limit, cursor, flt.digest(), tenant)
    fbody = flt.to_body()
    deadline = time.monotonic() + min(SEARCH_DEADLINE_S, timeout_s(ctx))
    scanned = scanned_bytes = 0
    while not merge.run():
        if merge.out and time.monotonic() > deadline:
            break
        wanted = merge.wanted()
        remaining = limit - len(merge.out)
        bodies = []
        for p, start in wanted.items():
            body: dict[str, Any] = {"filter": fbody, "backward": backward, "limit": remaining}
            if logql is not None:  # a LogQL log query, run beside the data (zlog.worker.reads)
                body["logql"] = logql
            if start is not None:
                body["start"] = start
            bodies.append(ask(ctx, Command.SEARCH, p, body, tenant))
        replies = await asyncio.gather(*bodies, return_exceptions=True)
        for p, r in zip(wanted, replies, strict=True):
            if isinstance(r, BaseException):
                if not isinstance(r, ZlogError) or not r.retry:
                    raise r  # the caller's fault (a bad filter) or ours: not a missing partition
                errors[p] = r
                merge.skip(p)
                continue
            merge.feed(p, [(o, line) for o, line in r["records"]], r["next"], r["high_watermark"])
            scanned += r.get("scanned_records", 0)
            scanned_bytes += r.get("scanned_bytes", 0)
        if time.monotonic() > deadline:
            merge.run()
            break
    if errors and len(errors) == len(parts):
        raise next(iter(errors.values()))
    return merge, scanned, scanned_bytes


def _records_json(items: list[tuple[int, int, bytes]]) -> bytes:
    return b"[" + b",".join(with_position(line, p, o) for p, o, line in items) + b"]"


async def get_logs(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    t0 = time.perf_counter()
    tenant = tenant_of(request)
    now = now_ms()
    q = parse_params(request.query.items(), now)
    check_cursor(request, tenant, q.cursor)
    limits = ctx.limits_of(tenant)
    check_range(limits, q.filter.since_ms, q.filter.until_ms, now)
    check_limit(limits, q.limit)
    n = partition_count(ctx)
    parts = scope(q.filter, n)
    if q.cursor is not None and any(p >= n for p in q.cursor.positions):
        raise BadParameter("cursor", "names a partition this cluster does not have")
    errors: dict[int, ZlogError] = {}
    merge, scanned, scanned_bytes = await run_search(ctx, q.filter, parts, q.backward, q.limit, q.cursor, errors,
                                                     tenant=tenant)
    # Which records make the page is the merge's business (the cursor depends on it); within the
    # page, strict time order reads better, since batches interleave services inside a partition.
    merge.out.sort(key=page_order, reverse=q.backward)
    more = merge.more()
    cursor = merge.cursor().encode() if more or not q.backward else None
    tail = merge.tail_cursor()
    meta: dict[str, Any] = {
        "count": len(merge.out),
        "cursor": cursor,
        "more": more,
        "direction": "backward" if q.backward else "forward",
        "partitions": parts,
        "scanned_records": scanned,
        "scanned_bytes": scanned_bytes,
        "took_ms": round((time.perf_counter() - t0) * 1000, 2),
    }
    if tail is not None:
        meta["tail_cursor"] = tail.encode()
    if errors:
        # Partial, and saying so: what the live partitions hold now beats no answer at all.
        meta["partial"] = True
        meta["unavailable"] = [{"partition": p, "error": e.code, "message": e.message} for p, e in sorted(errors.items())]
    return _json(b'{"records":' + _records_json(merge.out) + b"," + orjson.dumps(meta)[1:])


async def get_query(request: web.Request) -> web.Response:
    """The original's ``/v1/query?service=S&limit=M``: S's last M records, newest last."""
    ctx = request.app[CONTEXT]
    tenant = tenant_of(request)
    service = request.query.get("service", "")
    if not service:
        raise BadParameter("service", "required")
    raw_limit = request.query.get("limit")
    if raw_limit is None:
        raise BadParameter("limit", "required")
    try:
        asked = int(raw_limit)
    except ValueError:
        raise BadParameter("limit", "must be an integer >= 0") from None
    if asked < 0:
        raise BadParameter("limit", "must be an integer >= 0")
    if asked == 0:
        return _json(b"[]")
    # The original took any limit; memory here is bounded, so a larger one is served as the
    # maximum, and the header says so (the body must stay the original's bare array).
    limit = capped(ctx.limits_of(tenant), min(asked, MAX_LIMIT))
    flt = Filter(services=(service,))
    parts = scope(flt, partition_count(ctx))
    cursor: Cursor | None = None
    items: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + timeout_s(ctx) / 2
    while True:  # a rare service may need more than one bounded round
        merge, _, _ = await run_search(ctx, flt, parts, True, limit - len(items), cursor, tenant=tenant)
        items += merge.out
        if len(items) >= limit or not merge.more() or time.monotonic() > deadline:
            break
        cursor = merge.cursor()
    items.sort(key=page_order)
    resp = _json(b"[" + b",".join(line for _, _, line in items) + b"]")
    if limit < asked:
        resp.headers["X-Zlog-Limit"] = str(limit)
    return resp


async def get_services(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    parts = list(range(partition_count(ctx)))
    found: list[dict[str, Any]] = []
    errors = []
    for p, r in zip(parts, await stats_all(ctx, parts, {"services": True}, tenant_of(request)), strict=True):
        if isinstance(r, ZlogError):
            errors.append({"partition": p, "error": r.code, "message": r.message})
            continue
        found += [{"name": s, "partition": p, "last_seen": ts} for s, ts in r.get("services", {}).items()]
    found.sort(key=lambda s: s["name"])
    return _json(orjson.dumps({"services": found, "errors": errors}))


_REPLICATION_KEYS = ("leader", "replicas", "isr", "leader_epoch", "high_watermark", "reassigning", "adding",
                     "removing", "draining")


def _storage_fields(r: dict[str, Any]) -> dict[str, Any]:
    """Raw (plain JSONL) vs stored bytes of a partition, from its STATS answer (sealed segments)."""
    raw, stored = r.get("raw_bytes", r["bytes"]), r.get("stored_bytes", r["bytes"])
    return {"raw_bytes": raw, "stored_bytes": stored, "index_bytes": r.get("index_bytes", 0),
            "sealed_segments": r.get("sealed_segments", 0),
            "compression_ratio": round(raw / stored, 2) if stored else None}


async def get_partitions(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tenant = tenant_of(request)
    n = partition_count(ctx)
    try:
        meta = await client_of(ctx).metadata(timeout=timeout_s(ctx))
    except ZlogError:
        meta = {}
    owners = meta.get("owners", [])
    # Replicated: the routers registered in etcd (as the router that answered sees them);
    # otherwise the configured ones.
    routers = meta.get("routers") or [{"id": i, "front": ep} for i, ep in enumerate(ctx.cfg.router.front)]
    out = []
    for p, r in zip(range(n), await stats_all(ctx, list(range(n)), {}, tenant), strict=True):
        owner = owners[p] if p < len(owners) else None
        if isinstance(r, ZlogError):
            out.append({"partition": p, "owner": owner, "error": r.code, "message": r.message})
            continue
        entry = {"partition": p, "owner": owner, "lowest_offset": r["lowest_offset"],
                 "highest_offset": r["next_offset"] - 1, "next_offset": r["next_offset"],
                 "bytes": r["bytes"], "segments": r["segments"], "max_timestamp": r["max_timestamp"],
                 # unreplicated (R = 1): the owner is the leader and the only replica
                 "leader": owner, "replicas": [] if owner is None else [owner],
                 "isr": [] if owner is None else [owner], "leader_epoch": 0, "high_watermark": r["next_offset"]}
        entry.update({k: r[k] for k in _REPLICATION_KEYS if k in r})
        entry.update(_storage_fields(r))
        out.append(entry)
    workers = _workers(meta, out)
    # under-replicated partitions and the moves under way, as zlog status says them
    replication = summarize([e for e in out if "error" not in e], {w["id"] for w in workers if w["up"]})
    return _json(orjson.dumps({"partitions": out, "workers": workers, "routers": routers,
                               "replication": replication}))


def _workers(meta: dict[str, Any], partitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every worker a router lists (up), and every other one a partition names as a replica (down)."""
    out = {int(w["worker"]): {"id": int(w["worker"]), "host": w.get("host") or None, "pid": w.get("pid"), "up": True}
           for w in meta.get("workers", [])}
    for e in partitions:
        for r in e.get("replicas", []):
            out.setdefault(int(r), {"id": int(r), "host": None, "pid": None, "up": False})
    return [out[w] for w in sorted(out)]


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query.get(name, "")
    if text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(name, "must be an integer") from None
    if not lo <= value <= hi:
        raise BadParameter(name, f"must be {lo}..{hi}")
    return value


async def get_records(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    tenant = tenant_of(request)
    n = partition_count(ctx)
    text = request.match_info["partition"]
    if not text.isdigit() or int(text) >= n:
        raise ZlogError("NOT_FOUND", f"no partition {text!r}; this cluster has 0..{n - 1}")
    p = int(text)
    offset = _int_param(request, "offset", 0, 0, 1 << 62)
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    check_limit(ctx.limits_of(tenant), limit)
    r = await ask(ctx, Command.FETCH, p, {"offset": offset, "max_records": limit, "max_bytes": FETCH_BYTES},
                   tenant)
    items = [(p, o, line) for o, line in r["records"]]
    meta = {"partition": p, "next_offset": r["next_offset"], "lowest_offset": r["lowest_offset"],
            "high_watermark": r["high_watermark"]}
    return _json(b'{"records":' + _records_json(items) + b"," + orjson.dumps(meta)[1:])


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/logs", get_logs)
    app.router.add_get("/v1/query", get_query)
    app.router.add_get("/v1/services", get_services)
    app.router.add_get("/v1/partitions", get_partitions)
    app.router.add_get("/v1/partitions/{partition}/records", get_records)
