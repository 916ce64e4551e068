"""An Elasticsearch bulk body's common case in one pass: every item an index/create of a document.

The exact path (``elastic.parse_bulk``) splits the body, parses each line with orjson, builds an
``Item`` and a record dict per document, and the answer is built item by item. Here the body's
lines are parsed by one msgspec ``decode_lines`` call, documents of one shape (the same
flattened keys) share their role assignment (``elastic``'s rules: timestamp, message, service,
level, the rest metadata), which is read with ``itemgetter`` columns, and the items are kept as
columns (action, index, id, service) that the answer is spliced from.

Invariants:
- Same answer or none: for every body it takes, the records, ids and answer are the exact path's
  (tests compare both); it returns None, and the caller takes the exact path, for anything else:
  a framing it does not check line by line (a blank line, a line not ``{...}``, ``\\r``), a
  delete or update, a source that is not an object, two candidates for one role or one that is
  not usable, a field the exact path would refuse, a record the record rules refuse.
- The one difference of the two JSON parsers, an integer beyond 64 bits (orjson reads a float,
  msgspec an int), never reaches a record: orjson refuses to write such an int (metadata text,
  a whole document as its message), a timestamp that large is out of range, an ``_id`` other
  than a string goes the exact way; each of these returns None.
- Pure: the id maker's randomness and the clock are the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import msgspec
import orjson

from zlog.ingest import levels
from zlog.ingest.elastic import (
    _CREATED,
    _ROLES,
    DEFAULT_INDEX,
    SOURCE,
    STORED_ACTIONS,
    IdMaker,
    Item,
    _timestamp_ms,
    flatten,
)
from zlog.ingest.lines import Lines
from zlog.ingest.records import Group, Limits
from zlog.ingest.streams import LabelGroup, encode_groups

_LINES = msgspec.json.Decoder()


class _Unusual(Exception):
    """Outside the one-pass shapes: the caller takes the exact path."""


@dataclass(slots=True)
class Bulk:
    """The items of a bulk body, as columns, and their records encoded by service."""

    actions: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    groups: dict[str, Group] = field(default_factory=dict)


def _framed(body: bytes) -> list[Any]:
    """The body's values, one per line, when every line is one ``{...}`` object; else _Unusual."""
    data = body if body.endswith(b"\n") else body + b"\n"
    n = data.count(b"\n")
    # Every line starts with "{" and ends with "}": a value cannot then continue past a newline (after
    # a "}" only ",", "}" or "]" may follow inside a value), so n values are exactly one per line.
    if not data.startswith(b"{") or data.count(b"}\n") != n or data.count(b"\n{") != n - 1:
        raise _Unusual
    try:
        values: list[Any] = _LINES.decode_lines(data)
    except msgspec.DecodeError:
        raise _Unusual from None
    if len(values) != n or n % 2:
        raise _Unusual
    return values


def _roles(keys: Sequence[str]) -> list[str | None]:
    """The winning key of each role for documents with these flattened keys: at most one candidate
    each (their usability is checked per document), else _Unusual."""
    best: list[str | None] = [None, None, None, None]
    for k in keys:
        r = _ROLES.get(k)
        if r is not None:
            if best[r[0]] is not None:
                raise _Unusual
            best[r[0]] = k
    return best


def _texts(column: list[Any]) -> list[str]:
    """Metadata values as text: strings as they are, anything else as its JSON."""
    if set(map(type, column)) == {str}:
        return column
    return [v if type(v) is str else orjson.dumps(v).decode() for v in column]


Column = Callable[[str], list[Any]]  # a flattened key -> its value in every document of a shape


def _paths(docs: list[dict[str, Any]]) -> tuple[list[str], Column] | None:
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
class _Columns:
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


def _shape_columns(docs: list[dict[str, Any]], keys: list[str], column: Column, index: str, ids: list[str],
                   received_ms: int) -> _Columns:
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
            raise _Unusual  # an unusable candidate is metadata, and the next one may win
    if svc_key is None:
        services = [index] * n
    else:
        services = column(svc_key)
        if set(map(type, services)) != {str} or not min(map(len, services)):
            raise _Unusual
    if lvl_key is None:
        level_of = [""] * n
    else:
        raw_levels = column(lvl_key)
        if set(map(type, raw_levels)) != {str}:
            raise _Unusual
        canonical = {v: levels.from_text(v) for v in set(raw_levels)}
        level_of = list(map(canonical.__getitem__, raw_levels))
    names = (*meta_keys, "_id")
    values = [*(_texts(column(k)) for k in meta_keys), ids]
    metas = list(map(dict, map(zip, repeat(names), zip(*values))))
    return _Columns(stamps, services, level_of, messages, metas, names, values)


def _run_entries(docs: list[dict[str, Any]], index: str, ids: list[str], received_ms: int) -> list[Any]:
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
        read = _paths(group)
        made: list[Any]
        if read is not None:
            made = _shape_columns(group, read[0], read[1], index, group_ids, received_ms).entries()
        else:
            made = [None] * len(group)
            flat = [flatten(d) for d in group]
            shapes: dict[tuple[str, ...], list[int]] = {}
            for pos, f in enumerate(flat):
                shapes.setdefault(tuple(f), []).append(pos)
            for sub in shapes.values():
                fields = [flat[p] for p in sub]
                keys = list(fields[0])
                got = _shape_columns([group[p] for p in sub], keys,
                                     lambda k, fields=fields: list(map(itemgetter(k), fields)),  # type: ignore[misc]
                                     index, [group_ids[p] for p in sub], received_ms).entries()
                for p, e in zip(sub, got, strict=True):
                    made[p] = e
        if len(positions) == len(docs):
            return made
        for p, e in zip(positions, made, strict=True):
            entries[p] = e
    return entries


def parse(body: bytes, default_index: str, received_ms: int, limits: Limits, *, client_ip: str,
          node_id: str) -> Bulk | None:
    """The body's items and encoded records, or None: then the exact path decides."""
    try:
        return _parse(body, default_index, received_ms, limits, client_ip, node_id)
    except (_Unusual, ValueError, TypeError, KeyError):
        return None


def _action(action_obj: Any, default_index: str) -> tuple[str, str, str | None]:
    """(action, index, given id or None) of an index/create action line, else _Unusual."""
    if type(action_obj) is not dict or len(action_obj) != 1:
        raise _Unusual
    ((action, meta),) = action_obj.items()
    if action not in STORED_ACTIONS or type(meta) is not dict:
        raise _Unusual
    index = meta.get("_index") or default_index or DEFAULT_INDEX
    doc_id = meta.get("_id")
    if type(index) is not str or (doc_id is not None and type(doc_id) is not str):
        raise _Unusual  # (an integer beyond 64 bits is a float to orjson, an int to msgspec)
    return action, index, doc_id or None


def _parse(body: bytes, default_index: str, received_ms: int, limits: Limits, client_ip: str, node_id: str,
           ) -> Bulk | None:
    values = _framed(body)
    actions, docs = values[0::2], values[1::2]
    n = len(docs)
    if set(map(type, docs)) != {dict}:
        raise _Unusual
    out = Bulk()
    new_id = IdMaker()
    # Consecutive documents of one index share a label group, as the exact path groups them.
    runs: list[tuple[str, list[int]]] = []
    if actions.count(actions[0]) == n:  # one action line for all, as shippers send them
        action, index, doc_id = _action(actions[0], default_index)
        out.actions, out.indexes = [action] * n, [index] * n
        out.ids = [doc_id] * n if doc_id else new_id.take(n)
        runs.append((index, list(range(n))))
    else:
        for i, a in enumerate(actions):
            action, index, doc_id = _action(a, default_index)
            out.actions.append(action)
            out.indexes.append(index)
            out.ids.append(doc_id or new_id())
            if not runs or runs[-1][0] != index:
                runs.append((index, []))
            runs[-1][1].append(i)
    picked = [(index, docs if len(members) == n else [docs[i] for i in members],
               out.ids if len(members) == n else [out.ids[i] for i in members]) for index, members in runs]
    direct = _direct(picked, limits, received_ms, client_ip, node_id)
    if direct is not None:
        out.groups, out.services = direct
        return out
    batches: list[LabelGroup] = []
    for index, run_docs, run_ids in picked:
        entries = _run_entries(run_docs, index, run_ids, received_ms)
        batches.append(LabelGroup({"index": index, "source": SOURCE}, entries))
        out.services += [e[1] for e in entries]
    groups, refused = encode_groups(batches, limits, received_at=received_ms, client_ip=client_ip, node_id=node_id)
    if refused:
        return None
    out.groups = groups
    return out


def _direct(runs: list[tuple[str, list[dict[str, Any]], list[str]]], limits: Limits, received_ms: int, client_ip: str,
            node_id: str) -> tuple[dict[str, Group], list[str]] | None:
    """When every run is of one shape read by path (the common body), its columns go straight to
    ``lines.Lines``: (groups, each item's service); None otherwise (then entry by entry)."""
    planned: list[tuple[str, _Columns]] = []
    for index, docs, ids in runs:
        tops = list(map(tuple, docs))
        read = _paths(docs) if tops.count(tops[0]) == len(tops) else None
        if read is None:
            return None
        columns = _shape_columns(docs, read[0], read[1], index, ids, received_ms)
        if not columns.within(limits):
            return None
        planned.append((index, columns))
    out = Lines(limits, received_at=received_ms, client_ip=client_ip, node_id=node_id)
    services: list[str] = []
    for index, c in planned:
        one = c.services[0]
        if not out.add({"index": index, "source": SOURCE}, c.stamps, one if c.services.count(one) == len(c.services)
                       else c.services, c.levels, c.messages, c.metas):
            raise _Unusual
        services += c.services
    groups = out.groups()
    if groups is None:
        raise _Unusual
    return groups, services


def seq_numbers(services: Sequence[str | None], offsets: Mapping[str, int | None]) -> list[int]:
    """Each item's ``_seq_no``: its service's first offset plus its rank among that service's
    items; -1 for an item not stored (no service, or its service failed) or an unknown offset."""
    seen: dict[str, int] = {}
    out: list[int] = []
    for service in services:
        first = -1 if service is None else offsets[service]
        if first is None or service is None:
            out.append(-1)
            continue
        k = seen[service] = seen.get(service, -1) + 1
        out.append(first + k if first >= 0 else -1)
    return out


def answer(took: int, bulk: Bulk, seq_nos: list[int]) -> bytes | None:
    """The answer when every item was stored, spliced as ``elastic.response`` splices a created
    item; None when an id needs escaping (then ``elastic.response`` answers)."""
    heads: dict[tuple[str, str], bytes] = {}
    parts = [b'{"took":', str(took).encode(), b',"errors":false,"items":[']
    for n, (action, index, doc_id, seq) in enumerate(zip(bulk.actions, bulk.indexes, bulk.ids, seq_nos, strict=True)):
        if not doc_id.isascii() or '"' in doc_id or "\\" in doc_id:
            return None
        head = heads.get((action, index))
        if head is None:
            head = heads[(action, index)] = b'{"' + action.encode() + b'":{"_index":' + orjson.dumps(index) + b',"_id":"'
        parts += (b"," if n else b"", head, doc_id.encode(), _CREATED, str(seq).encode(),
                  b',"_primary_term":1,"status":201}}')
    parts.append(b"]}")
    return b"".join(parts)


def items(bulk: Bulk) -> list[Item]:
    """The items as ``elastic.Item`` objects, for the item-by-item answer."""
    return [Item(a, i, d) for a, i, d in zip(bulk.actions, bulk.indexes, bulk.ids, strict=True)]
