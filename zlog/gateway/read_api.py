"""The gateway's read API: search, fetch, partitions, services, live tail (SSE) and the log viewer.

Endpoints (all GET): ``/v1/logs``, ``/v1/query`` (the original's), ``/v1/services``,
``/v1/partitions``, ``/v1/partitions/{p}/records``, ``/v1/tail`` (text/event-stream), ``/`` and
``/ui/{file}``.

Invariants:
- A read touches only the partitions its filter can match: a service filter reaches only that
  service's partition(s); every request to a worker is one bounded SEARCH/FETCH/STATS.
- ``/v1/logs`` merges partitions with ``PageMerge``: a page never repeats or skips a record
  relative to the previous page's cursor. A search is bounded by a wall-clock deadline; when it
  runs out the page is returned short, with a cursor and ``more: true``.
- Records leave as stored, spliced with ``partition`` and ``offset`` (never re-encoded).
- Bad parameters answer 400 naming the parameter; storage failures keep their own status
  (503 no owner, 504 timeout), never 400.
- Live tail: one ``TailHub`` per gateway process polls each watched partition (FETCH from its
  head, every ``POLL_S``) and fans records out to subscribers through bounded queues. A
  subscriber that falls behind (a bounded queue of batches and bytes) is closed after what it
  already has, and resumes through
  ``Last-Event-ID`` (each event's id is a forward cursor) with no loss and no repetition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from zlog.client import AsyncClient
from zlog.errors import ZlogError
from zlog.gateway.context import CONTEXT, GatewayContext
from zlog.hashing import partition_for
from zlog.query import (
    MAX_LIMIT,
    BadParameter,
    Cursor,
    Filter,
    PageMerge,
    Predicate,
    compile_filter,
    decode_cursor,
    parse_limit,
    parse_params,
    timestamp_of,
    with_position,
)
from zlog.wire import Command

log = logging.getLogger("zlog.gateway.read")

UI_DIR = Path(__file__).resolve().parent / "ui"
UI_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml",
            ".png": "image/png", ".ico": "image/x-icon"}
SEARCH_DEADLINE_S = 2.0
POLL_S = 0.25
FETCH_RECORDS = 10_000
FETCH_BYTES = 4 * 1024 * 1024
MAX_SUBSCRIBERS = 256
QUEUE_BATCHES = 256
QUEUE_BYTES = 32 * 1024 * 1024  # per subscriber; batches are shared, so this bounds what it pins
KEEPALIVE_S = 10.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json")


def _client(ctx: GatewayContext) -> AsyncClient:
    client = ctx.producer.client
    if client is None:
        raise ZlogError("SHUTTING_DOWN", "the gateway has no router connection")
    return client


def _partition_count(ctx: GatewayContext) -> int:
    return ctx.producer.partitions or ctx.cfg.cluster.partitions


def _timeout(ctx: GatewayContext) -> float:
    return ctx.cfg.gateway.request_timeout_ms / 1000.0


def scope(flt: Filter, partitions: int) -> list[int]:
    """The partitions a filter can match: a service filter names them, otherwise all."""
    if flt.services:
        return sorted({partition_for(s, partitions) for s in flt.services})
    return list(range(partitions))


async def _ask(ctx: GatewayContext, command: Command, partition: int, body: dict[str, Any]) -> dict[str, Any]:
    msg = await _client(ctx).request(command, partition=partition, body=body, timeout=_timeout(ctx))
    return msg.unpack()


async def run_search(ctx: GatewayContext, flt: Filter, parts: list[int], backward: bool, limit: int,
                     cursor: Cursor | None) -> tuple[PageMerge, int, int]:
    """Fill one page; returns the merge (records, cursor) and the records and bytes scanned."""
    merge = PageMerge(parts, backward, limit, cursor, flt.digest())
    fbody = flt.to_body()
    deadline = time.monotonic() + min(SEARCH_DEADLINE_S, _timeout(ctx))
    scanned = scanned_bytes = 0
    while not merge.run():
        if merge.out and time.monotonic() > deadline:
            break
        wanted = merge.wanted()
        remaining = limit - len(merge.out)
        bodies = []
        for p, start in wanted.items():
            body: dict[str, Any] = {"filter": fbody, "backward": backward, "limit": remaining}
            if start is not None:
                body["start"] = start
            bodies.append(_ask(ctx, Command.SEARCH, p, body))
        replies = await asyncio.gather(*bodies)
        for p, r in zip(wanted, replies, strict=True):
            merge.feed(p, [(o, line) for o, line in r["records"]], r["next"], r["high_watermark"])
            scanned += r.get("scanned_records", 0)
            scanned_bytes += r.get("scanned_bytes", 0)
        if time.monotonic() > deadline:
            merge.run()
            break
    return merge, scanned, scanned_bytes


def _order_key(item: tuple[int, int, bytes]) -> tuple[int, int, int]:
    return timestamp_of(item[2]), item[0], item[1]


def _records_json(items: list[tuple[int, int, bytes]]) -> bytes:
    return b"[" + b",".join(with_position(line, p, o) for p, o, line in items) + b"]"


async def get_logs(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    t0 = time.perf_counter()
    q = parse_params(request.query.items(), _now_ms())
    n = _partition_count(ctx)
    parts = scope(q.filter, n)
    if q.cursor is not None and any(p >= n for p in q.cursor.positions):
        raise BadParameter("cursor", "names a partition this cluster does not have")
    merge, scanned, scanned_bytes = await run_search(ctx, q.filter, parts, q.backward, q.limit, q.cursor)
    # Which records make the page is the merge's business (the cursor depends on it); within the
    # page, strict time order reads better, since batches interleave services inside a partition.
    merge.out.sort(key=_order_key, reverse=q.backward)
    more = merge.more()
    cursor = merge.cursor().encode() if more or not q.backward else None
    tail = merge.tail_cursor()
    meta = {
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
    return _json(b'{"records":' + _records_json(merge.out) + b"," + orjson.dumps(meta)[1:])


async def get_query(request: web.Request) -> web.Response:
    """The original's ``/v1/query?service=S&limit=M``: S's last M records, newest last."""
    ctx = request.app[CONTEXT]
    service = request.query.get("service", "")
    if not service:
        raise BadParameter("service", "required")
    raw_limit = request.query.get("limit")
    if raw_limit is None:
        raise BadParameter("limit", "required")
    if raw_limit.strip() == "0":
        return _json(b"[]")
    limit = parse_limit(raw_limit)
    flt = Filter(services=(service,))
    parts = scope(flt, _partition_count(ctx))
    cursor: Cursor | None = None
    items: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + _timeout(ctx) / 2
    while True:  # a rare service may need more than one bounded round
        merge, _, _ = await run_search(ctx, flt, parts, True, limit - len(items), cursor)
        items += merge.out
        if len(items) >= limit or not merge.more() or time.monotonic() > deadline:
            break
        cursor = merge.cursor()
    items.sort(key=_order_key)
    return _json(b"[" + b",".join(line for _, _, line in items) + b"]")


async def _stats_all(ctx: GatewayContext, parts: list[int], body: dict[str, Any]) -> list[dict[str, Any] | ZlogError]:
    async def one(p: int) -> dict[str, Any] | ZlogError:
        try:
            return await _ask(ctx, Command.STATS, p, body)
        except ZlogError as exc:
            return exc

    return list(await asyncio.gather(*(one(p) for p in parts)))


async def get_services(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    parts = list(range(_partition_count(ctx)))
    found: list[dict[str, Any]] = []
    errors = []
    for p, r in zip(parts, await _stats_all(ctx, parts, {"services": True}), strict=True):
        if isinstance(r, ZlogError):
            errors.append({"partition": p, "error": r.code, "message": r.message})
            continue
        found += [{"name": s, "partition": p, "last_seen": ts} for s, ts in r.get("services", {}).items()]
    found.sort(key=lambda s: s["name"])
    return _json(orjson.dumps({"services": found, "errors": errors}))


async def get_partitions(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    n = _partition_count(ctx)
    try:
        owners = (await _client(ctx).metadata(timeout=_timeout(ctx))).get("owners", [])
    except ZlogError:
        owners = []
    out = []
    for p, r in zip(range(n), await _stats_all(ctx, list(range(n)), {}), strict=True):
        owner = owners[p] if p < len(owners) else None
        if isinstance(r, ZlogError):
            out.append({"partition": p, "owner": owner, "error": r.code, "message": r.message})
            continue
        out.append({"partition": p, "owner": owner, "lowest_offset": r["lowest_offset"],
                    "highest_offset": r["next_offset"] - 1, "next_offset": r["next_offset"],
                    "bytes": r["bytes"], "segments": r["segments"], "max_timestamp": r["max_timestamp"]})
    return _json(orjson.dumps({"partitions": out}))


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
    n = _partition_count(ctx)
    text = request.match_info["partition"]
    if not text.isdigit() or int(text) >= n:
        raise ZlogError("NOT_FOUND", f"no partition {text!r}; this cluster has 0..{n - 1}")
    p = int(text)
    offset = _int_param(request, "offset", 0, 0, 1 << 62)
    limit = _int_param(request, "limit", 100, 1, MAX_LIMIT)
    r = await _ask(ctx, Command.FETCH, p, {"offset": offset, "max_records": limit, "max_bytes": FETCH_BYTES})
    items = [(p, o, line) for o, line in r["records"]]
    meta = {"partition": p, "next_offset": r["next_offset"], "lowest_offset": r["lowest_offset"],
            "high_watermark": r["high_watermark"]}
    return _json(b'{"records":' + _records_json(items) + b"," + orjson.dumps(meta)[1:])


# -- live tail ----------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class Subscriber:
    partitions: frozenset[int]
    queue: asyncio.Queue[tuple[int, list[tuple[int, bytes]], int] | None]
    overflowed: bool = False
    queued_bytes: int = 0

    def offer(self, item: tuple[int, list[tuple[int, bytes]], int] | None) -> None:
        if self.overflowed:
            return
        if item is not None and self.queued_bytes + item[2] > QUEUE_BYTES and not self.queue.empty():
            self.overflowed = True
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True
            return
        if item is not None:
            self.queued_bytes += item[2]


@dataclass(slots=True)
class TailHub:
    """One poller per gateway process: the head of every watched partition, fanned out."""

    ctx: GatewayContext
    heads: dict[int, int] = field(default_factory=dict)
    subscribers: set[Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    closed: bool = False

    async def subscribe(self, parts: list[int]) -> tuple[Subscriber, dict[int, int]]:
        if self.closed:
            raise ZlogError("SHUTTING_DOWN", "the gateway is stopping")
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            raise ZlogError("BACKPRESSURE", f"at most {MAX_SUBSCRIBERS} live tails per gateway process")
        missing = [p for p in parts if p not in self.heads]
        stats = await asyncio.gather(*(_ask(self.ctx, Command.STATS, p, {}) for p in missing))
        for p, st in zip(missing, stats, strict=True):
            self.heads.setdefault(p, st["next_offset"])
        # No await from here on: the snapshot and the registration are one step for the poller.
        sub = Subscriber(frozenset(parts), asyncio.Queue(QUEUE_BATCHES))
        self.subscribers.add(sub)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        return sub, {p: self.heads[p] for p in parts}

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def close(self) -> None:
        self.closed = True
        for sub in self.subscribers:
            sub.offer(None)

    async def _run(self) -> None:
        while self.subscribers and not self.closed:
            watched = set().union(*(s.partitions for s in self.subscribers))
            for p in list(self.heads):
                if p not in watched:
                    del self.heads[p]  # re-read from STATS when someone watches it again
            try:
                await asyncio.gather(*(self._poll(p) for p in watched if p in self.heads))
            except Exception:  # a poller that dies would leave every tail silent
                log.exception("tail poll failed")
            await asyncio.sleep(POLL_S)
        self.heads.clear()

    async def _poll(self, p: int) -> None:
        for _ in range(8):  # catch up quickly after a burst, but let other partitions have turns
            head = self.heads.get(p)
            if head is None:
                return
            try:
                r = await _ask(self.ctx, Command.FETCH, p,
                               {"offset": head, "max_records": FETCH_RECORDS, "max_bytes": FETCH_BYTES})
            except ZlogError as exc:
                log.debug("tail poll failed", extra={"partition": p, "error": exc.code})
                return
            records = [(o, line) for o, line in r["records"]]
            if not records or self.heads.get(p) != head:
                return
            self.heads[p] = r["next_offset"]
            size = sum(len(line) for _, line in records)
            for sub in self.subscribers:
                if p in sub.partitions:
                    sub.offer((p, records, size))
            if r["next_offset"] >= r["high_watermark"]:
                return


HUB = web.AppKey("zlog_tail_hub", TailHub)


def _event(p: int, o: int, line: bytes, positions: dict[int, int], digest: str) -> bytes:
    cid = Cursor(False, positions, digest).encode()
    return b"id: " + cid.encode() + b"\ndata: " + with_position(line, p, o) + b"\n\n"


async def get_tail(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    hub = request.app[HUB]
    pairs = [(k, v) for k, v in request.query.items() if k not in ("cursor", "direction", "limit")]
    flt = parse_params(pairs, _now_ms()).filter
    digest = flt.digest()
    resume = request.headers.get("Last-Event-ID") or request.query.get("cursor") or ""
    cursor = decode_cursor(resume, "Last-Event-ID" if request.headers.get("Last-Event-ID") else "cursor") if resume else None
    if cursor is not None and (cursor.backward or cursor.filter_digest != digest):
        raise BadParameter("cursor", "is not a tail cursor for these filters")
    parts = scope(flt, _partition_count(ctx))
    pred = compile_filter(flt)
    sub, heads = await hub.subscribe(parts)
    try:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        pos = {p: (cursor.positions.get(p, heads[p]) if cursor is not None else heads[p]) for p in parts}
        try:
            await resp.write(b"retry: 1000\n: tailing partitions " + orjson.dumps(parts) + b"\n\n")
            await _catch_up(ctx, resp, flt, parts, pos, heads, digest)
            await _live(resp, sub, pred, pos, digest)
        except ZlogError as exc:
            # Headers are sent: say it as an event; the client reconnects with its last id.
            await resp.write(b"event: error\ndata: " + orjson.dumps(exc.to_json()) + b"\n\n")
        except ConnectionResetError:
            pass  # the client left
        return resp
    finally:
        hub.unsubscribe(sub)


async def _catch_up(ctx: GatewayContext, resp: web.StreamResponse, flt: Filter, parts: list[int],
                    pos: dict[int, int], heads: dict[int, int], digest: str) -> None:
    """Records between a resumed cursor and the heads at subscription, via forward SEARCH."""
    fbody = flt.to_body()
    for p in parts:
        while pos[p] < heads[p]:
            r = await _ask(ctx, Command.SEARCH, p, {"filter": fbody, "backward": False, "start": pos[p],
                                                    "limit": 500})
            chunks = []
            for o, line in r["records"]:
                if o >= heads[p]:
                    break
                pos[p] = o + 1
                chunks.append(_event(p, o, line, pos, digest))
            if chunks:
                await resp.write(b"".join(chunks))
            nxt = r["next"]
            pos[p] = heads[p] if nxt is None else max(pos[p], min(nxt, heads[p]))


async def _live(resp: web.StreamResponse, sub: Subscriber, pred: Predicate | None, pos: dict[int, int],
                digest: str) -> None:
    while True:
        try:
            item = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
        except TimeoutError:
            await resp.write(b": keepalive\n\n")
            continue
        if item is None:
            return
        p, records, size = item
        sub.queued_bytes -= size
        chunks = []
        for o, line in records:
            if o < pos[p]:
                continue
            pos[p] = o + 1
            if pred is None or pred(line):
                chunks.append(_event(p, o, line, pos, digest))
        if chunks:
            await resp.write(b"".join(chunks))
        if sub.overflowed and sub.queue.empty():
            return  # behind by more than the queue holds: the client resumes from its last id


# -- the viewer ---------------------------------------------------------------------------


async def get_index(request: web.Request) -> web.StreamResponse:
    return _static("index.html")


async def get_ui(request: web.Request) -> web.StreamResponse:
    return _static(request.match_info["name"])


def _static(name: str) -> web.StreamResponse:
    path = UI_DIR / name
    kind = UI_TYPES.get(path.suffix)
    if "/" in name or name.startswith(".") or kind is None or not path.is_file():
        raise ZlogError("NOT_FOUND", f"no such file {name!r}")
    return web.Response(body=path.read_bytes(), content_type=kind, charset="utf-8" if kind.startswith("text") else None,
                        headers={"Cache-Control": "no-cache"})


def setup(app: web.Application) -> None:
    ctx = app[CONTEXT]
    hub = TailHub(ctx)
    app[HUB] = hub
    app.router.add_get("/v1/logs", get_logs)
    app.router.add_get("/v1/query", get_query)
    app.router.add_get("/v1/services", get_services)
    app.router.add_get("/v1/partitions", get_partitions)
    app.router.add_get("/v1/partitions/{partition}/records", get_records)
    app.router.add_get("/v1/tail", get_tail)
    app.router.add_get("/", get_index)
    app.router.add_get("/ui/{name}", get_ui)

    async def stop_tails(app: web.Application) -> None:
        hub.close()
        if hub.task is not None:
            hub.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await hub.task

    app.on_shutdown.append(stop_tails)
