"""OTLP/HTTP logs: ``ExportLogsServiceRequest`` (protobuf or JSON) to zlog records, and the answers.

Mapping, per log record:
- ``timestamp``: ``time_unix_nano``, else ``observed_time_unix_nano``, else the receive time;
  nanoseconds to milliseconds by integer division (a float would lose a millisecond).
- ``service``: the resource attribute ``service.name`` (``unknown_service`` without one, as the
  OpenTelemetry SDKs name it).
- ``level``: ``severity_text`` in zlog's canonical names (``WARNING`` -> ``WARN``), else the
  severity number's range (1-4 TRACE ... 21-24 FATAL), else ``""``.
- ``message``: the body; a non-string body as JSON.
- ``labels``: the resource attributes (low cardinality, like a Loki stream) + ``source="otlp"``.
- ``metadata``: the record's attributes, ``trace_id`` / ``span_id`` (hex), ``scope_name``,
  ``scope_version``, ``event_name``.

Invariants:
- Pure: bytes in, records out; the receive time is an argument.
- A body that is not a valid request raises ``OtlpError`` (HTTP 400, nothing stored). A record
  that cannot be mapped (severity number outside 0..24, empty body) is rejected alone and
  counted, with the reason, for ``partial_success``; the others are stored.
- In the JSON encoding 64-bit integers may be strings and trace/span ids are hex (the OTLP/JSON
  rules), which ``google.protobuf.json_format`` alone would read as base64: they are converted
  first, so both encodings go through one mapper.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from zlog.ingest import levels
from zlog.ingest.streams import LabelGroup
from zlog.protocol.errors import ZlogError

SOURCE = "otlp"
UNKNOWN_SERVICE = "unknown_service"
ExportLogsServiceRequest = logs_service_pb2.ExportLogsServiceRequest
ExportLogsServiceResponse = logs_service_pb2.ExportLogsServiceResponse


class OtlpError(ZlogError):
    """The request is not a valid ExportLogsServiceRequest: 400, nothing stored."""

    def __init__(self, message: str) -> None:
        super().__init__("INVALID_RECORD", message)


@dataclass(slots=True)
class Mapped:
    groups: list[LabelGroup] = field(default_factory=list)  # one per resource
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few, for error_message

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < 5 and reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def count(self) -> int:
        return sum(len(g.entries) for g in self.groups)


def decode_proto(body: bytes) -> Any:
    req = ExportLogsServiceRequest()
    try:
        req.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(f"the body is not a valid protobuf ExportLogsServiceRequest: {exc}") from None
    return req


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _hex_ids_to_base64(value: dict[str, Any]) -> None:
    """OTLP/JSON writes traceId/spanId as hex; json_format expects base64 for bytes fields."""
    for rl in _list(value.get("resourceLogs")):
        if not isinstance(rl, dict):
            continue
        for sl in _list(rl.get("scopeLogs") or rl.get("scope_logs")):
            if not isinstance(sl, dict):
                continue
            for lr in _list(sl.get("logRecords") or sl.get("log_records")):
                if not isinstance(lr, dict):
                    continue
                for key in ("traceId", "spanId", "trace_id", "span_id"):
                    ident = lr.get(key)
                    if isinstance(ident, str) and ident:
                        try:
                            lr[key] = base64.b64encode(bytes.fromhex(ident)).decode()
                        except ValueError:
                            raise OtlpError(f"{key} {ident[:40]!r} is not hex") from None


def decode_json(body: bytes) -> Any:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpError(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise OtlpError('expected a JSON object {"resourceLogs": [...]}')
    _hex_ids_to_base64(value)
    req = ExportLogsServiceRequest()
    try:
        json_format.ParseDict(value, req, ignore_unknown_fields=True)
    except Exception as exc:  # json_format raises ParseError, and TypeError/ValueError on odd shapes
        raise OtlpError(f"not an OTLP ExportLogsServiceRequest: {exc}") from None
    return req


def any_value(v: Any) -> Any:
    """An AnyValue as a plain JSON value."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def as_text(v: AnyValue) -> str:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return str(v.string_value)
    value = any_value(v)
    if kind is None:
        return ""
    return orjson.dumps(value).decode()


def attributes(kvs: Any) -> dict[str, str]:
    return {kv.key: as_text(kv.value) for kv in kvs}


def resource_group(res: dict[str, str]) -> tuple[str, LabelGroup]:
    """A resource's service (``service.name``) and the label group of its records."""
    labels = dict(res)
    labels.setdefault("source", SOURCE)
    return res.get("service.name") or UNKNOWN_SERVICE, LabelGroup(labels)


def record_meta(meta: dict[str, str], trace: bytes, span: bytes, scope_name: str, scope_version: str,
                event: str) -> dict[str, str] | None:
    """A log record's metadata: its attributes (``meta``, extended in place) and the fields kept
    beside them, in one order whichever mapping path read the record."""
    if trace:
        meta["trace_id"] = trace.hex()
    if span:
        meta["span_id"] = span.hex()
    if scope_name:
        meta["scope_name"] = scope_name
    if scope_version:
        meta["scope_version"] = scope_version
    if event:
        meta["event_name"] = event
    return meta or None


def to_records(req: Any, received_ns: int) -> Mapped:
    out = Mapped()
    from_number, from_text = levels.from_otlp_number, levels.from_text
    for rl in req.resource_logs:
        service, group = resource_group(attributes(rl.resource.attributes))
        append = group.entries.append
        for sl in rl.scope_logs:
            scope_name, scope_version = sl.scope.name, sl.scope.version
            for lr in sl.log_records:
                number = lr.severity_number
                if 0 <= number <= 24:
                    text = lr.severity_text
                    level = from_text(text) if text else from_number(number)
                else:
                    out.reject(f"severity number {number} is outside 0..24")
                    continue
                body = lr.body
                message = body.string_value if body.WhichOneof("value") == "string_value" else as_text(body)
                if not message:
                    out.reject("log record without a body")
                    continue
                ts = lr.time_unix_nano or lr.observed_time_unix_nano or received_ns
                meta = attributes(lr.attributes) if len(lr.attributes) else {}
                append((ts // 1_000_000, service, level, message,
                        record_meta(meta, lr.trace_id, lr.span_id, scope_name, scope_version, lr.event_name)))
        if group.entries:
            out.groups.append(group)
    return out


def response(rejected: int, reason: str, as_json: bool) -> bytes:
    """ExportLogsServiceResponse, with partial_success only when something was rejected."""
    resp = ExportLogsServiceResponse()
    if rejected:
        resp.partial_success.rejected_log_records = rejected
        resp.partial_success.error_message = reason
    if as_json:
        return json_format.MessageToJson(resp, indent=None).encode()
    data: bytes = resp.SerializeToString()
    return data


def status(code: int, message: str, as_json: bool) -> bytes:
    """A google.rpc.Status body (code, message), as OTLP/HTTP failures carry; encoded by hand, the
    message has two fields and needs no googleapis package."""
    if as_json:
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    out = bytearray(b"\x08")
    n = code
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    out.append(0x12)
    n = len(text)
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + text
