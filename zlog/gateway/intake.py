"""The produce path every ingest API of the gateway shares: admit, read the body, store, report.

``POST /v1/logs``, the Loki push API, OTLP/HTTP and the Elasticsearch bulk API differ only in how
they decode a body into records and how they phrase the answer; everything between is here, once.

Invariants:
- Admission is bounded: a request reserves its body size (ten times the compressed size for
  gzip/deflate, the maximum when the length is unknown) against ``max_inflight_bytes`` and one of
  ``max_inflight_requests`` slots before its body is read; beyond either the answer is
  ``BACKPRESSURE`` (503 + Retry-After), never an unbounded queue.
- ``read_body`` returns the decompressed body or raises a named ``ZlogError``
  (``PAYLOAD_TOO_LARGE``, ``REQUEST_TIMEOUT``, ``UNSUPPORTED_MEDIA_TYPE``, ``INVALID_RECORD``).
- Every record is validated and encoded before anything is sent (``encode_body`` for /v1/logs,
  ``encode_label_groups`` for the other APIs, which names each refused record so an API can
  refuse the request whole or in part); ``store`` then sends with the request's
  ``Idempotency-Key`` when there is one, so a retry is stored once, and for the
  request's tenant (``tenant_of``): every ingest API stores into that tenant's partitions.
  It returns an ``Outcome`` saying, per group, what is stored, spooled or failed; it raises
  ``ZlogError`` only when nothing at all was sent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from zlog.client import AsyncProducer, Share
from zlog.gateway.admit import admit
from zlog.gateway.auth import tenant_of
from zlog.gateway.context import CONTEXT
from zlog.gateway.tenant import wire_tenant
from zlog.ingest import streams
from zlog.ingest.records import Group, RecordError
from zlog.ingest.streams import LabelGroup
from zlog.protocol.errors import Backpressure, OverLimit, ZlogError

SUPPORTED_ENCODINGS = frozenset(("", "identity", "gzip", "x-gzip", "deflate"))
# Storage NACKs that should reach the caller now instead of being retried until the deadline.
FAIL_FAST = frozenset(("NO_OWNER", "NOT_ENOUGH_REPLICAS"))
MAX_IDEMPOTENCY_KEY = 256
COMPRESSION_RESERVE = 10  # bytes reserved per compressed byte; the body limit still caps the real size
# When several partitions fail differently, report the one the caller must act on first.
_SEVERITY = {"WAL_FULL": 5, "DISK_FULL": 4, "STORAGE_ERROR": 3, "TIMEOUT": 2, "NO_OWNER": 1}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RateLimited(ZlogError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__("RATE_LIMITED", message)
        self.retry_after = retry_after


def retry_after_of(exc: ZlogError, default: int) -> int:
    return exc.retry_after if isinstance(exc, RateLimited | OverLimit) else default


@dataclass(slots=True)
class Outcome:
    """What became of a request's records, group by group (a group = one service's records).

    Sorted once, when made: every answer reads these lists, most more than once."""

    total: int
    groups: dict[str, Group]
    results: list[Share | ZlogError]
    stored: list[Share] = field(init=False)
    spooled: list[Share] = field(init=False)
    failed: list[tuple[str, ZlogError]] = field(init=False)
    stored_count: int = field(init=False)  # records that are safe: stored, or durably in the WAL

    def __post_init__(self) -> None:
        self.stored, self.spooled, self.failed = [], [], []
        count = 0
        for svc, r in zip(self.groups, self.results, strict=True):
            if isinstance(r, Share):
                (self.spooled if r.spooled else self.stored).append(r)
                count += r.count
            else:
                self.failed.append((svc, r))
        self.stored_count = count

    def worst(self) -> ZlogError | None:
        errors = [e for _, e in self.failed]
        return max(errors, key=lambda e: _SEVERITY.get(e.code, 0)) if errors else None


def encoding_of(request: web.Request) -> str:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in SUPPORTED_ENCODINGS:
        raise ZlogError("UNSUPPORTED_MEDIA_TYPE", f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    return encoding


async def admitted(request: web.Request, handle: Handler, on_error: Callable[[ZlogError, int], web.StreamResponse],
                   ) -> web.StreamResponse:
    """Run ``handle`` inside the in-flight budget; count the answer by status.

    ``on_error(exc, retry_after)`` phrases a refusal in the API's own dialect."""
    ctx = request.app[CONTEXT]
    m = ctx.metrics
    t0 = time.perf_counter()
    cfg = ctx.cfg.gateway
    try:
        encoding = encoding_of(request)
    except ZlogError as exc:
        m.answered(415)
        return on_error(exc, cfg.retry_after_s)
    length = request.content_length
    compressed = encoding not in ("", "identity")
    if length is None:
        reserve = cfg.max_body_bytes
    else:
        reserve = min(cfg.max_body_bytes, length * COMPRESSION_RESERVE if compressed else length)
    if ctx.inflight >= cfg.max_inflight_requests or ctx.inflight_bytes + reserve > cfg.max_inflight_bytes:
        m.answered(503)
        return on_error(Backpressure("too many ingest requests in progress"), cfg.retry_after_s)
    ctx.inflight += 1
    ctx.inflight_bytes += reserve
    try:
        response = await handle(request)
    finally:
        ctx.inflight -= 1
        ctx.inflight_bytes -= reserve
    m.answered(response.status)
    m.request_seconds.observe(time.perf_counter() - t0)
    return response


async def read_body(request: web.Request) -> bytes:
    """The whole body, decompressed (aiohttp inflates gzip/deflate), within the size limit."""
    ctx = request.app[CONTEXT]
    cfg = ctx.cfg.gateway
    try:
        # A body that never arrives (a lying Content-Length, a stalled client) must not hold an
        # in-flight slot forever: 512 such connections would otherwise refuse all ingest.
        # A body that has all arrived (most do, with their headers) is read without a timer;
        # asyncio.timeout is a timer, where wait_for would also wrap the read in a task.
        if request.content.is_eof():
            body = await request.read()
        else:
            async with asyncio.timeout(cfg.request_timeout_ms / 1000.0):
                body = await request.read()
    except TimeoutError:
        raise ZlogError("REQUEST_TIMEOUT", f"the body did not arrive within {cfg.request_timeout_ms} ms") from None
    except web.HTTPRequestEntityTooLarge:
        raise ZlogError("PAYLOAD_TOO_LARGE", f"request body exceeds {cfg.max_body_bytes} bytes") from None
    except web.HTTPException:
        raise
    except Exception as exc:  # a broken gzip stream or a body cut short
        raise ZlogError("INVALID_RECORD", f"could not read the body: {type(exc).__name__}: {exc}") from None
    ctx.metrics.bytes.inc(len(body))
    return body


def received_now() -> int:
    return int(time.time() * 1000)


def encode_label_groups(request: web.Request, batches: list[LabelGroup], *, received_at: int,
                        ) -> tuple[dict[str, Group], list[RecordError]]:
    """Records that share label sets (a Loki stream, an OTLP resource, a bulk index), encoded in
    one pass; the refused ones with why (``zlog.ingest.streams``)."""
    ctx = request.app[CONTEXT]
    groups, refused = streams.encode_groups(batches, ctx.limits, received_at=received_at,
                                            client_ip=ctx.client_ip(request), node_id=ctx.cfg.cluster.node_id)
    if refused:
        ctx.metrics.errors.labels(kind="INVALID_RECORD").inc(len(refused))
    return groups, refused


async def producer_for(request: web.Request) -> AsyncProducer:
    """The producer of the request's ``acks`` (``?acks=all|leader``, default ``gateway.acks``): the
    process's own, or a second one started on first use (batches of different acks never share
    a PRODUCE message, so one request's guarantee never weakens another's)."""
    ctx = request.app[CONTEXT]
    acks = request.query.get("acks", ctx.cfg.gateway.acks) if request.query_string else ctx.cfg.gateway.acks
    if acks not in ("all", "leader"):
        raise ZlogError("BAD_PARAMETER", "acks must be all or leader")
    if acks == ctx.cfg.gateway.acks:
        return ctx.producer
    others: dict[str, AsyncProducer] = ctx.extras.setdefault("producers", {})
    other = others.get(acks)
    if other is None:
        from zlog.gateway.app import new_producer

        other = new_producer(ctx.cfg, acks)
        await other.start(timeout=cfg_timeout(ctx))
        other.spool = ctx.extras.get("spool_hook")
        kept = others.setdefault(acks, other)
        if kept is not other:  # another request started one meanwhile
            await other.close(timeout=1.0)
        return kept
    return other


def cfg_timeout(ctx: Any) -> float:
    return float(ctx.cfg.gateway.request_timeout_ms) / 1000.0


async def store(request: web.Request, groups: dict[str, Group], total: int, *, source: str) -> Outcome:
    """Store encoded groups (``total`` records) for the request's tenant; raises ``ZlogError`` when
    nothing was sent."""
    ctx = request.app[CONTEXT]
    cfg = ctx.cfg.gateway
    name = tenant_of(request)
    tenant = wire_tenant(request, name)
    if ctx.limiter is not None:
        wait = ctx.limiter.admit(ctx.client_ip(request), total, time.monotonic())
        if wait > 0:
            ctx.metrics.errors.labels(kind="RATE_LIMITED").inc()
            raise RateLimited(f"over {cfg.rate_limit_per_client} records/s for this client", max(1, math.ceil(wait)))
    timeout = cfg.request_timeout_ms / 1000.0
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ZlogError("BAD_PARAMETER", f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters")
    await admit(ctx, name, groups, total)  # the tenant's shared rate limits (429 before anything is stored)
    producer = await producer_for(request)
    try:
        if key is None:
            results = await producer.send_groups_settled(groups, timeout=timeout, fail_fast=FAIL_FAST,
                                                         tenant=tenant)
        else:
            results = await producer.send_keyed(groups, key.encode(), timeout=timeout, fail_fast=FAIL_FAST,
                                                tenant=tenant)
    except ZlogError as exc:  # refused before anything was sent (producer queue full, shutting down)
        ctx.metrics.errors.labels(kind=exc.code).inc()
        raise
    outcome = Outcome(total, groups, results)
    stored = outcome.stored_count
    ctx.metrics.records.inc(stored)
    if outcome.spooled or outcome.failed:
        spooled = sum(s.count for s in outcome.spooled)
        if spooled:
            ctx.metrics.spooled.inc(spooled)
        for _, e in outcome.failed:
            ctx.metrics.errors.labels(kind=e.code).inc()
    ctx.metrics.stored_from(source, stored)
    return outcome
