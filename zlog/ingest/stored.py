"""Records as they cross the wire to a storage worker: the check every stored line passes first.

A PRODUCE carries encoded lines (``records.FIELD_ORDER``, plus ``metadata``); a gateway made them,
or a native producer did, or anyone who could reach a router. The worker stores none of a batch
unless every line is one JSON object that keeps the record rules of ``records.record_problem``
(the one rule set: service and message non-empty strings within their byte limits, an integer
timestamp, a string level, labels and metadata flat maps of bounded strings), whose enrichment
fields have their types, and that has no other key (so nothing a viewer or reader trusts, such
as ``partition`` or ``offset``, can be smuggled in).

Invariants:
- Pure: bytes in; out, the batch as the storage engine takes it (``batchdata.Checked``) or the
  first offending line's ``RecordError`` (the engine's own errors for a blob not in stored form).
- Paid once: one split of the blob gives the engine's form check and the lines decoded here.
- The fast path (msgspec, typed structs checked in C) accepts only lines the exact path accepts:
  its string bounds are a quarter of each byte limit in characters. Anything it refuses is
  judged line by line by the exact path, which names the line, the field and the problem.
- Each line is decoded on its own, so one line can never pass for two records or two for one.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import orjson

from zlog.ingest.records import FIELD_ORDER, MAX_TIMESTAMP, Limits, RecordError, record_problem
from zlog.storage import batchdata
from zlog.storage.batchdata import Checked

STORED_KEYS = frozenset((*FIELD_ORDER, "metadata"))
_ENRICHMENT = (("received_at", int), ("ingested_node_id", str), ("client_ip", str))


@functools.lru_cache(maxsize=8)
def _decoder(limits: Limits) -> msgspec.json.Decoder[Any]:
    def text(limit: int, min_length: int = 0) -> Any:
        return Annotated[str, msgspec.Meta(min_length=min_length, max_length=limit // 4)]

    flat = Annotated[dict[text(limits.max_label_key_bytes, 1), text(limits.max_label_value_bytes)],  # type: ignore[misc,valid-type]
                     msgspec.Meta(max_length=limits.max_labels)]
    ts = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP)]
    record = msgspec.defstruct("StoredRecord", [
        ("timestamp", ts | None, None),
        ("service", text(limits.max_service_bytes, 1)),
        ("level", text(limits.max_level_bytes), ""),
        ("message", text(limits.max_message_bytes, 1)),
        ("labels", flat | None, None),
        ("metadata", flat | None, None),
        ("received_at", ts | None, None),
        ("ingested_node_id", str | None, None),
        ("client_ip", str | None, None),
    ], kw_only=True, gc=False, forbid_unknown_fields=True)
    return msgspec.json.Decoder(record)


def line_problem(line: bytes, limits: Limits) -> tuple[str, str] | None:
    """Why one line is not a storable record, as (field, problem); None when it is one."""
    try:
        r = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "", "not valid JSON (or not valid UTF-8)"
    if type(r) is not dict:
        return "", "each record must be a JSON object"
    extra = r.keys() - STORED_KEYS
    if extra:
        return sorted(extra)[0][:64], "not a field of a stored record"
    for name, kind in _ENRICHMENT:
        value = r.get(name)
        if value is not None and type(value) is not kind:
            return name, f"must be {'an integer' if kind is int else 'a string'}"
    ts = r.get("timestamp")
    if ts is not None and (type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP):
        return "timestamp", "must be a non-negative integer of unix milliseconds"
    return record_problem(r, limits, with_metadata=True)


def check_lines(lines: Sequence[bytes], limits: Limits) -> RecordError | None:
    """The first line of a batch that may not be stored, or None when all may."""
    decode = _decoder(limits).decode
    for i, line in enumerate(lines):
        try:
            decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError):
            bad = line_problem(line, limits) if isinstance(line, bytes) else ("", "records must be bytes")
            if bad is not None:
                return RecordError(i, *bad)
    return None


def check_batch(data: bytes, limits: Limits) -> Checked | RecordError:
    """A batch blob ready for the storage engine, or the first line of it that may not be stored.
    One split serves the engine's form check (``batchdata.split``) and the record check of each
    line; an unterminated tail is a line too, so nothing in the blob escapes the check. Lines that
    keep the record rules but not the stored form raise the engine's ``InvalidRecord`` or
    ``RecordTooLarge``, naming the line."""
    lines, ok = batchdata.split(data, limits.max_record_bytes)
    if ok is not None:
        try:
            deque(map(_decoder(limits).decode, lines), maxlen=0)  # each record freed before the next
            return ok
        except msgspec.DecodeError:  # (ValidationError is one) the exact path names the line
            pass
    bad = check_lines(lines, limits)
    return bad if bad is not None else batchdata.checked(data, limits.max_record_bytes)
