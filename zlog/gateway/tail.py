"""The gateway's live tail: ``GET /v1/tail`` as Server-Sent Events, fed by one poller per process.

Invariants:
- One ``TailHub`` per gateway process polls each watched partition (FETCH from its head, every
  ``POLL_S``) and fans records out to subscribers through bounded queues; a partition nobody
  watches any more is dropped from the poll and re-read from STATS when watched again.
- A subscriber that falls behind (a bounded queue of batches and bytes) is closed after what it
  already has, and resumes through ``Last-Event-ID`` (each event's id is a forward cursor) with no
  loss and no repetition: records between the cursor and the heads at subscription are sent first
  (forward SEARCH), then live ones.
- At most ``MAX_SUBSCRIBERS`` tails per process (then 503 BACKPRESSURE).
- Once the SSE headers are sent, a storage failure becomes an ``error`` event and the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from zlog.gateway.auth import tenant_of
from zlog.gateway.context import CONTEXT, GatewayContext
from zlog.gateway.partitions import FETCH_BYTES, ask, now_ms, partition_count, scope
from zlog.gateway.tenant import check_cursor
from zlog.protocol.errors import BadParameter, ZlogError
from zlog.protocol.wire import Command
from zlog.read.paging import Cursor, decode_cursor, with_position
from zlog.read.params import parse_params
from zlog.read.query import Filter, Predicate, compile_filter

log = logging.getLogger("zlog.gateway.read")

POLL_S = 0.25
FETCH_RECORDS = 10_000
MAX_SUBSCRIBERS = 256
QUEUE_BATCHES = 256
QUEUE_BYTES = 32 * 1024 * 1024  # per subscriber; batches are shared, so this bounds what it pins
KEEPALIVE_S = 10.0


@dataclass(eq=False, slots=True)
class Subscriber:
    partitions: frozenset[tuple[str, int]]  # (tenant, partition): a tail sees its tenant only
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
    heads: dict[tuple[str, int], int] = field(default_factory=dict)
    subscribers: set[Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    closed: bool = False

    async def subscribe(self, parts: list[int], tenant: str) -> tuple[Subscriber, dict[int, int]]:
        if self.closed:
            raise ZlogError("SHUTTING_DOWN", "the gateway is stopping")
        if len(self.subscribers) >= MAX_SUBSCRIBERS:
            raise ZlogError("BACKPRESSURE", f"at most {MAX_SUBSCRIBERS} live tails per gateway process")
        keys = [(tenant, p) for p in parts]
        missing = [k for k in keys if k not in self.heads]
        stats = await asyncio.gather(*(ask(self.ctx, Command.STATS, p, {}, t) for t, p in missing))
        for k, st in zip(missing, stats, strict=True):
            self.heads.setdefault(k, st["next_offset"])
        # No await from here on: the snapshot and the registration are one step for the poller.
        sub = Subscriber(frozenset(keys), asyncio.Queue(QUEUE_BATCHES))
        self.subscribers.add(sub)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())
        return sub, {p: self.heads[(tenant, p)] for p in parts}

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

    async def _poll(self, key: tuple[str, int]) -> None:
        tenant, p = key
        for _ in range(8):  # catch up quickly after a burst, but let other partitions have turns
            head = self.heads.get(key)
            if head is None:
                return
            try:
                r = await ask(self.ctx, Command.FETCH, p,
                               {"offset": head, "max_records": FETCH_RECORDS, "max_bytes": FETCH_BYTES}, tenant)
            except ZlogError as exc:
                log.debug("tail poll failed", extra={"partition": p, "error": exc.code})
                return
            records = [(o, line) for o, line in r["records"]]
            if not records or self.heads.get(key) != head:
                return
            self.heads[key] = r["next_offset"]
            size = sum(len(line) for _, line in records)
            for sub in self.subscribers:
                if key in sub.partitions:
                    sub.offer((p, records, size))
            if r["next_offset"] >= r["high_watermark"]:
                return


HUB = web.AppKey("zlog_tail_hub", TailHub)


def _event(p: int, o: int, line: bytes, positions: dict[int, int], digest: str, tenant: str) -> bytes:
    cid = Cursor(False, positions, digest, tenant).encode()
    return b"id: " + cid.encode() + b"\ndata: " + with_position(line, p, o) + b"\n\n"


async def get_tail(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    hub = request.app[HUB]
    tenant = tenant_of(request)
    pairs = [(k, v) for k, v in request.query.items() if k not in ("cursor", "direction", "limit")]
    flt = parse_params(pairs, now_ms()).filter
    digest = flt.digest()
    resume = request.headers.get("Last-Event-ID") or request.query.get("cursor") or ""
    cursor = decode_cursor(resume, "Last-Event-ID" if request.headers.get("Last-Event-ID") else "cursor") if resume else None
    check_cursor(request, tenant, cursor)
    if cursor is not None and (cursor.backward or cursor.filter_digest != digest):
        raise BadParameter("cursor", "is not a tail cursor for these filters")
    parts = scope(flt, partition_count(ctx))
    pred = compile_filter(flt)
    sub, heads = await hub.subscribe(parts, tenant)
    try:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        pos = {p: (cursor.positions.get(p, heads[p]) if cursor is not None else heads[p]) for p in parts}
        try:
            await resp.write(b"retry: 1000\n: tailing partitions " + orjson.dumps(parts) + b"\n\n")
            await _catch_up(ctx, resp, flt, parts, pos, heads, digest, tenant)
            await _live(resp, sub, pred, pos, digest, tenant)
        except ZlogError as exc:
            # Headers are sent: say it as an event; the client reconnects with its last id.
            await resp.write(b"event: error\ndata: " + orjson.dumps(exc.to_json()) + b"\n\n")
        except ConnectionResetError:
            pass  # the client left
        return resp
    finally:
        hub.unsubscribe(sub)


async def _catch_up(ctx: GatewayContext, resp: web.StreamResponse, flt: Filter, parts: list[int],
                    pos: dict[int, int], heads: dict[int, int], digest: str, tenant: str) -> None:
    """Records between a resumed cursor and the heads at subscription, via forward SEARCH."""
    fbody = flt.to_body()
    for p in parts:
        while pos[p] < heads[p]:
            r = await ask(ctx, Command.SEARCH, p, {"filter": fbody, "backward": False, "start": pos[p],
                                                    "limit": 500}, tenant)
            chunks = []
            for o, line in r["records"]:
                if o >= heads[p]:
                    break
                pos[p] = o + 1
                chunks.append(_event(p, o, line, pos, digest, tenant))
            if chunks:
                await resp.write(b"".join(chunks))
            nxt = r["next"]
            pos[p] = heads[p] if nxt is None else max(pos[p], min(nxt, heads[p]))


async def _live(resp: web.StreamResponse, sub: Subscriber, pred: Predicate | None, pos: dict[int, int],
                digest: str, tenant: str) -> None:
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
                chunks.append(_event(p, o, line, pos, digest, tenant))
        if chunks:
            await resp.write(b"".join(chunks))
        if sub.overflowed and sub.queue.empty():
            return  # behind by more than the queue holds: the client resumes from its last id


def setup(app: web.Application) -> None:
    hub = TailHub(app[CONTEXT])
    app[HUB] = hub
    app.router.add_get("/v1/tail", get_tail)

    async def stop_tails(app: web.Application) -> None:
        hub.close()
        if hub.task is not None:
            hub.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await hub.task

    app.on_shutdown.append(stop_tails)
