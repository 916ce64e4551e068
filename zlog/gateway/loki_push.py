"""The Loki push API: ``POST /loki/api/v1/push`` (JSON or protobuf+snappy) and ``POST /api/prom/push``.

Invariants:
- The produce path is ``/v1/logs``' own (``zlog.gateway.intake``): the same admission bounds,
  all-or-nothing validation, durability before the answer and ``Idempotency-Key`` handling.
- ``204`` with an empty body means every entry is stored durably (or spooled in the gateway's
  fsynced WAL), as Loki answers; a refused push is a ``400`` JSON body naming the stream and the
  reason, with nothing of it stored; our own trouble is a 5xx (+ Retry-After), never a 400.
- Content types: ``application/json`` is JSON; ``application/x-protobuf`` or none is protobuf in
  a snappy block (Loki's rule); anything else is 415. gzip/deflate Content-Encoding is inflated
  first, within the body limit.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from zlog.gateway.context import CONTEXT, error_response
from zlog.gateway.intake import admitted, encode_label_groups, read_body, received_now, retry_after_of, store
from zlog.ingest import loki, lokijson
from zlog.ingest.records import Group
from zlog.protocol.errors import ZlogError

SOURCE = "loki"


def push_limits(request: web.Request) -> loki.PushLimits:
    ctx = request.app[CONTEXT]
    limits = ctx.extras.get("loki_limits")
    if limits is None:
        g, i = ctx.cfg.gateway, ctx.cfg.intake
        limits = loki.PushLimits(
            max_labels_per_stream=min(i.max_labels_per_stream, g.max_labels - 1),  # room for `source`
            max_label_name_bytes=g.max_label_key_bytes,
            max_label_value_bytes=g.max_label_value_bytes,
            max_line_bytes=g.max_message_bytes,
            max_age_ms=i.max_age_ms,
            grace_ms=i.grace_ms,
            max_entries=g.max_records,
        )
        ctx.extras["loki_limits"] = limits
    return limits


def _refusal(exc: ZlogError, retry_after: int) -> web.Response:
    return error_response(exc, retry_after=retry_after)


def _decoder(request: web.Request) -> Callable[[bytes], list[loki.Stream]]:
    ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json":
        return loki.decode_json
    if ctype in ("application/x-protobuf", "application/protobuf", ""):
        max_bytes = request.app[CONTEXT].cfg.gateway.max_body_bytes
        return lambda body: loki.decode_proto(loki.snappy_block(body, max_bytes))
    raise ZlogError("UNSUPPORTED_MEDIA_TYPE",
                    f"unsupported Content-Type {ctype!r}: use application/json or application/x-protobuf (snappy)")


def _encode(request: web.Request, body: bytes, decode: Callable[[bytes], list[loki.Stream]], received_at: int,
            ) -> tuple[dict[str, Group], int] | loki.PushError:
    """The push's groups and entry count; raises ``ZlogError`` for a push the decoder or Loki's rules
    refuse, returns the ``PushError`` naming the stream of an entry zlog's record checks refused
    (counted by ``encode_label_groups``)."""
    ctx = request.app[CONTEXT]
    if decode is loki.decode_json:  # the typed one-pass path; anything it does not take, the exact one
        fast = lokijson.encode_push(body, push_limits(request), ctx.limits, now_ms=received_at,
                                    received_at=received_at, client_ip=ctx.client_ip(request),
                                    node_id=ctx.cfg.cluster.node_id, source=SOURCE)
        if fast is not None:
            return fast
    batches, names = loki.to_groups(decode(body), push_limits(request), received_at, SOURCE)
    groups, refused = encode_label_groups(request, batches, received_at=received_at)
    if refused:
        # zlog's record checks (line length, metadata, encoded size) refused an entry: name its stream.
        first = refused[0]
        seen, stream = 0, ""
        for batch, text in zip(batches, names, strict=True):
            seen += len(batch.entries)
            if first.index < seen:
                stream = text
                break
        reason = f"{first.field or 'entry'}: {first.problem}"
        if len(refused) > 1:
            reason += f" (and {len(refused) - 1} more entries)"
        return loki.PushError(reason, stream)
    return groups, sum(len(b.entries) for b in batches)


async def _push(request: web.Request, decode: Callable[[bytes], list[loki.Stream]]) -> web.Response:
    ctx = request.app[CONTEXT]
    cfg = ctx.cfg.gateway
    try:
        body = await read_body(request)
        received_at = received_now()
        encoded = _encode(request, body, decode, received_at)
    except ZlogError as exc:
        ctx.metrics.errors.labels(kind=exc.code).inc()
        return error_response(exc)
    if isinstance(encoded, loki.PushError):
        return error_response(encoded)
    groups, count = encoded
    try:
        outcome = await store(request, groups, count, source=SOURCE)
    except ZlogError as exc:
        return error_response(exc, retry_after=retry_after_of(exc, cfg.retry_after_s))
    worst = outcome.worst()
    if worst is None:
        return web.Response(status=204)
    stored = outcome.stored_count
    return error_response(worst, retry_after=cfg.retry_after_s, extra={
        "stored_records": stored, "failed_records": outcome.total - stored,
        "message": f"{outcome.total - stored} of {outcome.total} entries were not stored ({worst.message}); "
                   "retry the push (with an Idempotency-Key header to store the rest exactly once)"})


async def post_push(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.StreamResponse:
        try:
            decode = _decoder(req)
        except ZlogError as exc:
            return error_response(exc)
        return await _push(req, decode)

    return await admitted(request, handle, _refusal)


async def post_legacy_push(request: web.Request) -> web.StreamResponse:
    async def handle(req: web.Request) -> web.StreamResponse:
        return await _push(req, loki.decode_legacy)

    return await admitted(request, handle, _refusal)


def setup(app: web.Application) -> None:
    app.router.add_post("/loki/api/v1/push", post_push)
    app.router.add_post("/api/prom/push", post_legacy_push)
