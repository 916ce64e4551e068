"""The gateway's counting API: ``GET /v1/stats/volume`` and ``GET /v1/stats/values``, and ``run_count``.

``run_count`` asks every partition a filter can match to count its records for one ``CountSpec``
(STATS with a ``count`` body, ``zlog.worker.counting``), resumes partitions that answered in part
until all are done or the time budget is spent, and merges the answers. LogQL metric queries
(``zlog.gateway.loki_api``) use it too: one counting path.

Contract (shared with the viewer):
- volume: the ``/v1/logs`` filters, ``step=<duration|ms|auto>``, ``by=level|service|<label>``
  (``measure=count|bytes`` optional) -> ``{start_ms, end_ms, step_ms, by, buckets: [{t, counts}],
  total, partial, missing}``. The range (default: the last hour) is widened to whole steps, and
  ``start_ms``/``end_ms`` say what was counted: every record with ``start_ms <= timestamp <= end_ms``.
- values: ``field=service|level|<label>``, the filters, ``limit`` -> ``{field, values: [{value,
  count}], total, partial}``; the range (default: all time) is widened to whole 10-second slots.

Invariants:
- Bounded: at most ``MAX_BUCKETS`` buckets (400 past it), at most ``MAX_KEYS`` keys, and a wall-clock
  budget; past either of the last two the answer is ``partial: true`` and ``missing`` names the
  partitions whose counts are incomplete. Every count given is exact for what was counted.
- Bad parameters are 400 naming the parameter; a partition whose owner is down is missing, and
  only when every partition is missing is the error itself returned (503/504).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from typing import Any

import orjson
from aiohttp import web

from zlog.gateway.auth import tenant_of
from zlog.gateway.context import CONTEXT, GatewayContext
from zlog.gateway.partitions import ask, now_ms, partition_count, scope, timeout_s
from zlog.protocol.errors import BadParameter, ZlogError
from zlog.protocol.wire import Command
from zlog.read.counting import Counts, CountSpec, aligned, auto_step, by_param
from zlog.read.params import parse_limit, parse_params
from zlog.read.query import Filter
from zlog.storage.rollup import SLOT_MS

COUNT_DEADLINE_S = 5.0
DEFAULT_SPAN_MS = 3_600_000
_STEP = re.compile(r"^(\d+)(ms|s|m|h|d|w)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, None: 1}


async def run_count(ctx: GatewayContext, spec: CountSpec, parts: list[int],
                    deadline_s: float = COUNT_DEADLINE_S, *, tenant: str) -> tuple[Counts, list[int]]:
    """Count ``spec`` over ``tenant``'s ``parts``; returns the merged counts and the partitions
    left incomplete."""
    total = Counts()
    body = spec.to_body()
    deadline = time.monotonic() + min(deadline_s, timeout_s(ctx))
    todo: dict[int, int | None] = dict.fromkeys(parts)  # partition -> resume offset
    errors: dict[int, ZlogError] = {}
    while todo:
        wanted = list(todo.items())
        replies = await asyncio.gather(
            *(ask(ctx, Command.STATS, p, {"count": body} if start is None else {"count": body, "start": start},
                  tenant)
              for p, start in wanted), return_exceptions=True)
        for (p, _), r in zip(wanted, replies, strict=True):
            if isinstance(r, BaseException):
                if isinstance(r, ZlogError) and r.code == "BAD_BODY":
                    raise BadParameter("query", r.message) from None
                if not isinstance(r, ZlogError) or not r.retry:
                    raise r
                errors[p] = r
                del todo[p]
                continue
            total.merge(Counts.from_body(r["counts"]))
            if r["next"] is None:
                del todo[p]
            else:
                todo[p] = r["next"]
        if time.monotonic() > deadline:
            break
    if errors and len(errors) == len(parts):
        raise next(iter(errors.values()))
    missing = sorted({*errors, *todo})
    if missing:
        total.partial = True
    return total, missing


def parse_step(text: str, span_ms: int) -> int:
    if text in ("", "auto"):
        return auto_step(span_ms)
    m = _STEP.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise BadParameter("step", "expected a duration such as 30s, 1m, 1h, milliseconds, or auto")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def _split(request: web.Request, own: set[str]) -> tuple[dict[str, str], Filter]:
    """This endpoint's own parameters, and the ``/v1/logs`` filter made of the rest."""
    mine = {k: v for k, v in request.query.items() if k in own}
    rest = [(k, v) for k, v in request.query.items() if k not in own]
    return mine, parse_params(rest, now_ms()).filter


def _timeless(f: Filter) -> Filter:
    return replace(f, since_ms=None, until_ms=None)


async def get_volume(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    mine, flt = _split(request, {"step", "by", "measure"})
    until = flt.until_ms if flt.until_ms is not None else now_ms()
    since = flt.since_ms if flt.since_ms is not None else until - DEFAULT_SPAN_MS
    if since > until:
        raise BadParameter("since", "must not be after until")
    step = parse_step(mine.get("step", "auto"), until - since + 1)
    start, n = aligned(since, until, step)
    by = by_param(mine.get("by"))
    spec = CountSpec(_timeless(flt), start, step, n, by, mine.get("measure", "count"))
    spec.check()
    counts, missing = await run_count(ctx, spec, scope(flt, partition_count(ctx)), tenant=tenant_of(request))
    buckets = [{"t": start + j * step, "counts": c} for j, c in enumerate(counts.by_bucket(n))]
    out: dict[str, Any] = {"start_ms": start, "end_ms": spec.end_ms, "step_ms": step,
                           "by": by[6:] if by.startswith("label:") else by, "buckets": buckets,
                           "total": counts.total, "partial": counts.partial, "missing": missing}
    return web.Response(body=orjson.dumps(out), content_type="application/json")


async def get_values(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    mine, flt = _split(request, {"field", "limit"})
    field = mine.get("field", "")
    if not field:
        raise BadParameter("field", "required: service, level or a label name")
    limit = parse_limit(mine.get("limit"))
    since = flt.since_ms if flt.since_ms is not None else 0
    until = flt.until_ms if flt.until_ms is not None else now_ms() + 86_400_000
    start, n = aligned(since, until, SLOT_MS)
    by = by_param(field)
    spec = CountSpec(_timeless(flt), start, SLOT_MS * n, 1, by)
    spec.check()
    counts, _ = await run_count(ctx, spec, scope(flt, partition_count(ctx)), tenant=tenant_of(request))
    ranked = counts.totals()
    # A record without the label has no value for it: it is not a facet value.
    values = [{"value": k, "count": v} for k, v in ranked if k != "" or by in ("level", "service")]
    out = {"field": field, "values": values[:limit], "total": counts.total, "partial": counts.partial}
    return web.Response(body=orjson.dumps(out), content_type="application/json")


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/stats/volume", get_volume)
    app.router.add_get("/v1/stats/values", get_values)
