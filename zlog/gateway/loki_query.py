"""Loki's query API on the gateway: query_range, query, labels, label values, series, index stats, buildinfo.

Log queries are SEARCHes whose LogQL pipeline runs on the workers (``logql`` in the SEARCH body);
the gateway re-runs the pipeline on the page it returns to get each entry's labels and line.
Metric queries, labels, label values, series and index stats are the counting engine's
(``zlog.gateway.stats_api.run_count``): one counting path.

Invariants:
- Answers have Loki's shapes: ``{"status": "success", "data": {...}}``; label values are strings,
  log values ``["<unix ns>", "<line>"]``, samples ``[<unix seconds>, "<value>"]``.
- A query outside the LogQL subset, or a bad parameter, is 400 with the project's JSON error
  (``message`` carries Loki's wording, which is what Grafana shows).
- Every read is bounded as its engine is: a page of at most ``limit`` entries, counts within the
  time budget. Label discovery reports what the budget reached.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from zlog.gateway.auth import tenant_of
from zlog.gateway.context import CONTEXT, GatewayContext
from zlog.gateway.partitions import partition_count, scope
from zlog.gateway.read_api import run_search
from zlog.gateway.stats_api import run_count
from zlog.loki import ast
from zlog.loki.logql import LogQLError, parse
from zlog.loki.metrics import Series, eval_times, evaluate, fmt, range_aggs, window_spec
from zlog.loki.pipeline import compile_log, prefilter
from zlog.loki.requests import (
    RangeRequest,
    ns_to_ms,
    parse_direction,
    parse_duration,
    parse_limit,
    parse_time,
    range_request,
)
from zlog.protocol.errors import BadParameter
from zlog.read.counting import MAX_BUCKETS, Counts, CountSpec
from zlog.read.paging import Cursor, PageMerge
from zlog.read.query import Filter

LABELS_DEFAULT_NS = 6 * 3_600_000_000_000
BUILD_VERSION = "2.9.0"  # the Loki API level these endpoints follow


def _ok(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps({"status": "success", "data": data}), content_type="application/json")


async def _params(request: web.Request) -> dict[str, str]:
    out = {k: v for k, v in request.query.items()}
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        out.update({k: str(v) for k, v in (await request.post()).items()})
    return out


def parse_query(text: str) -> ast.Query:
    try:
        return parse(text)
    except LogQLError as exc:
        raise BadParameter("query", str(exc)) from None


def _now_ns() -> int:
    return time.time_ns()


def _stats(t0: float, entries: int, lines: int, nbytes: int) -> dict[str, Any]:
    took = time.perf_counter() - t0
    return {"summary": {"bytesProcessedPerSecond": int(nbytes / took) if took else 0,
                        "linesProcessedPerSecond": int(lines / took) if took else 0,
                        "totalBytesProcessed": nbytes, "totalLinesProcessed": lines, "execTime": took,
                        "queueTime": 0, "subqueries": 0, "totalEntriesReturned": entries,
                        "splits": 0, "shards": 0}}


def _ns(rec: dict[str, Any]) -> int:
    ts = rec.get("timestamp")
    return ts * 1_000_000 if type(ts) is int else 0


# -- log queries ---------------------------------------------------------------------------


async def log_streams(ctx: GatewayContext, q: ast.LogQuery, start_ns: int, end_ns: int | None, limit: int,
                      backward: bool, cursor: Cursor | None = None, *,
                      tenant: str) -> tuple[list[dict[str, Any]], PageMerge, int, int]:
    """The newest (or oldest) ``limit`` entries in ``[start, end)`` grouped into Loki streams, and the
    merge that found them (its cursors resume the search)."""
    base = prefilter(q)
    flt = Filter(services=base.services, since_ms=ns_to_ms(start_ns),
                 until_ms=None if end_ns is None else ns_to_ms(end_ns - 1))
    merge, scanned, scanned_bytes = await run_search(ctx, flt, scope(flt, partition_count(ctx)), backward, limit,
                                                     cursor, logql=q.text(), tenant=tenant)
    return to_streams(q, [line for _, _, line in merge.out], backward), merge, scanned, scanned_bytes


def to_streams(q: ast.LogQuery, lines: list[bytes], backward: bool) -> list[dict[str, Any]]:
    run = compile_log(q)
    streams: dict[bytes, tuple[dict[str, str], list[tuple[int, str]]]] = {}
    for line in lines:
        rec = orjson.loads(line)
        out = run(rec)
        if out is None:
            continue
        labels, text = out
        key = orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)
        streams.setdefault(key, (labels, []))[1].append((_ns(rec), text))
    result = []
    for labels, values in streams.values():
        values.sort(key=lambda v: v[0], reverse=backward)
        result.append({"stream": labels, "values": [[str(ts), text] for ts, text in values]})
    return result


# -- metric queries ------------------------------------------------------------------------


async def metric(ctx: GatewayContext, e: ast.Expr, times: list[int],
                 tenant: str) -> tuple[dict[str, Series] | float, Counts]:
    counts: dict[ast.RangeAgg, Counts] = {}
    seen = Counts()
    for agg in range_aggs(e):
        if agg in counts:
            continue
        start, width, n = window_spec(times, agg.range_ms)
        if n > MAX_BUCKETS:
            raise BadParameter("step", f"the range [{agg.range_ms}ms] and step cut the query into {n} buckets, "
                                       f"at most {MAX_BUCKETS}: use a larger step, or one that divides the range")
        base = prefilter(agg.query)
        measure = "bytes" if agg.op.startswith("bytes") else "count"
        spec = CountSpec(base, start, width, n, "stream", measure, agg.query.text())
        c, _ = await run_count(ctx, spec, scope(base, partition_count(ctx)), tenant=tenant)
        counts[agg] = c
        seen.merge(Counts(scanned_records=c.scanned_records, scanned_bytes=c.scanned_bytes))
    return evaluate(e, times, counts), seen


def _sec(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _matrix(res: dict[str, Series] | float, times: list[int]) -> list[dict[str, Any]]:
    if isinstance(res, float):
        res = {"{}": Series({}, [res] * len(times))}
    out = []
    for s in res.values():
        values = [[_sec(t), fmt(v)] for t, v in zip(times, s.points, strict=True) if v is not None]
        if values:
            out.append({"metric": s.labels, "values": values})
    return out


def _times(r: RangeRequest) -> list[int]:
    try:
        return eval_times(ns_to_ms(r.start_ns), ns_to_ms(r.end_ns), max(1, r.step_ns // 1_000_000))
    except ValueError as exc:
        raise BadParameter("step", str(exc)) from None


async def get_query_range(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    t0 = time.perf_counter()
    r = range_request(await _params(request), _now_ns())
    q = parse_query(r.query)
    if isinstance(q, ast.LogQuery):
        result, _, lines, nbytes = await log_streams(ctx, q, r.start_ns, r.end_ns, r.limit, r.backward,
                                                     tenant=tenant_of(request))
        entries = sum(len(s["values"]) for s in result)
        return _ok({"resultType": "streams", "result": result, "stats": _stats(t0, entries, lines, nbytes)})
    times = _times(r)
    res, seen = await metric(ctx, q, times, tenant_of(request))
    result = _matrix(res, times)
    return _ok({"resultType": "matrix", "result": result,
                "stats": _stats(t0, 0, seen.scanned_records, seen.scanned_bytes)})


async def get_query(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    t0 = time.perf_counter()
    params = await _params(request)
    text = params.get("query", "")
    if not text:
        raise BadParameter("query", "required")
    at = parse_time(params.get("time"), "time", _now_ns())
    parse_limit(params.get("limit"))
    parse_direction(params.get("direction"))
    q = parse_query(text)
    if isinstance(q, ast.LogQuery):
        raise BadParameter("query", "log queries are not supported as an instant query type, please change your "
                                    "query to a range query type")
    t = ns_to_ms(at)
    res, seen = await metric(ctx, q, [t], tenant_of(request))
    stats = _stats(t0, 0, seen.scanned_records, seen.scanned_bytes)
    if isinstance(res, float):
        return _ok({"resultType": "scalar", "result": [_sec(t), fmt(res)], "stats": stats})
    result = [{"metric": s.labels, "value": [_sec(t), fmt(s.points[0])]} for s in res.values()
              if s.points[0] is not None]
    return _ok({"resultType": "vector", "result": result, "stats": stats})


# -- labels, series, index stats -----------------------------------------------------------


async def _streams(ctx: GatewayContext, params: dict[str, str], selector: str | None,
                   measure: str = "count", *, tenant: str) -> Counts:
    """Every stream (label set) with entries in the request's range, from the counting engine."""
    end = parse_time(params.get("end"), "end", _now_ns())
    since = parse_duration(params.get("since"), "since")
    start = parse_time(params.get("start"), "start", end - (since or LABELS_DEFAULT_NS))
    if end < start:
        raise BadParameter("end", "end timestamp must not be before start time")
    base = Filter()
    logql = None
    if selector:
        q = parse_query(selector)
        if not isinstance(q, ast.LogQuery):
            raise BadParameter("query", "expected a stream selector such as {service=\"api\"}")
        base, logql = prefilter(q), q.text()
    lo, hi = ns_to_ms(start), ns_to_ms(end)
    spec = CountSpec(base, lo, hi - lo + 1, 1, "stream", measure, logql)
    counts, _ = await run_count(ctx, spec, scope(base, partition_count(ctx)), tenant=tenant)
    return counts


def _label_sets(counts: Counts) -> list[dict[str, str]]:
    return [orjson.loads(k) for k in counts.series if k.startswith("{")]


async def get_labels(request: web.Request) -> web.Response:
    params = await _params(request)
    counts = await _streams(request.app[CONTEXT], params, params.get("query"), tenant=tenant_of(request))
    return _ok(sorted({name for labels in _label_sets(counts) for name in labels}))


async def get_label_values(request: web.Request) -> web.Response:
    params = await _params(request)
    name = request.match_info["name"]
    counts = await _streams(request.app[CONTEXT], params, params.get("query"), tenant=tenant_of(request))
    return _ok(sorted({labels[name] for labels in _label_sets(counts) if name in labels}))


async def get_series(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    params = await _params(request)
    matches = request.query.getall("match[]", []) or request.query.getall("match", [])
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        matches = matches + [str(v) for v in (await request.post()).getall("match[]", [])]
    if not matches:
        raise BadParameter("match[]", "at least one stream selector is required")
    found: dict[str, dict[str, str]] = {}
    for m in matches:
        for labels in _label_sets(await _streams(ctx, params, m, tenant=tenant_of(request))):
            found[orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()] = labels
    return _ok([found[k] for k in sorted(found)])


async def get_index_stats(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    params = await _params(request)
    query = params.get("query") or None
    entries = await _streams(ctx, params, query, tenant=tenant_of(request))
    nbytes = await _streams(ctx, params, query, "bytes", tenant=tenant_of(request))
    streams = len(entries.series)
    # zlog has no chunks: a stream's entries sit in its partition's segments; one per stream here.
    body = {"streams": streams, "chunks": streams, "entries": entries.total, "bytes": nbytes.total}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def get_buildinfo(request: web.Request) -> web.Response:
    from zlog import __version__

    body = {"version": BUILD_VERSION, "revision": f"zlog-{__version__}", "branch": "", "buildUser": "",
            "buildDate": "", "goVersion": ""}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def setup(app: web.Application) -> None:
    for path, handler in (("/loki/api/v1/query_range", get_query_range), ("/loki/api/v1/query", get_query),
                          ("/loki/api/v1/labels", get_labels), ("/loki/api/v1/label/{name}/values", get_label_values),
                          ("/loki/api/v1/series", get_series), ("/loki/api/v1/index/stats", get_index_stats)):
        app.router.add_get(path, handler)
        app.router.add_post(path, handler)
    app.router.add_get("/loki/api/v1/label", get_labels)  # the older name of /labels
    app.router.add_get("/loki/api/v1/status/buildinfo", get_buildinfo)
