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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


def _text(v: Any) -> str:
    return v if type(v) is str else orjson.dumps(v).decode()


def _shape_entries(docs: list[dict[str, Any]], fields: list[dict[str, Any]], index: str, ids: list[str],
                   received_ms: int) -> list[tuple[Any, ...]]:
    """Entries (timestamp, service, level, message, metadata) of documents of one flattened shape."""
    ts_key, msg_key, svc_key, lvl_key = _roles(list(fields[0]))
    roles = {k for k in (ts_key, msg_key, svc_key, lvl_key) if k is not None}
    meta_keys = tuple(k for k in fields[0] if k not in roles)
    n = len(fields)
    if ts_key is None:
        stamps = [received_ms] * n
    else:  # an integer beyond 64 bits (a float to orjson) is out of range: the exact path decides
        raw = list(map(itemgetter(ts_key), fields))
        stamps = raw if set(map(type, raw)) == {int} else list(map(_timestamp_ms, raw))
    if msg_key is None:
        messages = [orjson.dumps(d).decode() for d in docs]
    else:
        messages = list(map(itemgetter(msg_key), fields))
        if set(map(type, messages)) != {str} or not min(map(len, messages)):
            raise _Unusual  # an unusable candidate is metadata, and the next one may win
    if svc_key is None:
        services = [index] * n
    else:
        services = list(map(itemgetter(svc_key), fields))
        if set(map(type, services)) != {str} or not min(map(len, services)):
            raise _Unusual
    if lvl_key is None:
        level_of = [""] * n
    else:
        raw_levels = list(map(itemgetter(lvl_key), fields))
        if set(map(type, raw_levels)) != {str}:
            raise _Unusual
        canonical = {v: levels.from_text(v) for v in set(raw_levels)}
        level_of = list(map(canonical.__getitem__, raw_levels))
    keys = (*meta_keys, "_id")
    if meta_keys:
        get = itemgetter(*meta_keys)
        values = map(get, fields) if len(meta_keys) > 1 else ((v,) for v in map(get, fields))
        metas = [dict(zip(keys, (*map(_text, vs), i), strict=True)) for vs, i in zip(values, ids, strict=True)]
    else:
        metas = [{"_id": i} for i in ids]
    return list(zip(stamps, services, level_of, messages, metas, strict=True))


def parse(body: bytes, default_index: str, received_ms: int, limits: Limits, *, client_ip: str,
          node_id: str) -> Bulk | None:
    """The body's items and encoded records, or None: then the exact path decides."""
    try:
        return _parse(body, default_index, received_ms, limits, client_ip, node_id)
    except (_Unusual, ValueError, TypeError, KeyError):
        return None


def _parse(body: bytes, default_index: str, received_ms: int, limits: Limits, client_ip: str, node_id: str,
           ) -> Bulk | None:
    values = _framed(body)
    out = Bulk()
    new_id = IdMaker()
    # Consecutive documents of one index share a label group, as the exact path groups them; within
    # a run, documents of one flattened shape share their role assignment.
    runs: list[tuple[str, list[int]]] = []
    for n in range(0, len(values), 2):
        action_obj, doc = values[n], values[n + 1]
        if type(action_obj) is not dict or len(action_obj) != 1 or type(doc) is not dict:
            raise _Unusual
        ((action, meta),) = action_obj.items()
        if action not in STORED_ACTIONS or type(meta) is not dict:
            raise _Unusual
        index = meta.get("_index") or default_index or DEFAULT_INDEX
        if type(index) is not str:
            raise _Unusual
        doc_id = meta.get("_id")
        if doc_id is not None and type(doc_id) is not str:
            raise _Unusual  # (an integer beyond 64 bits is a float to orjson, an int to msgspec)
        out.actions.append(action)
        out.indexes.append(index)
        out.ids.append(doc_id or new_id())
        if not runs or runs[-1][0] != index:
            runs.append((index, []))
        runs[-1][1].append(n // 2)
    docs = values[1::2]
    batches: list[LabelGroup] = []
    for index, members in runs:
        flat = [flatten(docs[i]) for i in members]
        shapes: dict[tuple[str, ...], list[int]] = {}
        for pos, f in enumerate(flat):
            shapes.setdefault(tuple(f), []).append(pos)
        entries: list[Any] = [None] * len(members)
        for positions in shapes.values():
            made = _shape_entries([docs[members[p]] for p in positions], [flat[p] for p in positions], index,
                                  [out.ids[members[p]] for p in positions], received_ms)
            for p, e in zip(positions, made, strict=True):
                entries[p] = e
        batches.append(LabelGroup({"index": index, "source": SOURCE}, entries))
        out.services += [e[1] for e in entries]
    groups, refused = encode_groups(batches, limits, received_at=received_ms, client_ip=client_ip, node_id=node_id)
    if refused:
        return None
    out.groups = groups
    return out


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
