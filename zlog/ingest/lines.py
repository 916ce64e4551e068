"""Stored lines built a column at a time and encoded by msgspec: the intake formats' common case.

A stored line is ``{"timestamp","service","level","message","labels"[,"metadata"],"received_at",
"ingested_node_id","client_ip"}`` (``records.FIELD_ORDER``), labels and metadata sorted by key.
``Lines`` takes records as columns (timestamps, messages, metadata maps; one service and level
for all or one each) sharing one label set, and encodes each service's records with one
``encode_lines`` call, the label set pre-encoded once.

Invariants:
- Same bytes as ``records.encode_batch(..., with_metadata=True)`` for the records it takes
  (msgspec and orjson agree on every string's JSON and on sorted keys; tests compare the paths).
- It never refuses a record with a reason: ``add`` and ``groups`` answer False/None when
  anything is unusual (a label set, service or level the record rules refuse or cannot judge
  without counting bytes, a timestamp out of range, a lone surrogate, a line at the size limit),
  and the caller takes its exact path, which names the problem.
- The caller guarantees the types and string bounds of messages and metadata (a typed decoder
  or its own column checks): every message a non-empty str of at most a quarter of its byte limit
  in characters, every metadata map a dict of at most ``max_labels`` such keys and values.
- Pure: no sockets, files or clocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

import msgspec
import orjson

from zlog.ingest.records import MAX_TIMESTAMP, Group, Limits, _check_labels, _utf8_len_over

# ``labels`` is a group's map pre-encoded once (a ``msgspec.Raw``); ``metadata`` is UNSET (left out)
# for a record without any.
_Line = msgspec.defstruct("Line", [("timestamp", int), ("service", str), ("level", str), ("message", str),
                                   ("labels", Any), ("metadata", Any), ("received_at", int),
                                   ("ingested_node_id", str), ("client_ip", str)], gc=False)
_ENCODER = msgspec.json.Encoder(order="deterministic")  # dict keys sorted: orjson's OPT_SORT_KEYS bytes
UNSET = msgspec.UNSET
_TIMESTAMP = attrgetter("timestamp")


_STR = {str}


def strings_within(values: Any, low: int, high: int) -> bool:
    """Every value a str of ``low``..``high`` characters (True for none), in C-level passes."""
    values = list(values)
    return not values or (set(map(type, values)) == _STR and low <= min(map(len, values)) and max(map(len, values)) <= high)


def metadata_within(present: Sequence[Any], limits: Limits) -> bool:
    """Every map a dict of at most ``max_labels`` keys and values that are strings within a quarter
    of their byte limits in characters (keys non-empty): the bound ``Lines`` leaves to its caller."""
    if set(map(type, present)) != {dict} or max(map(len, present)) > limits.max_labels:
        return False
    return (strings_within(chain.from_iterable(present), 1, limits.max_label_key_bytes // 4)
            and strings_within(chain.from_iterable(map(dict.values, present)), 0, limits.max_label_value_bytes // 4))


class Lines:
    """The lines of one request being built, by service in order of first appearance."""

    def __init__(self, limits: Limits, *, received_at: int, client_ip: str, node_id: str) -> None:
        self.limits = limits
        self._enrichment = (received_at, node_id, client_ip)
        self._by_service: dict[str, list[Any]] = {}
        self._newest: dict[str, int] = {}
        self._services: set[str] = set()  # services and levels known to keep their limits
        self._levels: set[str] = set()

    @staticmethod
    def _text_ok(text: Any, known: set[str], limit: int, non_empty: bool) -> bool:
        if text in known:
            return True
        if type(text) is not str or (non_empty and not text) or _utf8_len_over(text, limit):
            return False
        known.add(text)
        return True

    def add(self, labels: dict[str, str], stamps: Sequence[int], services: str | Sequence[str],
            levels: str | Sequence[str], messages: Sequence[str], metas: Sequence[Any] | None) -> bool:
        """Records sharing ``labels``: ``metas`` holds a dict or ``UNSET`` per record, or is None
        when none has metadata. False (nothing added) when the exact path must decide."""
        if not stamps:
            return True
        limits = self.limits
        if _check_labels(labels, limits) is not None:
            return False
        if min(stamps) < 0 or max(stamps) > MAX_TIMESTAMP:
            return False
        one_service = type(services) is str
        for text in ((services,) if one_service else set(services)):
            if not self._text_ok(text, self._services, limits.max_service_bytes, True):
                return False
        for text in ((levels,) if type(levels) is str else set(levels)):
            if not self._text_ok(text, self._levels, limits.max_level_bytes, False):
                return False
        n = len(stamps)
        raw = repeat(msgspec.Raw(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS)))
        received, node, ip = self._enrichment
        lines = list(map(_Line, stamps, repeat(services, n) if one_service else services,
                         repeat(levels, n) if type(levels) is str else levels, messages, raw,
                         repeat(UNSET) if metas is None else metas,
                         repeat(received), repeat(node), repeat(ip)))
        if one_service:
            self._put(services, lines, max(stamps))  # type: ignore[arg-type]
            return True
        buckets: dict[str, list[Any]] = {}
        for service, line in zip(services, lines, strict=True):
            bucket = buckets.get(service)
            if bucket is None:
                buckets[service] = [line]
            else:
                bucket.append(line)
        for service, bucket in buckets.items():
            self._put(service, bucket, max(map(_TIMESTAMP, bucket)))
        return True

    def _put(self, service: str, lines: list[Any], newest: int) -> None:
        out = self._by_service.get(service)
        if out is None:
            self._by_service[service] = lines
            self._newest[service] = newest
        else:
            out += lines
            if newest > self._newest[service]:
                self._newest[service] = newest

    def groups(self) -> dict[str, Group] | None:
        """Every service's lines encoded, or None when the exact path must decide."""
        return encode_groups(self._by_service, self.limits, self._newest)


def encode_groups(by_service: dict[str, list[Any]], limits: Limits,
                  newest: dict[str, int] | None = None) -> dict[str, Group] | None:
    """Each service's structs (any with a ``timestamp``, fields in stored-line order) encoded as one
    newline-terminated blob, or None when the exact path must decide (a lone surrogate, a line
    at the size limit). ``newest`` gives each service's newest timestamp when the caller knows it."""
    limit = limits.max_record_bytes  # the exact path stores lines shorter than this
    groups: dict[str, Group] = {}
    for service, recs in by_service.items():
        try:
            data = _ENCODER.encode_lines(recs)
        except UnicodeEncodeError:  # a lone surrogate: the exact path names it
            return None
        if len(data) >= limit and max(map(len, data.split(b"\n"))) >= limit:
            return None
        groups[service] = Group(data, len(recs), max(map(_TIMESTAMP, recs)) if newest is None else newest[service])
    return groups
