"""The counting engine's spec and arithmetic: buckets by step over a time range, grouped by a key (pure).

One engine answers ``/v1/stats/volume``, ``/v1/stats/values`` and LogQL metric queries. A
``CountSpec`` says which records (a ``Filter``, optionally a LogQL pipeline as text), over which
buckets (``n`` buckets of ``width_ms`` from ``start_ms``: bucket ``j`` holds records with
``start_ms + j*width <= ts < start_ms + (j+1)*width``), grouped by what key (``level``,
``service``, ``label:<name>``, or ``stream``: the record's label set after the pipeline) and
measuring what (``count``, or ``bytes``: the stored line's bytes, or for LogQL the log line's).
Each worker counts its partitions (``zlog.worker.counting``); the gateway merges the partial
``Counts`` of every partition (``Counts.merge``) and shapes the answer.

Invariants:
- Pure: no sockets, files or clocks.
- Bounded: at most ``MAX_BUCKETS`` buckets and ``MAX_KEYS`` keys per answer; a key past the limit
  is counted under ``OVERFLOW_KEY`` and the answer marked partial, so totals stay exact.
- ``Counts`` are additive: merging the answers of disjoint record sets gives the answer of their
  union, whichever order, so partitions and scan rounds merge freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from zlog.protocol.errors import BadParameter
from zlog.read.query import Filter

MAX_MS = 1 << 62  # times travel as 64-bit integers
MAX_BUCKETS = 11_000  # Loki's own limit on points per series
MAX_KEYS = 5_000
OVERFLOW_KEY = "__other__"
MEASURES = ("count", "bytes")
NICE_STEPS_MS = (1000, 5000, 10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000,
                 3 * 3_600_000, 6 * 3_600_000, 12 * 3_600_000, 86_400_000, 7 * 86_400_000)
AUTO_BUCKETS = 120


@dataclass(frozen=True, slots=True)
class CountSpec:
    filter: Filter
    start_ms: int
    width_ms: int
    n: int
    by: str = "level"  # level | service | label:<name> | stream | none
    measure: str = "count"
    logql: str | None = None  # a LogQL log query (selector + pipeline), evaluated worker-side

    @property
    def end_ms(self) -> int:
        """The last millisecond the buckets cover (inclusive)."""
        return self.start_ms + self.width_ms * self.n - 1

    def bucket(self, ts: int) -> int:
        """The bucket of timestamp ``ts``, or -1 outside the range."""
        j = (ts - self.start_ms) // self.width_ms
        return j if 0 <= j < self.n else -1

    def check(self) -> None:
        if self.width_ms <= 0:
            raise BadParameter("step", "must be positive")
        if self.start_ms < -MAX_MS or self.end_ms > MAX_MS:
            raise BadParameter("since", "the range must lie within 292 million years of 1970")
        if not 1 <= self.n <= MAX_BUCKETS:
            raise BadParameter("step", f"makes {self.n} buckets; at most {MAX_BUCKETS} (use a larger step)")
        if self.measure not in MEASURES:
            raise BadParameter("measure", "must be count or bytes")
        if not (self.by in ("level", "service", "stream", "none") or (self.by.startswith("label:") and len(self.by) > 6)):
            raise BadParameter("by", "must be level, service or a label name")

    def to_body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"filter": self.filter.to_body(), "start": self.start_ms, "width": self.width_ms,
                               "n": self.n, "by": self.by, "measure": self.measure}
        if self.logql is not None:
            out["logql"] = self.logql
        return out

    @classmethod
    def from_body(cls, obj: Any) -> CountSpec:
        """Parse the wire form; raises ``BadParameter`` (the worker maps it to BAD_BODY)."""
        if not isinstance(obj, dict):
            raise BadParameter("count", "must be a map")
        ints = [obj.get(k) for k in ("start", "width", "n")]
        if not all(type(v) is int for v in ints):
            raise BadParameter("count", "start, width and n must be integers")
        by, measure, logql = obj.get("by", "level"), obj.get("measure", "count"), obj.get("logql")
        if type(by) is not str or type(measure) is not str or (logql is not None and type(logql) is not str):
            raise BadParameter("count", "by, measure and logql must be strings")
        spec = cls(Filter.from_body(obj.get("filter")), ints[0], ints[1], ints[2], by, measure, logql)  # type: ignore[arg-type]
        spec.check()
        return spec


@dataclass(slots=True)
class Counts:
    """Per key, per bucket: the measure. Additive (see the module's invariants)."""

    series: dict[str, dict[int, int]] = field(default_factory=dict)
    total: int = 0
    partial: bool = False
    scanned_records: int = 0
    scanned_bytes: int = 0

    def add(self, key: str, j: int, amount: int) -> None:
        s = self.series.get(key)
        if s is None:
            if len(self.series) >= MAX_KEYS:
                self.partial = True
                key = OVERFLOW_KEY
                s = self.series.setdefault(key, {})
            else:
                s = self.series[key] = {}
        s[j] = s.get(j, 0) + amount
        self.total += amount

    def merge(self, other: Counts) -> None:
        for key, buckets in other.series.items():
            for j, v in buckets.items():
                self.add(key, j, v)
        self.partial = self.partial or other.partial
        self.scanned_records += other.scanned_records
        self.scanned_bytes += other.scanned_bytes

    def to_body(self) -> dict[str, Any]:
        return {"series": [[k, [[j, v] for j, v in b.items()]] for k, b in self.series.items()],
                "partial": self.partial, "scanned_records": self.scanned_records,
                "scanned_bytes": self.scanned_bytes}

    @classmethod
    def from_body(cls, obj: dict[str, Any]) -> Counts:
        out = cls(partial=bool(obj.get("partial")), scanned_records=int(obj.get("scanned_records", 0)),
                  scanned_bytes=int(obj.get("scanned_bytes", 0)))
        for key, buckets in obj.get("series", []):
            for j, v in buckets:
                out.add(str(key), int(j), int(v))
        return out

    def by_bucket(self, n: int) -> list[dict[str, int]]:
        """The buckets in order, each ``{key: amount}`` (keys with nothing in a bucket left out)."""
        out: list[dict[str, int]] = [{} for _ in range(n)]
        for key, buckets in self.series.items():
            for j, v in buckets.items():
                if 0 <= j < n and v:
                    out[j][key] = v
        return out

    def totals(self) -> list[tuple[str, int]]:
        """Each key's sum over every bucket, largest first (ties by key)."""
        sums = [(k, sum(b.values())) for k, b in self.series.items()]
        return sorted(((k, v) for k, v in sums if v), key=lambda kv: (-kv[1], kv[0]))


def auto_step(span_ms: int, target: int = AUTO_BUCKETS) -> int:
    """The smallest nice step that covers ``span_ms`` in at most ``target`` buckets."""
    for step in NICE_STEPS_MS:
        if span_ms <= step * target:
            return step
    return NICE_STEPS_MS[-1]


def aligned(since_ms: int, until_ms: int, step_ms: int) -> tuple[int, int]:
    """``[since, until]`` widened to whole steps (multiples of ``step`` since the epoch): (start, n)."""
    start = since_ms // step_ms * step_ms
    end = -(-(until_ms + 1) // step_ms) * step_ms
    return start, max(1, (end - start) // step_ms)


def key_of(by: str, rec: dict[str, Any]) -> str:
    """The group key of a stored record for ``by`` (level, service or label:<name>)."""
    if by == "level" or by == "service":
        v = rec.get(by)
    elif by == "none":
        return ""
    else:
        labels = rec.get("labels")
        v = labels.get(by[6:]) if type(labels) is dict else None
    return v if type(v) is str else ""


def rollup_eligible(spec: CountSpec, slot_ms: int) -> bool:
    """True when rollups of ``slot_ms`` slots answer ``spec`` exactly: buckets of whole slots,
    grouped and filtered by service and level only, counting records."""
    f = spec.filter
    return (spec.logql is None and spec.by in ("level", "service", "none") and spec.measure == "count"
            and spec.start_ms % slot_ms == 0 and spec.width_ms % slot_ms == 0
            and all(k in ("service", "level") for k, _ in f.exclude)
            # Any other condition (text, words, regex, labels, and whatever a filter gains later)
            # needs the records themselves.
            and replace(f, services=(), levels=(), exclude=()) == Filter())


def matches_keys(f: Filter, service: str, level: str) -> bool:
    """Does a (service, level) rollup cell pass the filter's service and level conditions?"""
    if f.services and service not in f.services:
        return False
    if f.levels and level.lower() not in {lv.lower() for lv in f.levels}:
        return False
    return not any((k == "service" and v == service) or (k == "level" and v.lower() == level.lower())
                   for k, v in f.exclude)


def by_param(text: str | None) -> str:
    if not text or text == "level":
        return "level"
    if text == "service":
        return "service"
    name = text[6:] if text.startswith("label.") else text
    if not name:
        raise BadParameter("by", "empty label name")
    return "label:" + name


def stream_identity(line: bytes) -> bytes | None:
    """The stored line without its timestamp, message and received_at (zlog.ingest.records' field
    order); None when the line is not in that shape. Inside a JSON string every quote is escaped,
    so the delimiters found here cannot come from a value."""
    i = line.find(b',"service":"')
    m = line.find(b',"message":"', i)
    lab = line.find(b'","labels":', m)
    r = line.find(b',"received_at":', lab)
    if i < 0 or m < 0 or lab < 0 or r < 0:
        return None
    e = line.find(b",", r + 15)
    return line[i:m] + line[lab + 1:r] + (line[e:] if e >= 0 else b"}")
