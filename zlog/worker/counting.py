"""The worker side of the counting engine: count one partition's records for a ``CountSpec``.

STATS ``{count: <CountSpec body>, start}`` -> ``{partition, counts: <Counts body>, next,
high_watermark}``. ``next`` resumes a scan (None: this partition is done).

Two sources, one answer:
- rollups (``zlog.storage.rollup``) when they answer the spec exactly (``rollup_eligible``): whole
  10-second slots, by or filtered on service and level only. Records committed since the rollup
  last caught up are counted first, a scan budget per request (the reply then has no counts and a
  ``next``, so the gateway asks again); once covered, one reply from the rollup, no record read;
- otherwise a backward scan from the newest record down to the range's start (the time index
  skips what is older), counting every match and keeping none, bounded by the storage scan
  budget per reply; the gateway resumes from ``next``.

Invariants:
- Counting a partition in several resumed rounds counts each record exactly once (the scan's
  resumption rules) and the rounds' ``Counts`` add up (``zlog.read.counting``).
- A LogQL pipeline runs here, beside the data, under the ``regex`` engine's timeouts; a bad spec is
  ``BAD_BODY``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from zlog.config import StorageConfig
from zlog.protocol import wire
from zlog.protocol.errors import BadParameter
from zlog.read.counting import Counts, CountSpec, key_of, matches_keys, rollup_eligible, stream_identity
from zlog.read.query import compile_filter, needles_of
from zlog.storage import PartitionLog, tokens
from zlog.storage.rollup import SLOT_MS
from zlog.storage.tokens import Needles


def from_rollup(plog: PartitionLog, spec: CountSpec) -> Counts:
    counts = Counts()
    lo, hi, width, by, f = spec.start_ms, spec.end_ms, spec.width_ms, spec.by, spec.filter
    plain = not f.services and not f.levels and not f.exclude
    for slot, svc, lvl, c in plog.rollup.rows(s.base for s in plog.segments):
        ts = slot * SLOT_MS
        if ts < lo or ts > hi or not (plain or matches_keys(f, svc, lvl)):
            continue
        counts.add(svc if by == "service" else lvl if by == "level" else "", (ts - lo) // width, c)
    return counts


def _timestamp(line: bytes) -> int:
    if line.startswith(b'{"timestamp":'):
        end = line.find(b",", 13)
        digits = line[13:end]
        if digits.isdigit():
            return int(digits)
    try:
        ts = orjson.loads(line).get("timestamp")
    except (orjson.JSONDecodeError, AttributeError):
        return -1
    return ts if type(ts) is int else -1


def needles(spec: CountSpec) -> list[bytes]:
    """Bytes every matching stored line contains (orjson's escaping, as the filter's own pre-check)."""
    f = spec.filter
    out = [escaped(f.contains)] if f.contains else []
    out += [b'"' + escaped(k) + b'":"' + escaped(v) + b'"' for k, v in f.labels]
    if len(f.services) == 1:
        out.append(b'"service":"' + escaped(f.services[0]) + b'"')
    if spec.logql is not None:
        from zlog.loki.logql import parse_log_query
        from zlog.loki.pipeline import needles as logql_needles

        try:
            out += logql_needles(parse_log_query(spec.logql))
        except ValueError as exc:
            raise BadParameter("query", str(exc)) from None
    return out


def block_needles(spec: CountSpec) -> Needles:
    """What every counted record holds, for sealed segments to skip blocks (zlog.storage.tokens)."""
    base = needles_of(spec.filter)
    if spec.logql is None:
        return base
    from zlog.loki.logql import parse_log_query
    from zlog.loki.pipeline import line_substrings

    try:
        extra = line_substrings(parse_log_query(spec.logql))
    except ValueError as exc:
        raise BadParameter("query", str(exc)) from None
    return tokens.needles(base.words, [*base.substrings, *extra])


def escaped(text: str) -> bytes:
    return orjson.dumps(text)[1:-1]


def counter(spec: CountSpec, counts: Counts) -> Callable[[bytes], bool]:
    """A scan predicate that counts every matching line into ``counts`` and keeps none."""
    lo, hi, width, by, bytes_ = spec.start_ms, spec.end_ms, spec.width_ms, spec.by, spec.measure == "bytes"
    match = compile_filter(spec.filter)
    loads = orjson.loads
    add = counts.add
    if spec.logql is not None or by == "stream":
        from zlog.loki.pipeline import compile_log_query, label_key, stream_labels  # LogQL, only when asked

        if spec.logql is not None:
            run = compile_log_query(spec.logql, need_line=bytes_)
        else:
            seen: dict[bytes, str] = {}

            def run(line: bytes) -> tuple[str, str] | None:
                # A record's stream is a function of its fields but timestamp, message and
                # received_at: one parse per stream shape, not per line.
                ident = stream_identity(line)
                key = seen.get(ident) if ident is not None else None
                if key is None:
                    rec = loads(line)
                    if type(rec) is not dict:
                        return None
                    key = label_key(stream_labels(rec))
                    if ident is not None and len(seen) < 4096:
                        seen[ident] = key
                return key, ""

        def note_logql(line: bytes) -> bool:
            ts = _timestamp(line)
            if ts < lo or ts > hi or (match is not None and not match(line)):
                return False
            out = run(line)
            if out is not None:
                key, text = out
                add(key, (ts - lo) // width, len(text.encode()) if bytes_ else 1)
            return False

        return note_logql

    keys: dict[bytes, str] = {}

    def note(line: bytes) -> bool:
        ts = _timestamp(line)
        if ts < lo or ts > hi or (match is not None and not match(line)):
            return False
        if by == "none":
            key = ""
        else:
            # The key is a field of the record's shape (all but timestamp, message, received_at):
            # parsed once per shape, not per line.
            ident = stream_identity(line)
            cached = keys.get(ident) if ident is not None else None
            if cached is None:
                cached = key_of(by, loads(line))
                if ident is not None and len(keys) < 4096:
                    keys[ident] = cached
            key = cached
        add(key, (ts - lo) // width, len(line) if bytes_ else 1)
        return False

    return note


def answer(partition: int, plog: PartitionLog, body: dict[str, Any], storage: StorageConfig) -> dict[str, Any]:
    try:
        spec = CountSpec.from_body(body.get("count"))
    except BadParameter as exc:
        raise wire.MalformedFrame("BAD_BODY", exc.message) from None
    start = body.get("start")
    if start is not None and (type(start) is not int or start < 0):
        raise wire.MalformedFrame("BAD_BODY", "start must be an integer >= 0")
    hw = plog.next_offset
    if rollup_eligible(spec, SLOT_MS):
        # The rollup answers once it covers every committed record; until then each request
        # counts a budget's worth more and asks to be called again (``next``: the high watermark).
        if plog.rollup.catch_up(plog.segments, storage.scan_budget_bytes):
            counts, nxt = from_rollup(plog, spec), None
        else:
            counts, nxt = Counts(), hw
    else:
        counts = Counts()
        # The window's own bounds are the counter's business; the filter's are folded into them.
        spec = replace(spec, filter=replace(spec.filter, since_ms=None, until_ms=None))
        lines: list[bytes] = []
        try:
            note = counter(spec, counts)
            # buf.append returns None: the scan keeps no record and hands every line over. The
            # bytes that must occur in a match then drop most lines in one C-level pass, and
            # only the rest pay for a Python call each.
            res = plog.scan(backward=True, start=start, since_ms=spec.start_ms, until_ms=spec.end_ms,
                            predicate=lines.append,  # type: ignore[arg-type]
                            limit=1, budget_bytes=storage.scan_budget_bytes, needles=block_needles(spec))
            for needle in needles(spec):
                lines = [line for line in lines if needle in line]
            for line in lines:
                note(line)
        except BadParameter as exc:  # a pattern that ran out of time on some record
            raise wire.MalformedFrame("BAD_BODY", exc.message) from None
        counts.scanned_records, counts.scanned_bytes = res.scanned_records, res.scanned_bytes
        nxt = res.next
    return {"partition": partition, "counts": counts.to_body(), "next": nxt, "high_watermark": hw}

