"""An Elasticsearch bulk body's common case in one pass: every item an index/create of a document.

The exact path (``elastic.parse_bulk``) splits the body, parses each line with orjson, builds an
``Item`` and a record dict per document, and the answer is built item by item. Here the body's
lines are parsed by one msgspec ``decode_lines`` call, documents of one shape (the same
flattened keys) share their role assignment and are read as columns (``bulkshape``), the records
go to ``lines.Lines`` a column at a time, and the items are kept as columns (action, index, id,
service) that the answer is spliced from.

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
from typing import Any

import msgspec
import orjson

from zlog.ingest.bulkshape import Columns, Unusual, paths, run_entries, shape_columns
from zlog.ingest.elastic import (
    _CREATED,
    DEFAULT_INDEX,
    SOURCE,
    STORED_ACTIONS,
    IdMaker,
    Item,
)
from zlog.ingest.lines import Lines
from zlog.ingest.records import Group, Limits
from zlog.ingest.streams import LabelGroup, encode_groups

_LINES = msgspec.json.Decoder()


@dataclass(slots=True)
class Bulk:
    """The items of a bulk body, as columns, and their records encoded by service."""

    actions: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    groups: dict[str, Group] = field(default_factory=dict)


def _framed(body: bytes) -> list[Any]:
    """The body's values, one per line, when every line is one ``{...}`` object; else Unusual."""
    data = body if body.endswith(b"\n") else body + b"\n"
    n = data.count(b"\n")
    # Every line starts with "{" and ends with "}": a value cannot then continue past a newline (after
    # a "}" only ",", "}" or "]" may follow inside a value), so n values are exactly one per line.
    if not data.startswith(b"{") or data.count(b"}\n") != n or data.count(b"\n{") != n - 1:
        raise Unusual
    try:
        values: list[Any] = _LINES.decode_lines(data)
    except msgspec.DecodeError:
        raise Unusual from None
    if len(values) != n or n % 2:
        raise Unusual
    return values


def parse(body: bytes, default_index: str, received_ms: int, limits: Limits, *, client_ip: str,
          node_id: str) -> Bulk | None:
    """The body's items and encoded records, or None: then the exact path decides."""
    try:
        return _parse(body, default_index, received_ms, limits, client_ip, node_id)
    except (Unusual, ValueError, TypeError, KeyError):
        return None


def _action(action_obj: Any, default_index: str) -> tuple[str, str, str | None]:
    """(action, index, given id or None) of an index/create action line, else Unusual."""
    if type(action_obj) is not dict or len(action_obj) != 1:
        raise Unusual
    ((action, meta),) = action_obj.items()
    if action not in STORED_ACTIONS or type(meta) is not dict:
        raise Unusual
    index = meta.get("_index") or default_index or DEFAULT_INDEX
    doc_id = meta.get("_id")
    if type(index) is not str or (doc_id is not None and type(doc_id) is not str):
        raise Unusual  # (an integer beyond 64 bits is a float to orjson, an int to msgspec)
    return action, index, doc_id or None


def _parse(body: bytes, default_index: str, received_ms: int, limits: Limits, client_ip: str, node_id: str,
           ) -> Bulk | None:
    values = _framed(body)
    actions, docs = values[0::2], values[1::2]
    n = len(docs)
    if set(map(type, docs)) != {dict}:
        raise Unusual
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
        entries = run_entries(run_docs, index, run_ids, received_ms)
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
    planned: list[tuple[str, Columns]] = []
    for index, docs, ids in runs:
        tops = list(map(tuple, docs))
        read = paths(docs) if tops.count(tops[0]) == len(tops) else None
        if read is None:
            return None
        columns = shape_columns(docs, read[0], read[1], index, ids, received_ms)
        if not columns.within(limits):
            return None
        planned.append((index, columns))
    out = Lines(limits, received_at=received_ms, client_ip=client_ip, node_id=node_id)
    services: list[str] = []
    for index, c in planned:
        one = c.services[0]
        if not out.add({"index": index, "source": SOURCE}, c.stamps, one if c.services.count(one) == len(c.services)
                       else c.services, c.levels, c.messages, c.metas):
            raise Unusual
        services += c.services
    groups = out.groups()
    if groups is None:
        raise Unusual
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
