"""The Elasticsearch bulk API's body (NDJSON action + source lines) to zlog records, and its answers.

Mapping of a document (dotted keys and nested objects are the same field, as Elasticsearch
treats them: ``{"service": {"name": "a"}}`` is ``service.name``):
- ``timestamp``: ``@timestamp`` or ``timestamp``: RFC 3339 text (an offset is honoured; none
  means UTC, as Elasticsearch assumes) or epoch milliseconds; missing -> the receive time.
- ``message``: ``message``, else ``log``, else ``msg``; a document with none of them is stored
  whole, as JSON, so nothing of it is lost.
- ``service``: ``service.name``, else ``service`` (a string), else ``app``, else the index name.
- ``level``: ``log.level``, else ``level``, ``severity``, ``loglevel``, in zlog's canonical names.
- ``labels``: ``index`` (the target index) and ``source="elasticsearch"``.
- ``metadata``: every other field, flattened to dotted keys; arrays and non-strings as JSON text;
  ``_id``, the action's or the one generated for it (the id the answer reports).

Invariants:
- Pure: bytes in, items out; ids and the clock are arguments.
- A body that breaks the bulk framing (an action line that is not JSON or not one of
  index/create/update/delete, an action without its source line) raises ``BulkError`` and
  nothing is stored, as Elasticsearch refuses such a request whole. A document that cannot be
  mapped fails alone, answered in its own item, and the others are stored.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import orjson

from zlog.ingest import levels
from zlog.ingest.streams import LabelGroup
from zlog.ingest.timestamps import parse_rfc3339
from zlog.protocol.errors import ZlogError

SOURCE = "elasticsearch"
ACTIONS = frozenset(("index", "create", "update", "delete"))
STORED_ACTIONS = frozenset(("index", "create"))
_TIMESTAMP_KEYS = ("@timestamp", "timestamp")
_MESSAGE_KEYS = ("message", "log", "msg")
_SERVICE_KEYS = ("service.name", "service", "app")
_LEVEL_KEYS = ("log.level", "level", "severity", "loglevel")
DEFAULT_INDEX = "logs"


class BulkError(ZlogError):
    """The bulk body as a whole is malformed: 400 with Elasticsearch's error shape, nothing stored."""

    def __init__(self, reason: str, kind: str = "illegal_argument_exception") -> None:
        super().__init__("INVALID_RECORD", reason)
        self.kind = kind


@dataclass(slots=True)
class Item:
    """One action of the bulk body: what it asked for and, once mapped, its record or its error."""

    action: str
    index: str
    doc_id: str
    record: dict[str, Any] | None = None
    status: int = 0  # set for an item that fails before storage
    error_type: str = ""
    reason: str = ""


class IdMaker:
    """Elasticsearch-style 20-character ids: 12 random URL-safe characters per request, then the
    item's number (8 hex digits), so ids are unique without a random draw per item."""

    def __init__(self) -> None:
        self.prefix = base64.urlsafe_b64encode(os.urandom(9)).decode()
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.prefix}{self.n:08x}"

    def take(self, count: int) -> list[str]:
        """The next ``count`` ids, as ``count`` calls would give them."""
        prefix, start = self.prefix, self.n + 1
        self.n += count
        return [f"{prefix}{i:08x}" for i in range(start, self.n + 1)]


def flatten(doc: dict[str, Any]) -> dict[str, Any]:
    """Nested objects to dotted keys (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``). The first level of
    nesting is unrolled here (documents rarely go deeper), deeper levels recurse."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if type(v) is dict and v:
            for k2, v2 in v.items():
                if type(v2) is dict and v2:
                    _deeper(v2, k + "." + k2 + ".", out)
                else:
                    out[k + "." + k2] = v2
        else:
            out[k] = v
    return out


def _deeper(doc: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in doc.items():
        if type(v) is dict and v:
            _deeper(v, prefix + k + ".", out)
        else:
            out[prefix + k] = v


def _text(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _timestamp_ms(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError("a boolean is not a date")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str):
        if v.isdigit():
            return int(v)
        return parse_rfc3339(v, default_offset_s=0) // 1_000_000
    raise ValueError(f"cannot read a date from {type(v).__name__}")


_ROLES = {"@timestamp": (0, 0), "timestamp": (0, 1), "message": (1, 0), "log": (1, 1), "msg": (1, 2),
          "service.name": (2, 0), "service": (2, 1), "app": (2, 2),
          "log.level": (3, 0), "level": (3, 1), "severity": (3, 2), "loglevel": (3, 3)}


def map_document(doc: dict[str, Any], index: str, doc_id: str, received_ms: int,
                 labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A source document -> a /v1/logs record (with metadata). ValueError names a field it cannot read.

    One pass over the (flattened) fields: a field that can be a record field is kept as a
    candidate of its role (timestamp, message, service, level) with its rank; the best usable
    candidate of each role wins and every other field goes to metadata."""
    fields = flatten(doc)
    best: list[tuple[int, str] | None] = [None, None, None, None]
    roles = _ROLES
    meta: dict[str, str] = {}
    for k, v in fields.items():
        r = roles.get(k)
        if r is not None and (r[0] == 0 or (type(v) is str and (v or r[0] == 3))):
            role, rank = r
            cur = best[role]
            if cur is None or rank < cur[0]:
                if cur is not None:  # the one it displaces is an ordinary field after all
                    old = fields[cur[1]]
                    meta[cur[1]] = old if type(old) is str else orjson.dumps(old).decode()
                best[role] = (rank, k)
                continue
        meta[k] = v if type(v) is str else orjson.dumps(v).decode()
    ts = received_ms
    if best[0] is not None:
        k = best[0][1]
        try:
            ts = _timestamp_ms(fields[k])
        except ValueError as exc:
            raise ValueError(f"failed to parse field [{k}]: {exc}") from None
    message = fields[best[1][1]] if best[1] is not None else orjson.dumps(doc).decode()
    service = fields[best[2][1]] if best[2] is not None else index
    level = levels.from_text(fields[best[3][1]]) if best[3] is not None else ""
    if doc_id:
        meta["_id"] = doc_id
    rec: dict[str, Any] = {"timestamp": ts, "service": service, "level": level, "message": message,
                           "labels": labels if labels is not None else {"index": index, "source": SOURCE}}
    if meta:
        rec["metadata"] = meta
    return rec


def parse_bulk(body: bytes, default_index: str, received_ms: int) -> list[Item]:
    """Split and map a bulk body. Raises BulkError for a body Elasticsearch would refuse whole."""
    lines = body.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    items: list[Item] = []
    new_id = IdMaker()
    labels_of: dict[str, dict[str, str]] = {}  # one label map per index, shared by its records
    n = 0
    while n < len(lines):
        raw = lines[n]
        n += 1
        if not raw.strip():
            continue
        try:
            action_obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BulkError(f"Malformed action/metadata line [{n}]: {exc}", "x_content_parse_exception") from None
        if not isinstance(action_obj, dict) or len(action_obj) != 1:
            raise BulkError(f"Malformed action/metadata line [{n}], expected an object with one action",
                            "illegal_argument_exception")
        ((action, meta),) = action_obj.items()
        if action not in ACTIONS or not isinstance(meta, dict):
            raise BulkError(f"Malformed action/metadata line [{n}], expected one of [create, delete, index, "
                            f"update] but found [{str(action)[:40]}]")
        index = meta.get("_index") or default_index or DEFAULT_INDEX
        doc_id = meta.get("_id")
        doc_id = str(doc_id) if doc_id not in (None, "") else ""
        if not isinstance(index, str):
            raise BulkError(f"action/metadata line [{n}]: _index must be a string")
        item = Item(action, index, doc_id)
        items.append(item)
        if action == "delete":
            item.status, item.error_type = 400, "illegal_argument_exception"
            item.reason = "delete is not supported: zlog's logs are append-only"
            continue
        if n >= len(lines):
            raise BulkError(f"action/metadata line [{n}] ({action}) has no source line after it",
                            "action_request_validation_exception")
        source = lines[n]
        n += 1
        if action == "update":
            item.status, item.error_type = 400, "illegal_argument_exception"
            item.reason = "update is not supported: zlog's logs are append-only"
            continue
        if not item.doc_id:
            item.doc_id = new_id()
        try:
            doc = orjson.loads(source)
        except orjson.JSONDecodeError as exc:
            item.status, item.error_type = 400, "document_parsing_exception"
            item.reason = f"failed to parse the source on line [{n}]: {exc}"
            continue
        if not isinstance(doc, dict):
            item.status, item.error_type = 400, "document_parsing_exception"
            item.reason = f"the source on line [{n}] is not a JSON object"
            continue
        try:
            labels = labels_of.get(index)
            if labels is None:
                labels = labels_of[index] = {"index": index, "source": SOURCE}
            item.record = map_document(doc, index, item.doc_id, received_ms, labels)
        except ValueError as exc:
            item.status, item.error_type, item.reason = 400, "document_parsing_exception", str(exc)
    if not items:
        raise BulkError("Validation Failed: 1: no requests added;", "action_request_validation_exception")
    return items


def item_answer(item: Item, seq_no: int) -> dict[str, Any]:
    """One entry of ``items``, in Elasticsearch's shape."""
    body: dict[str, Any] = {"_index": item.index, "_id": item.doc_id or None, "status": item.status}
    if item.status in (200, 201):
        body.update(_version=1, result="created", _shards={"total": 1, "successful": 1, "failed": 0},
                    _seq_no=seq_no, _primary_term=1)
    else:
        body["error"] = {"type": item.error_type, "reason": item.reason, "index": item.index}
    return {item.action: body}


_CREATED = b'","_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":'


def response(took: int, items: list[Item], seq_nos: list[int]) -> bytes:
    """The bulk answer, bytes: the created items spliced from constant pieces (the same JSON as
    ``item_answer`` gives, which the failed ones still use), so an answer costs no dict per item."""
    parts = [b'{"took":', str(took).encode(), b',"errors":', b"true" if any(it.status >= 300 for it in items)
             else b"false", b',"items":[']
    index_json: dict[str, bytes] = {}
    for n, (it, seq) in enumerate(zip(items, seq_nos, strict=True)):
        if n:
            parts.append(b",")
        if it.status == 201 and it.doc_id.isascii() and '"' not in it.doc_id and "\\" not in it.doc_id:
            ij = index_json.get(it.index)
            if ij is None:
                ij = index_json[it.index] = orjson.dumps(it.index)
            parts += (b'{"', it.action.encode(), b'":{"_index":', ij, b',"_id":"', it.doc_id.encode(), _CREATED,
                      str(seq).encode(), b',"_primary_term":1,"status":201}}')
        else:
            parts.append(orjson.dumps(item_answer(it, seq)))
    parts.append(b"]}")
    return b"".join(parts)


def error_body(kind: str, reason: str, status: int) -> dict[str, Any]:
    """Elasticsearch's request-level error shape."""
    cause = {"type": kind, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def label_groups(items: list[Item]) -> list[LabelGroup]:
    """The mapped items' records as label groups: consecutive items of one index share theirs."""
    groups: list[LabelGroup] = []
    for it in items:
        rec = it.record
        if rec is None:
            continue
        if not groups or groups[-1].labels["index"] != it.index:
            groups.append(LabelGroup(rec["labels"]))
        groups[-1].entries.append((rec["timestamp"], rec["service"], rec["level"], rec["message"],
                                   rec.get("metadata")))
    return groups
