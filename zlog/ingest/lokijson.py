"""A Loki push JSON body to stored lines in one typed pass (msgspec); the exact path as fallback.

The fast path decodes ``{"streams":[{"stream":{..},"values":[["<ns>","line",{meta}?],..]}]}``
straight into structs whose types and bounds msgspec checks in C while it parses (a line is a
non-empty string within a quarter of its byte limit, metadata a map of bounded strings), checks
each stream's labels and timestamps with Loki's own rules (``loki.validate_labels``,
``loki.validate_times``) and hands each stream's columns to ``lines.Lines``, without a Python
object per entry beyond its struct.

Invariants:
- Same answer as the exact path (``loki.decode_json`` + ``loki.to_groups`` +
  ``streams.encode_groups``): for every body it accepts, its groups are byte-identical (tests
  compare both on generated pushes); it never refuses anything itself, so every refusal is the
  exact path's, named by stream. Anything else (numbers as labels or timestamps, a value that is
  not two or three elements, an empty line, a rule broken) returns None.
- The bounds are a quarter of each byte limit in characters (a character is at most 4 UTF-8
  bytes), so a string it accepts is within its byte limit without being measured.
- Pure: no sockets, files or clocks.
"""

from __future__ import annotations

import functools
from operator import attrgetter
from typing import Annotated, Any

import msgspec

from zlog.ingest.lines import UNSET, Lines
from zlog.ingest.loki import PushError, PushLimits, level_of, service_of, validate_labels, validate_times
from zlog.ingest.records import Group, Limits

_TS, _LINE, _META = attrgetter("ts"), attrgetter("line"), attrgetter("meta")


@functools.lru_cache(maxsize=8)
def _decoder(limits: Limits) -> msgspec.json.Decoder[Any]:
    def text(limit: int, min_length: int = 0) -> Any:
        return Annotated[str, msgspec.Meta(min_length=min_length, max_length=limit // 4)]

    meta = Annotated[dict[text(limits.max_label_key_bytes, 1), text(limits.max_label_value_bytes)],  # type: ignore[misc,valid-type]
                     msgspec.Meta(max_length=limits.max_labels)]
    # ["<ns>", "line"] or ["<ns>", "line", {metadata}]: a fourth element is refused, not ignored.
    entry = msgspec.defstruct("Entry", [("ts", str), ("line", text(limits.max_message_bytes, 1)),
                                        ("meta", meta | None, None)],
                              array_like=True, forbid_unknown_fields=True, gc=False)
    stream = msgspec.defstruct("Stream", [("stream", dict[str, str], msgspec.field(default_factory=dict)),
                                          ("values", list[entry])], kw_only=True, gc=False)  # type: ignore[valid-type]
    push = msgspec.defstruct("Push", [("streams", list[stream])], gc=False)  # type: ignore[valid-type]
    return msgspec.json.Decoder(push)


def encode_push(body: bytes, push_limits: PushLimits, limits: Limits, *, now_ms: int, received_at: int,
                client_ip: str, node_id: str, source: str) -> tuple[dict[str, Group], int] | None:
    """(groups by service, entries) of a valid push, or None: then the exact path decides."""
    try:
        push = _decoder(limits).decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    total = sum(len(s.values) for s in push.streams)
    if not total or total > push_limits.max_entries:
        return None
    out = Lines(limits, received_at=received_at, client_ip=client_ip, node_id=node_id)
    try:
        for s in push.streams:
            text = validate_labels(s.stream, push_limits)
            values = s.values
            if not values:
                continue
            stamps = list(map(_TS, values))
            digits = "".join(stamps)
            if not (digits.isascii() and digits.isdigit()) or min(map(len, stamps)) < 1 or max(map(len, stamps)) > 19:
                return None
            ns = list(map(int, stamps))
            validate_times(min(ns), max(ns), text, push_limits, now_ms)
            metas = list(map(_META, values))
            empty = metas.count(None) + metas.count({})
            level = level_of(s.stream, None)
            levels: str | list[str] = level or [level_of({}, m) if m else "" for m in metas]
            labels = dict(s.stream)
            labels.setdefault("source", source)
            column = None if empty == len(metas) else [m or UNSET for m in metas] if empty else metas
            if not out.add(labels, [n // 1_000_000 for n in ns], service_of(s.stream, text), levels,
                           list(map(_LINE, values)), column):
                return None
    except PushError:
        return None
    groups = out.groups()
    return None if groups is None else (groups, total)
