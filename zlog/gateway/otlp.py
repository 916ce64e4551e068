"""OTLP/HTTP logs: ``POST /otlp/v1/logs``, and ``POST /v1/logs`` when the body is OTLP.

An exporter given only a base URL posts to ``<base>/v1/logs``, so ``/v1/logs`` hands a body that
is ``application/x-protobuf``, or a JSON object with ``resourceLogs``, to ``export`` here.

Invariants:
- The produce path is ``/v1/logs``' own (``zlog.gateway.intake``): admission bounds, durability
  before the answer, ``Idempotency-Key``.
- ``200`` + ``ExportLogsServiceResponse`` in the request's encoding means every accepted record
  is stored durably (or in the gateway's fsynced WAL); records that cannot be mapped or fail
  validation are not stored and are counted in ``partial_success`` with the reason.
- A body that is not a request is ``400`` with a ``google.rpc.Status`` (code 3) and nothing is
  stored; overload and storage trouble are ``429``/``503`` + ``Retry-After`` (retryable, as the
  OTLP spec says clients expect), with a Status body.
"""

from __future__ import annotations

import time

from aiohttp import web

from zlog.gateway.context import CONTEXT
from zlog.gateway.intake import admitted, encode_label_groups, read_body, retry_after_of, store
from zlog.ingest import otlp, otlpview
from zlog.protocol.errors import ZlogError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _UNAVAILABLE = 3, 8, 14


def _wants_json(request: web.Request) -> bool:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower() == JSON


def _failure(exc: ZlogError, retry_after: int, as_json: bool) -> web.Response:
    status = exc.http_status
    headers: dict[str, str] = {}
    if exc.retry or status in (429, 503):
        # OTLP clients retry only 429, 502, 503, 504: our own trouble must be one of those.
        status = 429 if status == 429 else 503
        headers["Retry-After"] = str(retry_after)
        code = _RESOURCE_EXHAUSTED if status == 429 else _UNAVAILABLE
    else:
        code = _INVALID_ARGUMENT
    return web.Response(body=otlp.status(code, f"{exc.code}: {exc.message}", as_json), status=status,
                        content_type=JSON if as_json else PROTOBUF, headers=headers)


def is_otlp(content_type: str, body: bytes) -> bool:
    """Whether a body posted to /v1/logs is OTLP rather than zlog's own records."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in (PROTOBUF, "application/protobuf"):
        return True
    head = body[:256].lstrip()
    return head[:1] == b"{" and b'"resourceLogs"' in body[:4096]


async def export(request: web.Request, body: bytes) -> web.Response:
    """Decode, map and store an ExportLogsServiceRequest that has been read already."""
    ctx = request.app[CONTEXT]
    cfg = ctx.cfg.gateway
    ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    as_json = ctype == JSON or (ctype not in (PROTOBUF, "application/protobuf") and body[:1] == b"{")
    received_ns = time.time_ns()
    try:
        req = otlp.decode_json(body) if as_json else otlp.decode_proto(body)
        # Protobuf the parser accepted is read from its bytes in one walk; anything unusual is mapped
        # from the parsed message, which names every rejection.
        mapped = None if as_json else otlpview.view(body, received_ns)
        if mapped is None:
            mapped = otlp.to_records(req, received_ns)
    except ZlogError as exc:
        ctx.metrics.errors.labels(kind=exc.code).inc()
        return _failure(exc, cfg.retry_after_s, as_json)
    groups, refused = encode_label_groups(request, mapped.groups, received_at=received_ns // 1_000_000)
    for r in refused[:5]:
        mapped.reasons.append(f"log record: {r.field + ' ' if r.field else ''}{r.problem}")
    rejected = mapped.rejected + len(refused)
    if groups:
        try:
            outcome = await store(request, groups, mapped.count - len(refused), source=otlp.SOURCE)
        except ZlogError as exc:
            return _failure(exc, retry_after_of(exc, cfg.retry_after_s), as_json)
        worst = outcome.worst()
        if worst is not None:
            return _failure(worst, cfg.retry_after_s, as_json)
    reason = "; ".join(mapped.reasons[:5]) if rejected else ""
    return web.Response(body=otlp.response(rejected, reason, as_json), status=200,
                        content_type=JSON if as_json else PROTOBUF)


async def post_otlp_logs(request: web.Request) -> web.StreamResponse:
    as_json = _wants_json(request)

    async def handle(req: web.Request) -> web.StreamResponse:
        try:
            body = await read_body(req)
        except ZlogError as exc:
            return _failure(exc, req.app[CONTEXT].cfg.gateway.retry_after_s, as_json)
        return await export(req, body)

    return await admitted(request, handle, lambda exc, retry: _failure(exc, retry, as_json))


def setup(app: web.Application) -> None:
    app.router.add_post("/otlp/v1/logs", post_otlp_logs)
