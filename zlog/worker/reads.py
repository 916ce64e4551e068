"""The worker side of the read path: answer FETCH, SEARCH and STATS for one partition.

``answer(msg, partition, plog, storage)`` is called by ``zlog.worker.process`` inside its loop, after the
turn's commit, and its dict goes back as the RESULT body.

Every body may name its ``tenant`` (absent: the default tenant): the answer is about that
tenant's partition only; a tenant this worker never stored anything for reads as an empty
partition (``answer`` gets ``plog=None``), so a reader learns nothing about which tenants exist.

Bodies (msgpack maps; every key optional unless said otherwise):
- FETCH  ``{offset (required), max_records, max_bytes}`` -> ``{partition, records: [[offset, line]],
  next_offset, lowest_offset, high_watermark}``. ``next_offset`` is where the next fetch starts.
- SEARCH ``{filter: {services, levels, contains, regex, labels, since, until}, backward, start,
  limit, budget, logql}`` (``logql``: a LogQL log query every record must also match) -> ``{partition, records, next, scanned_records, scanned_bytes,
  lowest_offset, high_watermark}``. ``next`` resumes the scan (None: nothing left that way).
  A forward scan that reached the end answers ``next = high_watermark`` (new records will come).
- STATS  ``{services: bool}`` -> ``{partition, lowest_offset, next_offset, bytes, segments,
  max_timestamp}`` and, when asked, ``services: {name: newest timestamp seen}``. A STATS with a
  ``count`` key is the counting engine's (``zlog.worker.counting``).

Invariants:
- Every reply is bounded: at most ``MAX_RECORDS`` records and about ``MAX_REPLY_BYTES`` of lines
  (one record always fits, so a reader always progresses), and a SEARCH scans at most
  ``storage.scan_budget_bytes`` (plus the engine's last chunk) before it answers, so a read never
  stalls ingestion for long.
- Records are answered from committed data only, as stored (lines are never re-encoded).
- A bad request body raises ``wire.MalformedFrame("BAD_BODY", ...)``; nothing else is raised on
  purpose.
- The services cache (``ServiceIndex``, one per open ``PartitionLog``) is rebuildable from the
  segments: it grows from both ends of the log by a bounded budget per STATS request and is
  forgotten with the log object.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import orjson

from zlog.config import StorageConfig
from zlog.protocol import wire
from zlog.protocol.errors import BadParameter
from zlog.protocol.wire import Command
from zlog.read.query import MAX_LIMIT, Filter, Predicate, compile_filter, needles_of
from zlog.storage import PartitionLog, tokens
from zlog.storage.tokens import Needles
from zlog.tenants.ids import is_valid

MAX_RECORDS = 10_000
MAX_REPLY_BYTES = 16 * 1024 * 1024
DEFAULT_FETCH_RECORDS = 500
DEFAULT_FETCH_BYTES = 1024 * 1024
SERVICES_BUDGET_BYTES = 4 * 1024 * 1024
MAX_SERVICES = 10_000


def _bad(text: str) -> wire.MalformedFrame:
    return wire.MalformedFrame("BAD_BODY", text)


def _int(obj: dict[str, Any], name: str, default: int | None, lo: int, hi: int) -> int:
    value = obj.get(name, default)
    if value is None or type(value) is not int or not lo <= value <= hi:
        raise _bad(f"{name} must be an integer in {lo}..{hi}")
    return value


def _opt_int(obj: dict[str, Any], name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise _bad(f"{name} must be an integer >= 0")
    return value


def _bounded(records: list[tuple[int, bytes]], max_bytes: int) -> list[tuple[int, bytes]]:
    """The longest prefix within ``max_bytes`` (at least one record)."""
    used = 0
    for i, (_, line) in enumerate(records):
        used += len(line)
        if used > max_bytes and i > 0:
            return records[:i]
    return records


def fetch(partition: int, plog: PartitionLog, body: dict[str, Any]) -> dict[str, Any]:
    offset = _int(body, "offset", None, 0, 1 << 62)
    max_records = _int(body, "max_records", DEFAULT_FETCH_RECORDS, 1, MAX_RECORDS)
    max_bytes = _int(body, "max_bytes", DEFAULT_FETCH_BYTES, 1, MAX_REPLY_BYTES)
    records = plog.read(offset, max_records, max_bytes)
    lowest = plog.lowest_offset
    nxt = records[-1][0] + 1 if records else max(offset, lowest)
    return {
        "partition": partition,
        "records": [[o, line] for o, line in records],
        "next_offset": nxt,
        "lowest_offset": lowest,
        "high_watermark": plog.next_offset,
    }


def _with_logql(predicate: Predicate | None, text: Any) -> Predicate:
    """The filter's predicate and a LogQL log query's (zlog.loki.pipeline), both required."""
    from zlog.loki.pipeline import compile_log_query  # the LogQL layer, only when asked

    if type(text) is not str:
        raise _bad("logql must be a string")
    try:
        run = compile_log_query(text, need_line=False)
    except BadParameter as exc:
        raise _bad(exc.message) from None
    if predicate is None:
        return lambda line: run(line) is not None
    first = predicate
    return lambda line: first(line) and run(line) is not None


def _with_line_filters(base: Needles, text: str) -> Needles:
    """The filter's needles and a LogQL query's ``|=`` line filters (every match's message holds
    them), so sealed segments skip blocks for LogQL searches too."""
    from zlog.loki.logql import parse_log_query
    from zlog.loki.pipeline import line_substrings

    try:
        extra = line_substrings(parse_log_query(text))
    except ValueError:
        return base  # _with_logql has refused it already
    return tokens.needles(base.words, [*base.substrings, *extra])


def search(partition: int, plog: PartitionLog, body: dict[str, Any], storage: StorageConfig) -> dict[str, Any]:
    try:
        flt = Filter.from_body(body.get("filter"))
    except BadParameter as exc:
        raise _bad(exc.message) from None
    backward = body.get("backward", True)
    if type(backward) is not bool:
        raise _bad("backward must be a boolean")
    start = _opt_int(body, "start")
    limit = _int(body, "limit", 100, 1, MAX_LIMIT)
    budget = _int(body, "budget", storage.scan_budget_bytes, 1, 1 << 40)
    budget = min(budget, storage.scan_budget_bytes)
    predicate = compile_filter(flt)
    needles = needles_of(flt)
    if body.get("logql") is not None:
        predicate = _with_logql(predicate, body["logql"])
        needles = _with_line_filters(needles, body["logql"])
    try:
        result = plog.scan(backward=backward, start=start, since_ms=flt.since_ms, until_ms=flt.until_ms,
                           predicate=predicate, limit=limit, budget_bytes=budget,
                           needles=needles)
    except BadParameter as exc:  # a pattern that ran out of time on some record
        raise _bad(exc.message) from None
    records = _bounded(result.records, MAX_REPLY_BYTES)
    nxt = result.next
    if len(records) < len(result.records):
        last = records[-1][0]
        nxt = last - 1 if backward else last + 1
        if nxt < plog.lowest_offset:
            nxt = None
    hw = plog.next_offset
    if nxt is None and not backward:
        nxt = hw
    return {
        "partition": partition,
        "records": [[o, line] for o, line in records],
        "next": nxt,
        "scanned_records": result.scanned_records,
        "scanned_bytes": result.scanned_bytes,
        "lowest_offset": plog.lowest_offset,
        "high_watermark": hw,
    }


@dataclass(slots=True)
class ServiceIndex:
    """Services seen in one partition, grown from the newest end and the oldest-unseen end."""

    newer: int  # forward frontier: offsets >= this are not yet looked at
    older: int | None  # backward frontier: offsets <= this are not yet looked at (None: done)
    seen: dict[str, int] = field(default_factory=dict)

    def note(self, line: bytes) -> bool:
        if line.count(b'"service":') == 1:  # the common case: read in place
            i = line.find(b'"service":"')
            j = line.find(b'","level":', i + 11) if i >= 0 else -1
            raw = line[i + 11:j] if j > 0 else b""
            try:
                name = orjson.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode()
            except (orjson.JSONDecodeError, UnicodeDecodeError):
                return False
        else:  # a repeated service key, or a label named service: as a decoder reads it (the last)
            try:
                value = orjson.loads(line).get("service")
            except (orjson.JSONDecodeError, AttributeError):
                return False
            name = value if isinstance(value, str) else ""
        if not name:
            return False
        if len(self.seen) >= MAX_SERVICES and name not in self.seen:
            return False
        ts_end = line.find(b",", 13)
        ts = int(line[13:ts_end]) if line.startswith(b'{"timestamp":') and line[13:ts_end].isdigit() else 0
        if ts >= self.seen.get(name, -1):
            self.seen[name] = ts
        return False  # used as a scan predicate: keep nothing


_SERVICE_INDEXES: weakref.WeakKeyDictionary[PartitionLog, ServiceIndex] = weakref.WeakKeyDictionary()


def services(plog: PartitionLog, budget: int = SERVICES_BUDGET_BYTES) -> dict[str, int]:
    idx = _SERVICE_INDEXES.get(plog)
    hw = plog.next_offset
    if idx is None or idx.newer > hw:
        idx = _SERVICE_INDEXES[plog] = ServiceIndex(hw, hw - 1 if hw > plog.lowest_offset else None)
    if idx.newer < hw:
        r = plog.scan(backward=False, start=idx.newer, predicate=idx.note, limit=1, budget_bytes=budget)
        idx.newer = hw if r.next is None else r.next
    if idx.older is not None:
        if idx.older < plog.lowest_offset:
            idx.older = None
        else:
            r = plog.scan(backward=True, start=idx.older, predicate=idx.note, limit=1, budget_bytes=budget)
            idx.older = r.next
    return dict(idx.seen)


def stats(partition: int, plog: PartitionLog, body: dict[str, Any], storage: StorageConfig) -> dict[str, Any]:
    if "count" in body:
        from zlog.worker import counting  # the counting engine (volume, values, LogQL metrics)

        return counting.answer(partition, plog, body, storage)
    out: dict[str, Any] = {
        "partition": partition,
        "lowest_offset": plog.lowest_offset,
        "next_offset": plog.next_offset,
        "bytes": plog.size_bytes,
        "segments": plog.segment_count,
        "max_timestamp": plog.max_timestamp,
        # sealed segments (docs/sealed.md): record bytes as plain JSONL vs on disk
        "raw_bytes": plog.size_bytes,
        "stored_bytes": plog.stored_bytes,
        "index_bytes": plog.index_bytes,
        "sealed_segments": plog.segment_count - 1 - len(plog.unsealed()),
    }
    if body.get("services"):
        out["services"] = services(plog)
    return out


def read_tenant(msg: wire.Message, default: str) -> str:
    """The tenant a read is about (its body's ``tenant``); ``BAD_BODY`` if that is not an id."""
    tenant = msg.unpack().get("tenant", default)
    if not is_valid(tenant):
        raise _bad("tenant must be a tenant id")
    return str(tenant)


def empty(msg: wire.Message, partition: int, body: dict[str, Any]) -> dict[str, Any]:
    """The answer of a partition that holds nothing (a tenant's partition never written)."""
    if msg.command is Command.FETCH:
        offset = _int(body, "offset", None, 0, 1 << 62)
        return {"partition": partition, "records": [], "next_offset": offset, "lowest_offset": 0,
                "high_watermark": 0}
    if msg.command is Command.SEARCH:
        backward = body.get("backward", True)
        return {"partition": partition, "records": [], "next": None if backward else 0, "scanned_records": 0,
                "scanned_bytes": 0, "lowest_offset": 0, "high_watermark": 0}
    if msg.command is Command.STATS and "count" in body:
        from zlog.read.counting import Counts, CountSpec

        try:
            CountSpec.from_body(body["count"])  # a bad spec is refused whether or not there is data
        except BadParameter as exc:
            raise _bad(exc.message) from None
        return {"partition": partition, "counts": Counts().to_body(), "next": None, "high_watermark": 0}
    if msg.command is Command.STATS:
        out: dict[str, Any] = {"partition": partition, "lowest_offset": 0, "next_offset": 0, "bytes": 0,
                               "segments": 0, "max_timestamp": -1}
        if body.get("services"):
            out["services"] = {}
        return out
    raise wire.MalformedFrame("BAD_COMMAND", f"{msg.command.name} is not a read")


def answer(msg: wire.Message, partition: int, plog: PartitionLog | None, storage: StorageConfig) -> dict[str, Any]:
    body = msg.unpack()
    if plog is None:
        return empty(msg, partition, body)
    if msg.command is Command.FETCH:
        return fetch(partition, plog, body)
    if msg.command is Command.SEARCH:
        return search(partition, plog, body, storage)
    if msg.command is Command.STATS:
        return stats(partition, plog, body, storage)
    raise wire.MalformedFrame("BAD_COMMAND", f"{msg.command.name} is not a read")
