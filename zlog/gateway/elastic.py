"""The Elasticsearch-compatible API: ``_bulk`` and the calls clients and shippers make at start.

Endpoints: ``POST``/``PUT`` ``/_bulk`` and ``/{index}/_bulk``; ``GET``/``HEAD /`` for a client
(a browser, whose ``Accept`` names ``text/html``, gets the viewer); ``GET /_license``,
``/_cat/templates``, ``/_index_template[/{name}]``, ``/_ilm/policy/...``, ``/_ingest/pipeline/...``,
``/_cluster/health``
and ``PUT`` of templates as harmless answers, so Filebeat, Logstash and Vector start.

Invariants:
- Every answer of this API, errors included, carries ``X-Elastic-Product: Elasticsearch``: the
  official clients check it on the first successful answer of any call, not only ``GET /``.
- The produce path is ``/v1/logs``' own (``zlog.gateway.intake``). ``200`` with ``errors:
  false`` means every item is stored durably; an item that failed says why in its own entry
  (``400`` for its content, ``429`` when storage could not take it now, so shippers retry it),
  and nothing of a failed item is stored.
- A body that breaks the bulk framing is a ``400`` for the whole request, nothing stored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from zlog.client import Share
from zlog.gateway.context import CONTEXT
from zlog.gateway.intake import admitted, encode_label_groups, read_body, received_now, retry_after_of, store
from zlog.ingest import bulkbody, elastic
from zlog.protocol.errors import ZlogError

PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
NDJSON_TYPES = ("application/x-ndjson", "application/vnd.elasticsearch+x-ndjson", "application/json",
                "application/vnd.elasticsearch+json", "")


def es_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers={**PRODUCT, **(headers or {})})


def _failure(exc: ZlogError, retry_after: int) -> web.Response:
    status = exc.http_status
    headers = {}
    if exc.retry or status in (429, 503):
        status, kind = 429, "es_rejected_execution_exception"  # shippers back off and retry on 429
        headers["Retry-After"] = str(retry_after)
    elif isinstance(exc, elastic.BulkError):
        kind = exc.kind
    else:
        kind = {413: "content_too_long_exception", 415: "media_type_header_exception"}.get(
            status, "illegal_argument_exception")
    return es_json(elastic.error_body(kind, exc.message, status), status, headers)


def wants_elasticsearch(request: web.Request) -> bool:
    """``GET /`` from a client rather than a browser (browsers ask for text/html)."""
    return "text/html" not in request.headers.get("Accept", "")


async def root(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    info = {
        "name": ctx.cfg.cluster.node_id,
        "cluster_name": "zlog",
        "cluster_uuid": "zlog-" + ctx.cfg.cluster.node_id,
        "version": {"number": ctx.cfg.intake.es_version, "build_flavor": "default", "build_type": "zlog",
                    "lucene_version": "9.12.0", "minimum_wire_compatibility_version": "7.17.0",
                    "minimum_index_compatibility_version": "7.0.0"},
        "tagline": "You Know, for Search",
    }
    return es_json(info)


async def license_(request: web.Request) -> web.Response:
    return es_json({"license": {"status": "active", "type": "basic", "uid": "zlog", "mode": "basic"}})


async def empty_list(request: web.Request) -> web.Response:
    return es_json([])


async def index_templates(request: web.Request) -> web.Response:
    return es_json({"index_templates": []})


async def empty_object(request: web.Request) -> web.Response:
    return es_json({})


async def cluster_health(request: web.Request) -> web.Response:
    # Vector's and Logstash's health checks: green while this gateway answers at all.
    return es_json({"cluster_name": "zlog", "status": "green", "timed_out": False, "number_of_nodes": 1,
                    "number_of_data_nodes": 1})


async def acknowledged(request: web.Request) -> web.Response:
    return es_json({"acknowledged": True})


async def _bulk(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    cfg = ctx.cfg.gateway
    t0 = time.perf_counter()
    ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if ctype not in NDJSON_TYPES:
        return _failure(ZlogError("UNSUPPORTED_MEDIA_TYPE", f"Content-Type header [{ctype}] is not supported"),
                        cfg.retry_after_s)
    try:
        body = await read_body(request)
        received_at = received_now()
        bulk = bulkbody.parse(body, request.match_info.get("index", ""), received_at, ctx.limits,
                              client_ip=ctx.client_ip(request), node_id=ctx.cfg.cluster.node_id)
        if bulk is not None:
            answer = await _store_fast(request, bulk, t0)
            if answer is not None:
                return answer
        items = elastic.parse_bulk(body, request.match_info.get("index", ""), received_at)
    except ZlogError as exc:
        ctx.metrics.errors.labels(kind=exc.code).inc()
        return _failure(exc, cfg.retry_after_s)
    mapped = [it for it in items if it.record is not None]
    batches = elastic.label_groups(mapped)
    groups, refused = encode_label_groups(request, batches, received_at=received_at)
    for bad in refused:
        it = mapped[bad.index]
        it.record, it.status, it.error_type = None, 400, "document_parsing_exception"
        it.reason = f"{bad.field + ': ' if bad.field else ''}{bad.problem}"
    results: dict[str, Share | ZlogError] = {}
    if groups:
        try:
            outcome = await store(request, groups, sum(g.count for g in groups.values()),
                                  source=elastic.SOURCE)
        except ZlogError as exc:
            return _failure(exc, retry_after_of(exc, cfg.retry_after_s))
        results = dict(zip(outcome.groups, outcome.results, strict=True))
    seq_nos = _settle(items, [it.record["service"] if it.record is not None else None for it in items], results)
    took = int((time.perf_counter() - t0) * 1000)
    return web.Response(body=elastic.response(took, items, seq_nos), content_type="application/json", headers=PRODUCT)


async def _store_fast(request: web.Request, bulk: bulkbody.Bulk, t0: float) -> web.Response | None:
    """Store a body taken whole by the one-pass parse and answer it; None (nothing stored) when
    the exact path must answer instead."""
    cfg = request.app[CONTEXT].cfg.gateway
    try:
        outcome = await store(request, bulk.groups, len(bulk.ids), source=elastic.SOURCE)
    except ZlogError as exc:
        return _failure(exc, retry_after_of(exc, cfg.retry_after_s))
    results = dict(zip(outcome.groups, outcome.results, strict=True))
    items = bulkbody.items(bulk)
    seq_nos = _settle(items, bulk.services, results)
    took = int((time.perf_counter() - t0) * 1000)
    data = None
    if all(it.status == 201 for it in items):
        data = bulkbody.answer(took, bulk, seq_nos)
    if data is None:  # a failed service or an id to escape: the item-by-item answer
        data = elastic.response(took, items, seq_nos)
    return web.Response(body=data, content_type="application/json", headers=PRODUCT)


def _settle(items: list[elastic.Item], services: Sequence[str | None], results: dict[str, Share | ZlogError],
            ) -> list[int]:
    """Each item's status from its service's result (201, or 429 when its partition could not
    take it now), and its ``_seq_no``; an item without a service failed before storage."""
    for it, service in zip(items, services, strict=True):
        if service is not None:
            r = results[service]
            if isinstance(r, ZlogError):
                it.status, it.error_type, it.reason = 429, "es_rejected_execution_exception", f"{r.code}: {r.message}"
            else:
                it.status = 201
    offsets = {svc: (None if isinstance(r, ZlogError) else r.offset) for svc, r in results.items()}
    return bulkbody.seq_numbers(services, offsets)


async def post_bulk(request: web.Request) -> web.StreamResponse:
    return await admitted(request, _bulk, _failure)


def setup(app: web.Application) -> None:
    r = app.router
    for path in ("/_bulk", "/{index}/_bulk"):
        r.add_post(path, post_bulk)
        r.add_put(path, post_bulk)
    r.add_get("/_license", license_)
    r.add_get("/_cluster/health", cluster_health)
    r.add_get("/_xpack", empty_object)
    r.add_get("/_cat/templates", empty_list)
    r.add_get("/_cat/templates/{name}", empty_list)
    r.add_get("/_index_template", index_templates)
    r.add_get("/_index_template/{name}", index_templates)
    r.add_put("/_index_template/{name}", acknowledged)
    r.add_get("/_ilm/policy/{name}", empty_object)
    r.add_put("/_ilm/policy/{name}", acknowledged)
    r.add_get("/_ingest/pipeline/{name}", empty_object)
    r.add_put("/_ingest/pipeline/{name}", acknowledged)
