"""``POST /v1/logs``: the original project's ingest API, answered only when the records are durable.

Invariants:
- All or nothing per request at validation: a request with any invalid record gets 400 naming
  the records, and nothing of it is sent to storage.
- 200 means every record is stored durably (per the fsync policy) and the body says where.
  Anything less is a 5xx naming what was stored and what was not; never a 400 for our fault.
- Bounded: body bytes (after decompression too), records per request, and requests in flight
  (beyond which the answer is 503 + Retry-After instead of queueing without limit); the
  admission, body and store steps are ``zlog.gateway.intake``'s, shared with the other ingest APIs.
- A body that is OTLP (``application/x-protobuf``, or a JSON object with ``resourceLogs``) is
  answered by ``zlog.gateway.otlp``, so a collector or SDK pointed at the gateway's root URL works.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from zlog.client import Share
from zlog.gateway import otlp
from zlog.gateway.context import CONTEXT, error_response
from zlog.gateway.intake import Outcome, admitted, read_body, received_now, retry_after_of, store
from zlog.ingest.body import encode_body
from zlog.protocol.errors import ZlogError


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


def _refusal(exc: ZlogError, retry_after: int) -> web.Response:
    return error_response(exc, retry_after=retry_after)


async def post_logs(request: web.Request) -> web.StreamResponse:
    return await admitted(request, _ingest, _refusal)


async def _ingest(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    cfg = ctx.cfg.gateway
    content_type = request.headers.get("Content-Type", "")
    try:
        body = await read_body(request)
    except ZlogError as exc:
        return error_response(exc)
    if otlp.is_otlp(content_type, body):
        # An OTLP exporter given only the gateway's base URL posts here, its default path.
        return await otlp.export(request, body)
    received_at = received_now()
    try:
        total, groups = encode_body(body, content_type, ctx.limits, received_at=received_at,
                                    client_ip=ctx.client_ip(request), node_id=ctx.cfg.cluster.node_id)
    except ZlogError as exc:
        ctx.metrics.errors.labels(kind=exc.code).inc()
        return error_response(exc)
    try:
        outcome = await store(request, groups, total, source="zlog")
    except ZlogError as exc:
        return error_response(exc, retry_after=retry_after_of(exc, cfg.retry_after_s))
    return answer(outcome, cfg.retry_after_s)


def answer(outcome: Outcome, retry_after: int) -> web.Response:
    """The /v1/logs answer: 200 stored, 202 partly spooled, else the worst failure with details."""
    total = outcome.total
    stored, spooled, failed = outcome.stored, outcome.spooled, outcome.failed
    if not failed:
        if not spooled:
            return _json({"received": total, "stored": summarize(stored)})
        spooled_count = sum(s.count for s in spooled)
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
    stored_count = outcome.stored_count
    worst = outcome.worst()
    assert worst is not None
    by_part: dict[int, dict[str, Any]] = {}
    for svc, e in failed:
        p = e.partition if e.partition is not None else -1
        entry = by_part.setdefault(p, {"partition": p, "error": e.code, "message": e.message, "count": 0})
        entry["count"] += outcome.groups[svc].count
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
    return error_response(worst, retry_after=retry_after, extra=extra)
