"""LogQL metric evaluation from the counting engine's buckets (pure).

For evaluation times ``t_i = t_0 + i*step`` (ms) and a range aggregation over ``range``, the window
of ``t_i`` is ``(t_i - range, t_i]`` as in Loki. ``window_spec`` cuts the span into buckets of
``g = gcd(step, range)`` starting at ``t_0 - range + 1``, so every window is a whole run of buckets;
the workers count per (series, bucket) and ``range_series`` sums each window's run.

Invariants:
- A series has a point at ``t_i`` only when its window holds at least one entry (as Loki: no zero
  points for absent data); aggregations see only present points.
- ``vector(n)`` and numbers are present at every step; a binary operation between two vectors
  matches series with identical label sets; a scalar applies to every series.
- Division by zero gives +Inf/-Inf/NaN as in Prometheus; results never raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from math import gcd

import orjson

from zlog.loki import ast
from zlog.read.counting import MAX_BUCKETS, Counts

Points = list[float | None]


@dataclass(slots=True)
class Series:
    labels: dict[str, str]
    points: Points


Result = dict[str, Series] | float  # a vector (by label key) or a scalar


def window_spec(times: list[int], range_ms: int) -> tuple[int, int, int]:
    """(first bucket start, bucket width, bucket count) covering every window of ``times``."""
    step = times[1] - times[0] if len(times) > 1 else range_ms
    g = gcd(step, range_ms)
    start = times[0] - range_ms + 1
    n = (times[-1] - times[0] + range_ms) // g
    return start, g, n


def range_aggs(e: ast.Expr) -> list[ast.RangeAgg]:
    if isinstance(e, ast.RangeAgg):
        return [e]
    if isinstance(e, ast.VectorAgg):
        return range_aggs(e.expr)
    if isinstance(e, ast.BinOp):
        return range_aggs(e.left) + range_aggs(e.right)
    return []


def range_series(agg: ast.RangeAgg, times: list[int], counts: Counts) -> dict[str, Series]:
    start, g, _ = window_spec(times, agg.range_ms)
    per = agg.range_ms // g
    seconds = agg.range_ms / 1000
    rate = agg.op in ("rate", "bytes_rate")
    out: dict[str, Series] = {}
    for key, buckets in counts.series.items():
        points: Points = []
        for t in times:
            first = (t - agg.range_ms + 1 - start) // g
            if per <= len(buckets):
                total = sum(buckets.get(j, 0) for j in range(first, first + per))
            else:
                total = sum(v for j, v in buckets.items() if first <= j < first + per)
            points.append((total / seconds if rate else float(total)) if total else None)
        if any(p is not None for p in points):
            out[key] = Series(dict(orjson.loads(key)), points)
    return out


def _group(labels: dict[str, str], by: tuple[str, ...] | None, without: tuple[str, ...] | None) -> dict[str, str]:
    if by is not None:
        return {k: labels[k] for k in by if k in labels}
    if without is not None:
        return {k: v for k, v in labels.items() if k not in without}
    return {}


def _key(labels: dict[str, str]) -> str:
    return orjson.dumps(dict(sorted(labels.items()))).decode()


def _aggregate(e: ast.VectorAgg, inner: dict[str, Series], n: int) -> dict[str, Series]:
    if e.op in ("topk", "bottomk"):
        k = e.param or 1
        out: dict[str, Series] = {key: Series(s.labels, [None] * n) for key, s in inner.items()}
        for i in range(n):
            groups: dict[str, list[tuple[float, str]]] = {}
            for key, s in inner.items():
                v = s.points[i]
                if v is not None:
                    groups.setdefault(_key(_group(s.labels, e.by, e.without)), []).append((v, key))
            for members in groups.values():
                members.sort(key=lambda vk: (-vk[0], vk[1]) if e.op == "topk" else (vk[0], vk[1]))
                for v, key in members[:k]:
                    out[key].points[i] = v
        return {key: s for key, s in out.items() if any(p is not None for p in s.points)}
    acc: dict[str, tuple[dict[str, str], list[list[float]]]] = {}
    for s in inner.values():
        labels = _group(s.labels, e.by, e.without)
        slot = acc.setdefault(_key(labels), (labels, [[] for _ in range(n)]))
        for i, v in enumerate(s.points):
            if v is not None:
                slot[1][i].append(v)
    folds: dict[str, Callable[[list[float]], float]] = {
        "sum": math.fsum, "count": lambda vs: float(len(vs)), "avg": lambda vs: math.fsum(vs) / len(vs),
        "min": min, "max": max}
    fold = folds[e.op]
    return {key: Series(labels, [fold(vs) if vs else None for vs in cols]) for key, (labels, cols) in acc.items()}


def _apply(op: str, a: float, b: float) -> float:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "%":
            return math.fmod(a, b)
        return float(a ** b)
    except ZeroDivisionError:
        return math.nan if a == 0 or op == "%" else math.copysign(math.inf, a)
    except (OverflowError, ValueError):
        return math.nan


def _binop(op: str, left: Result, right: Result, n: int) -> Result:
    if isinstance(left, float) and isinstance(right, float):
        return _apply(op, left, right)
    if isinstance(left, float) or isinstance(right, float):
        vec, scalar, scalar_left = (right, left, True) if isinstance(left, float) else (left, right, False)
        assert isinstance(vec, dict) and isinstance(scalar, float)
        out: dict[str, Series] = {}
        for key, s in vec.items():
            pts: Points = [None if v is None else (_apply(op, scalar, v) if scalar_left else _apply(op, v, scalar))
                           for v in s.points]
            # arithmetic drops the metric name only; zlog's series have none, so labels stay
            out[key] = Series(s.labels, pts)
        return out
    assert isinstance(left, dict) and isinstance(right, dict)
    res: dict[str, Series] = {}
    for key, s in left.items():
        other = right.get(key)
        if other is None:
            continue
        pts = [None if a is None or b is None else _apply(op, a, b) for a, b in zip(s.points, other.points, strict=True)]
        if any(p is not None for p in pts):
            res[key] = Series(s.labels, pts)
    return res


def evaluate(e: ast.Expr, times: list[int], counts: dict[ast.RangeAgg, Counts]) -> Result:
    n = len(times)
    if isinstance(e, ast.Number):
        return e.value
    if isinstance(e, ast.Vector):
        return {"{}": Series({}, [e.value] * n)}
    if isinstance(e, ast.RangeAgg):
        return range_series(e, times, counts[e])
    if isinstance(e, ast.VectorAgg):
        inner = evaluate(e.expr, times, counts)
        if isinstance(inner, float):
            inner = {"{}": Series({}, [inner] * n)}
        return _aggregate(e, inner, n)
    return _binop(e.op, evaluate(e.left, times, counts), evaluate(e.right, times, counts), n)


def eval_times(start_ms: int, end_ms: int, step_ms: int) -> list[int]:
    if step_ms <= 0:
        raise ValueError("step must be positive")
    n = (end_ms - start_ms) // step_ms + 1
    if n > MAX_BUCKETS:
        raise ValueError(f"exceeded maximum resolution of {MAX_BUCKETS} points per timeseries; "
                         "try decreasing the query resolution (?step=XX)")
    return [start_ms + i * step_ms for i in range(max(n, 1))]


def fmt(v: float) -> str:
    """A sample value as Loki writes it (Go's strconv 'f' -1 formatting, +Inf/-Inf/NaN)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e21:
        return str(int(v))
    return repr(v)
