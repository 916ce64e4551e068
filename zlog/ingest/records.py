"""Log records: parse request bodies, validate, enrich, and encode stored JSON lines.

A stored line is the enriched record in the original project's field order:
``timestamp, service, level, message, labels, received_at, ingested_node_id, client_ip``; a
record that arrives with structured metadata (Loki's third element, OTLP attributes, the rest of
an Elasticsearch document) also has ``metadata``, a second flat map of strings, after ``labels``.

Invariants:
- Pure: no sockets, files or clocks; ``received_at`` and the peer address are arguments.
- All or nothing: ``encode_batch`` either returns every record of the request encoded, or raises
  ``InvalidBatch`` naming the offending records; there is no partial result to store.
- An encoded line is one JSON object, valid UTF-8, with no raw newline (JSON escapes them), of
  at most ``max_record_bytes`` bytes.
- Unknown input keys are ignored (the original's behaviour); labels are stored sorted by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from zlog.config import GatewayConfig, StorageConfig
from zlog.protocol.errors import ZlogError

FIELD_ORDER = (
    "timestamp",
    "service",
    "level",
    "message",
    "labels",
    "received_at",
    "ingested_node_id",
    "client_ip",
)
MAX_TIMESTAMP = (1 << 63) - 1
MAX_REPORTED_ERRORS = 10
_GATEWAY, _STORAGE = GatewayConfig(), StorageConfig()  # the defaults of Limits

NDJSON_TYPES = frozenset(("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"))


@dataclass(frozen=True, slots=True)
class Limits:
    """The record bounds a checker enforces; the defaults are the config's (one source of truth)."""

    max_records: int = _GATEWAY.max_records
    max_service_bytes: int = _GATEWAY.max_service_bytes
    max_level_bytes: int = _GATEWAY.max_level_bytes
    max_message_bytes: int = _GATEWAY.max_message_bytes
    max_labels: int = _GATEWAY.max_labels
    max_label_key_bytes: int = _GATEWAY.max_label_key_bytes
    max_label_value_bytes: int = _GATEWAY.max_label_value_bytes
    max_record_bytes: int = _STORAGE.max_record_bytes

    @classmethod
    def from_config(cls, gateway: GatewayConfig, storage: StorageConfig) -> Limits:
        return cls(
            gateway.max_records,
            gateway.max_service_bytes,
            gateway.max_level_bytes,
            gateway.max_message_bytes,
            gateway.max_labels,
            gateway.max_label_key_bytes,
            gateway.max_label_value_bytes,
            storage.max_record_bytes,
        )


@dataclass(frozen=True, slots=True)
class RecordError:
    index: int
    field: str
    problem: str

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "problem": self.problem}


class InvalidBatch(ZlogError):
    """The request is rejected whole; ``errors`` names the first few offending records."""

    def __init__(self, message: str, errors: Sequence[RecordError] = (), invalid_count: int = 0) -> None:
        super().__init__("INVALID_RECORD", message)
        self.errors = list(errors)
        self.invalid_count = invalid_count

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        if self.errors:
            out["invalid_records"] = self.invalid_count
            out["errors"] = [e.to_json() for e in self.errors]
        return out


@dataclass(slots=True)
class Group:
    """The encoded records of one service, in request order, as they travel and are stored: each
    line followed by a newline, ``count`` lines in ``data`` (one blob, so no hop handles records
    one by one)."""

    data: bytes = b""
    count: int = 0
    max_timestamp: int = 0

    @classmethod
    def of_lines(cls, lines: Sequence[bytes], max_timestamp: int) -> Group:
        return cls(b"\n".join([*lines, b""]) if lines else b"", len(lines), max_timestamp)

    @property
    def lines(self) -> tuple[bytes, ...]:
        """The lines, split from ``data``: a tuple, so code that tries to append to it fails loudly
        instead of changing a copy (``add`` appends another group; ``of_lines`` builds one)."""
        return tuple(self.data.split(b"\n")[:-1])

    def add(self, other: Group) -> None:
        """Append ``other``'s records after this group's."""
        self.data += other.data
        self.count += other.count
        self.max_timestamp = max(self.max_timestamp, other.max_timestamp)


def parse_body(body: bytes, content_type: str) -> list[Any]:
    """Decode a JSON array, or NDJSON (one object per line), into a list of values."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in NDJSON_TYPES:
        items: list[Any] = []
        for n, raw in enumerate(body.split(b"\n")):
            if raw.strip():
                try:
                    items.append(orjson.loads(raw))
                except orjson.JSONDecodeError as exc:
                    raise InvalidBatch(f"invalid JSON on NDJSON line {n + 1}: {exc}") from None
        if not items:
            raise InvalidBatch("the body holds no records")
        return items
    # Any other content type is read as JSON, as the original did (curl -d sends form encoding).
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBatch(f"invalid JSON: {exc}") from None
    if value is None:
        raise InvalidBatch("the body is null; expected a JSON array of records")
    if isinstance(value, dict):
        value = [value]  # a single record is accepted for convenience
    if not isinstance(value, list):
        raise InvalidBatch("expected a JSON array of records")
    if not value:
        raise InvalidBatch("the array is empty")
    return value


def _utf8_len_over(text: str, limit: int) -> bool:
    # len(str) <= UTF-8 length <= 4 * len(str): encode only when the cheap bounds can't decide.
    n = len(text)
    if n > limit:
        return True
    if n * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def _check_labels(labels: Any, limits: Limits) -> str | None:
    if not isinstance(labels, dict):
        return "must be an object of string values"
    if len(labels) > limits.max_labels:
        return f"at most {limits.max_labels} labels"
    for k, v in labels.items():
        if not isinstance(v, str):
            return f"label {k[:64]!r} must be a string"
        if not k or _utf8_len_over(k, limits.max_label_key_bytes):
            return f"label names must be 1..{limits.max_label_key_bytes} bytes"
        if _utf8_len_over(v, limits.max_label_value_bytes):
            return f"label {k[:64]!r} value exceeds {limits.max_label_value_bytes} bytes"
    return None


def _problem(r: Any, limits: Limits, with_metadata: bool = False) -> tuple[str, str]:
    """Why a record is invalid: (field, problem). The slow path, run only for rejected records."""
    return record_problem(r, limits, with_metadata) or ("", "contains text that is not valid UTF-8")


def record_problem(r: Any, limits: Limits, with_metadata: bool = False) -> tuple[str, str] | None:
    """Why a decoded record breaks the record rules, as (field, problem); None when it keeps them.

    The one rule set: HTTP bodies (here), intake formats and the storage worker's check of
    records from the wire (``zlog.ingest.stored``) all ask this."""
    if type(r) is not dict:
        return "", "each record must be a JSON object"
    service, message = r.get("service"), r.get("message")
    ts, level, labels = r.get("timestamp") or 0, r.get("level", ""), r.get("labels")
    if type(service) is not str or not service:
        return "service", "required, a non-empty string"
    if _utf8_len_over(service, limits.max_service_bytes):
        return "service", f"longer than {limits.max_service_bytes} bytes"
    if type(message) is not str or not message:
        return "message", "required, a non-empty string"
    if _utf8_len_over(message, limits.max_message_bytes):
        return "message", f"longer than {limits.max_message_bytes} bytes"
    if type(ts) is not int or ts < 0 or ts > MAX_TIMESTAMP:
        return "timestamp", "must be a non-negative integer of unix milliseconds"
    if type(level) is not str:
        return "level", "must be a string"
    if _utf8_len_over(level, limits.max_level_bytes):
        return "level", f"longer than {limits.max_level_bytes} bytes"
    if labels is not None:
        bad = _check_labels(labels, limits)
        if bad:
            return "labels", bad
    meta = r.get("metadata") if with_metadata else None
    if meta is not None:
        bad = _check_labels(meta, limits)
        if bad:
            return "metadata", bad
    return None


def enrichment(received_at: int, node_id: str, client_ip: str) -> bytes:
    """What follows ``"received_at":`` in every stored line: its value and the two other
    enrichment fields, ``1795675987238,"ingested_node_id":"...","client_ip":"..."``."""
    return b"%d" % received_at + b',"ingested_node_id":' + orjson.dumps(node_id) + b',"client_ip":' + orjson.dumps(client_ip)


def encode_batch(
    items: list[Any],
    limits: Limits,
    *,
    received_at: int,
    client_ip: str,
    node_id: str,
    with_metadata: bool = False,
) -> dict[str, Group]:
    """Validate and encode every record; group the lines by service. All or nothing.

    ``with_metadata``: keep a record's ``metadata`` map (the intake APIs); /v1/logs bodies leave it
    off, so there, as any unknown key, it is ignored."""
    if len(items) > limits.max_records:
        raise InvalidBatch(f"too many records: {len(items)} > {limits.max_records}")
    suffix = b',"received_at":' + enrichment(received_at, node_id, client_ip) + b"}"
    max_line = limits.max_record_bytes - len(suffix)
    # A string of n characters has at most 4n UTF-8 bytes: below these lengths no byte count is needed.
    svc_lim, msg_lim, lvl_lim = limits.max_service_bytes, limits.max_message_bytes, limits.max_level_bytes
    svc_fast, msg_fast, lvl_fast = svc_lim // 4, msg_lim // 4, lvl_lim // 4
    groups: dict[str, tuple[list[bytes], list[int]]] = {}  # service -> (lines, [max timestamp])
    errors: list[RecordError] = []
    invalid = 0
    dumps = orjson.dumps
    empty: dict[str, str] = {}
    for i, r in enumerate(items):
        # The common case in one expression; anything unusual goes to the slow, exact path.
        if type(r) is dict:
            service = r.get("service")
            message = r.get("message")
            ts = r.get("timestamp")
            if ts is None:  # missing or null: the time it was received
                ts = received_at
            level = r.get("level", "")
            labels = r.get("labels")
            if (
                type(service) is str
                and service
                and (len(service) <= svc_fast or not _utf8_len_over(service, svc_lim))
                and type(message) is str
                and message
                and (len(message) <= msg_fast or not _utf8_len_over(message, msg_lim))
                and type(ts) is int
                and 0 <= ts <= MAX_TIMESTAMP
                and type(level) is str
                and (len(level) <= lvl_fast or not _utf8_len_over(level, lvl_lim))
            ):
                if labels is None:
                    labels = empty
                elif _check_labels(labels, limits) is not None:
                    labels = None
                elif len(labels) > 1:
                    labels = dict(sorted(labels.items()))
                meta = r.get("metadata") if with_metadata else None
                if meta is not None and labels is not None:
                    # Structured metadata (Loki's, OTLP attributes): a second flat map, same limits.
                    labels = None if _check_labels(meta, limits) is not None else labels
                if labels is not None:
                    try:
                        if meta is None:
                            line = dumps({"timestamp": ts, "service": service, "level": level, "message": message,
                                          "labels": labels})
                        else:
                            line = dumps({"timestamp": ts, "service": service, "level": level, "message": message,
                                          "labels": labels, "metadata": dict(sorted(meta.items()))})
                    except orjson.JSONEncodeError:
                        pass
                    else:
                        if len(line) <= max_line:
                            g = groups.get(service)
                            if g is None:
                                g = groups[service] = ([], [ts])
                            g[0].append(line[:-1] + suffix)
                            if ts > g[1][0]:
                                g[1][0] = ts
                            continue
                        invalid += 1
                        if len(errors) < MAX_REPORTED_ERRORS:
                            errors.append(RecordError(i, "", f"encoded record exceeds {limits.max_record_bytes} bytes"))
                        continue
        invalid += 1
        if len(errors) < MAX_REPORTED_ERRORS:
            errors.append(RecordError(i, *_problem(r, limits, with_metadata)))
    if invalid:
        raise InvalidBatch(f"{invalid} of {len(items)} records are invalid; nothing was stored", errors, invalid)
    return {service: Group.of_lines(lines, ts[0]) for service, (lines, ts) in groups.items()}


def encode_one(record: dict[str, Any], limits: Limits, *, received_at: int, client_ip: str, node_id: str) -> tuple[str, bytes, int]:
    """Validate and encode a single record: (service, line, timestamp)."""
    groups = encode_batch([record], limits, received_at=received_at, client_ip=client_ip, node_id=node_id)
    ((service, group),) = groups.items()
    return service, group.lines[0], group.max_timestamp
