"""Bulk documents of one shape read as columns: the role pass once per shape, not per document.

``elastic.map_document`` flattens each document and assigns its fields to roles (timestamp,
message, service, level; every other field metadata). Documents of one shape (the same
flattened keys) share that assignment, so here it is made once per shape and each field is read
for all of them as one column (``itemgetter``), by path (``d["service"]["name"]`` for
``service.name``) when the documents nest alike, else from each one flattened.

Invariants:
- Same records as ``map_document`` for the documents it reads (``bulkbody``'s tests compare);
  ``Unusual`` for anything it does not read exactly that way: two candidates for one role, a
  candidate that is not usable (so that the next one would win), a field ``map_document`` refuses.
- Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import orjson

from zlog.ingest import levels
from zlog.ingest.elastic import _ROLES, _timestamp_ms, flatten
from zlog.ingest.records import Limits


class Unusual(Exception):
    """Outside the one-pass shapes: the caller takes the exact path."""


def _roles(keys: Sequence[str]) -> list[str | None]:
    """The winning key of each role for documents with these flattened keys: at most one candidate
    each (their usability is checked per document), else Unusual."""
    best: list[str | None] = [None, None, None, None]
    for k in keys:
        r = _ROLES.get(k)
        if r is not None:
            if best[r[0]] is not None:
                raise Unusual
            best[r[0]] = k
    return best


def _texts(column: list[Any]) -> list[str]:
    """Metadata values as text: strings as they are, anything else as its JSON."""
    if set(map(type, column)) == {str}:
        return column
    return [v if type(v) is str else orjson.dumps(v).decode() for v in column]


Column = Callable[[str], list[Any]]  # a flattened key -> its value in every document of a shape


def paths(docs: list[dict[str, Any]]) -> tuple[list[str], Column] | None:
    """The flattened keys of documents of one top-level shape, and their columns read by path
    (``d["service"]["name"]`` for ``service.name``), when every document nests alike, one level
    deep and never empty; None when they do not (then each document is flattened)."""
    columns: dict[str, list[Any]] = {}
    for k, v in docs[0].items():
        column = list(map(itemgetter(k), docs))
        if type(v) is not dict:
            if dict in set(map(type, column)) or k in columns:
                return None
            columns[k] = column
            continue
        inner = list(map(tuple, column)) if set(map(type, column)) == {dict} else None
        if not v or inner is None or inner.count(inner[0]) != len(inner) \
                or dict in set(map(type, chain.from_iterable(map(dict.values, column)))):
            return None
        for k2 in v:
            name = f"{k}.{k2}"
            if name in columns:  # a dotted key and a nested one that flatten to the same name
                return None
            columns[name] = list(map(itemgetter(k2), column))
    return list(columns), columns.__getitem__


@dataclass(slots=True)
class Columns:
    """The records of documents of one flattened shape, a column per field."""

    stamps: list[int]
    services: list[str]
    levels: list[str]
    messages: list[str]
    metas: list[dict[str, str]]
    names: tuple[str, ...]  # the metadata keys, "_id" last
    values: list[list[str]]  # the metadata values, a column per key, "_id" last

    def entries(self) -> list[tuple[Any, ...]]:
        return list(zip(self.stamps, self.services, self.levels, self.messages, self.metas, strict=True))

    def within(self, limits: Limits) -> bool:
        """The bounds ``lines.Lines`` leaves to its caller: messages, metadata keys and values
        within a quarter of their byte limits in characters."""
        key_fast, value_fast = limits.max_label_key_bytes // 4, limits.max_label_value_bytes // 4
        return (max(map(len, self.messages)) <= limits.max_message_bytes // 4
                and len(set(self.names)) <= limits.max_labels and all(1 <= len(k) <= key_fast for k in self.names)
                and all(max(map(len, c)) <= value_fast for c in self.values))


def shape_columns(docs: list[dict[str, Any]], keys: list[str], column: Column, index: str, ids: list[str],
                   received_ms: int) -> Columns:
    """The records (timestamp, service, level, message, metadata) of documents of one flattened shape."""
    ts_key, msg_key, svc_key, lvl_key = _roles(keys)
    roles = {k for k in (ts_key, msg_key, svc_key, lvl_key) if k is not None}
    meta_keys = tuple(k for k in keys if k not in roles)
    n = len(docs)
    if ts_key is None:
        stamps = [received_ms] * n
    else:  # an integer beyond 64 bits (a float to orjson) is out of range: the exact path decides
        raw = column(ts_key)
        stamps = raw if set(map(type, raw)) == {int} else list(map(_timestamp_ms, raw))
    if msg_key is None:
        messages = [orjson.dumps(d).decode() for d in docs]
    else:
        messages = column(msg_key)
        if set(map(type, messages)) != {str} or not min(map(len, messages)):
            raise Unusual  # an unusable candidate is metadata, and the next one may win
    if svc_key is None:
        services = [index] * n
    else:
        services = column(svc_key)
        if set(map(type, services)) != {str} or not min(map(len, services)):
            raise Unusual
    if lvl_key is None:
        level_of = [""] * n
    else:
        raw_levels = column(lvl_key)
        if set(map(type, raw_levels)) != {str}:
            raise Unusual
        canonical = {v: levels.from_text(v) for v in set(raw_levels)}
        level_of = list(map(canonical.__getitem__, raw_levels))
    names = (*meta_keys, "_id")
    values = [*(_texts(column(k)) for k in meta_keys), ids]
    metas = list(map(dict, map(zip, repeat(names), zip(*values))))
    return Columns(stamps, services, level_of, messages, metas, names, values)


def run_entries(docs: list[dict[str, Any]], index: str, ids: list[str], received_ms: int) -> list[Any]:
    """Entries of a run of documents of one index, in order: documents of one top-level shape are
    read by path, others flattened one by one and grouped by flattened shape."""
    tops = list(map(tuple, docs))
    by_shape: dict[tuple[str, ...], list[int]]
    if tops.count(tops[0]) == len(tops):
        by_shape = {tops[0]: list(range(len(docs)))}
    else:
        by_shape = {}
        for pos, top in enumerate(tops):
            by_shape.setdefault(top, []).append(pos)
    entries: list[Any] = [None] * len(docs)
    for positions in by_shape.values():
        group = [docs[p] for p in positions] if len(positions) < len(docs) else docs
        group_ids = [ids[p] for p in positions] if len(positions) < len(docs) else ids
        read = paths(group)
        made: list[Any]
        if read is not None:
            made = shape_columns(group, read[0], read[1], index, group_ids, received_ms).entries()
        else:
            made = [None] * len(group)
            flat = [flatten(d) for d in group]
            shapes: dict[tuple[str, ...], list[int]] = {}
            for pos, f in enumerate(flat):
                shapes.setdefault(tuple(f), []).append(pos)
            for sub in shapes.values():
                fields = [flat[p] for p in sub]
                keys = list(fields[0])
                got = shape_columns([group[p] for p in sub], keys,
                                     lambda k, fields=fields: list(map(itemgetter(k), fields)),  # type: ignore[misc]
                                     index, [group_ids[p] for p in sub], received_ms).entries()
                for p, e in zip(sub, got, strict=True):
                    made[p] = e
        if len(positions) == len(docs):
            return made
        for p, e in zip(positions, made, strict=True):
            entries[p] = e
    return entries
