"""``POST /v1/logs``: the original project's ingest API, answered only when the records are durable.

Invariants:
- All or nothing per request at validation: a request with any invalid record gets 400 naming
  the records, and nothing of it is sent to storage.
- 200 means every record is stored durably (per the fsync policy) and the body says where.
  Anything less is a 5xx naming what was stored and what was not; never a 400 for our fault.
- Bounded: body bytes (after decompression too), records per request, and requests in flight
  (beyond which the answer is 503 + Retry-After instead of queueing without limit).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import orjson
from aiohttp import web

from zlog.client import Share
from zlog.gateway.context import CONTEXT, error_response
from zlog.ingest.body import encode_body
from zlog.protocol.errors import Backpressure, ZlogError

SUPPORTED_ENCODINGS = frozenset(("", "identity", "gzip", "x-gzip", "deflate"))
# Storage NACKs that should reach the caller now instead of being retried until the deadline.
FAIL_FAST = frozenset(("NO_OWNER",))
# When several partitions fail differently, report the one the caller must act on first.
MAX_IDEMPOTENCY_KEY = 256
COMPRESSION_RESERVE = 10  # bytes reserved per compressed byte; the body limit still caps the real size
_SEVERITY = {"WAL_FULL": 5, "DISK_FULL": 4, "STORAGE_ERROR": 3, "TIMEOUT": 2, "NO_OWNER": 1}


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def summarize(shares: list[Share]) -> list[dict[str, int]]:
    """Per partition: the offset ranges written, merged where contiguous."""
    by_part: dict[int, list[list[int]]] = {}
    for sh in sorted(shares, key=lambda s: (s.partition, s.offset)):
        runs = by_part.setdefault(sh.partition, [])
        if runs and sh.offset >= 0 and runs[-1][0] >= 0 and runs[-1][0] + runs[-1][1] == sh.offset:
            runs[-1][1] += sh.count
        else:
            runs.append([sh.offset, sh.count])
    return [{"partition": p, "offset": o, "count": n} for p, runs in sorted(by_part.items()) for o, n in runs]


async def post_logs(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    m = ctx.metrics
    t0 = time.perf_counter()
    cfg = ctx.cfg.gateway
    # Memory is bounded by what is admitted: a request reserves its body size up front (ten times
    # the compressed size for gzip/deflate, the maximum when the length is unknown); parsed
    # records cost a small multiple of that, so the byte budget bounds the process.
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in SUPPORTED_ENCODINGS:
        m.requests.labels(status="415").inc()
        return error_response(ZlogError("UNSUPPORTED_MEDIA_TYPE", f"unsupported Content-Encoding {encoding!r}; use gzip or deflate"))
    length = request.content_length
    compressed = encoding not in ("", "identity")
    if length is None:
        reserve = cfg.max_body_bytes
    else:
        reserve = min(cfg.max_body_bytes, length * COMPRESSION_RESERVE if compressed else length)
    if ctx.inflight >= cfg.max_inflight_requests or ctx.inflight_bytes + reserve > cfg.max_inflight_bytes:
        m.requests.labels(status="503").inc()
        return error_response(Backpressure("too many ingest requests in progress"), retry_after=cfg.retry_after_s)
    ctx.inflight += 1
    ctx.inflight_bytes += reserve
    try:
        response = await _ingest(request)
    finally:
        ctx.inflight -= 1
        ctx.inflight_bytes -= reserve
    m.requests.labels(status=str(response.status)).inc()
    m.request_seconds.observe(time.perf_counter() - t0)
    return response


async def _ingest(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    cfg = ctx.cfg.gateway
    content_type = request.headers.get("Content-Type", "")
    try:
        # A body that never arrives (a lying Content-Length, a stalled client) must not hold an
        # in-flight slot forever: 512 such connections would otherwise refuse all ingest.
        body = await asyncio.wait_for(request.read(), cfg.request_timeout_ms / 1000.0)
    except TimeoutError:
        return error_response(ZlogError("REQUEST_TIMEOUT", f"the body did not arrive within {cfg.request_timeout_ms} ms"))
    except web.HTTPRequestEntityTooLarge:
        return error_response(ZlogError("PAYLOAD_TOO_LARGE", f"request body exceeds {cfg.max_body_bytes} bytes"))
    except web.HTTPException:
        raise
    except Exception as exc:  # a broken gzip stream or a body cut short
        return error_response(ZlogError("INVALID_RECORD", f"could not read the body: {type(exc).__name__}: {exc}"))
    ctx.metrics.bytes.inc(len(body))
    received_at = int(time.time() * 1000)
    try:
        total, groups = encode_body(body, content_type, ctx.limits, received_at=received_at,
                                    client_ip=ctx.client_ip(request), node_id=ctx.cfg.cluster.node_id)
    except ZlogError as exc:
        ctx.metrics.errors.labels(kind=exc.code).inc()
        return error_response(exc)
    if ctx.limiter is not None:
        wait = ctx.limiter.admit(ctx.client_ip(request), total, time.monotonic())
        if wait > 0:
            ctx.metrics.errors.labels(kind="RATE_LIMITED").inc()
            return error_response(
                ZlogError("RATE_LIMITED", f"over {cfg.rate_limit_per_client} records/s for this client"),
                retry_after=max(1, math.ceil(wait)),
            )
    timeout = cfg.request_timeout_ms / 1000.0
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        return error_response(ZlogError("BAD_PARAMETER", f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters"))
    try:
        if key is None:
            results = await ctx.producer.send_groups_settled(groups, timeout=timeout, fail_fast=FAIL_FAST)
        else:
            results = await ctx.producer.send_keyed(groups, key.encode(), timeout=timeout, fail_fast=FAIL_FAST)
    except ZlogError as exc:  # refused before anything was sent (producer queue full, shutting down)
        ctx.metrics.errors.labels(kind=exc.code).inc()
        return error_response(exc, retry_after=cfg.retry_after_s)
    stored = [r for r in results if isinstance(r, Share) and not r.spooled]
    spooled = [r for r in results if isinstance(r, Share) and r.spooled]
    failed = [(svc, r) for svc, r in zip(groups, results, strict=True) if isinstance(r, ZlogError)]
    if not failed:
        ctx.metrics.records.inc(total)
        if not spooled:
            return _json({"received": total, "stored": summarize(stored)})
        spooled_count = sum(s.count for s in spooled)
        ctx.metrics.spooled.inc(spooled_count)
        return _json(
            {
                "received": total,
                "stored_records": total - spooled_count,
                "spooled_records": spooled_count,
                "stored": summarize(stored),
                "spooled": [{"partition": s.partition, "count": s.count} for s in spooled],
                "message": "some partitions are unavailable: their records are in the gateway's "
                "write-ahead log and will be stored when their owners are back",
            },
            status=202,
        )
    stored_count = sum(s.count for s in stored) + sum(s.count for s in spooled)
    ctx.metrics.records.inc(stored_count)
    worst = max((e for _, e in failed), key=lambda e: _SEVERITY.get(e.code, 0))
    for _, e in failed:
        ctx.metrics.errors.labels(kind=e.code).inc()
    by_part: dict[int, dict[str, Any]] = {}
    for svc, e in failed:
        p = e.partition if e.partition is not None else -1
        entry = by_part.setdefault(p, {"partition": p, "error": e.code, "message": e.message, "count": 0})
        entry["count"] += len(groups[svc].lines)
    extra = {
        "received": 0,
        "stored_records": stored_count,
        "failed_records": total - stored_count,
        "stored": summarize(stored),
        "failed": list(by_part.values()),
    }
    if spooled:
        extra["spooled"] = [{"partition": s.partition, "count": s.count} for s in spooled]
    if stored_count:
        extra["message"] = (
            f"{total - stored_count} of {total} records were not stored ({worst.message}); "
            "the others are stored: retry with the same Idempotency-Key to store the rest once"
        )
    return error_response(worst, retry_after=cfg.retry_after_s, extra=extra)
