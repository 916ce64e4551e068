"""OTLP protobuf logs read through a lean view of the schema: the common requests at C speed.

``otlp.to_records`` reads a parsed ``ExportLogsServiceRequest`` through its message objects: a
record's attributes alone cost a Python object per ``KeyValue`` and per ``AnyValue``. This view
is a second schema for the same bytes (built here from a descriptor, as ``logproto`` is) in which
``attributes`` are ``map<string, bytes>`` (a map entry is wire-identical to ``KeyValue``: key = 1,
value = 2) and ``body`` is ``bytes``: the C parser then builds the maps, and a string value is its
AnyValue's bytes less the two-byte header.

Invariants:
- Same answer or none: for every request it maps, the ``Mapped`` result equals
  ``otlp.to_records``' of the same bytes (tests compare both on generated requests and on
  arbitrary bytes). Anything else (a non-string body or attribute value, an empty value whose
  meaning would depend on merging, a record ``to_records`` would reject, a view parse error)
  returns None and the caller takes ``to_records``, so every rejection keeps its wording.
- Only for bytes the full schema's parser accepted (``otlp.decode_proto``), which checks them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from zlog.ingest import levels
from zlog.ingest.otlp import Mapped, record_meta, resource_group
from zlog.ingest.protowire import ProtoError, read_varint

_F = descriptor_pb2.FieldDescriptorProto


def _build() -> Any:
    fd = descriptor_pb2.FileDescriptorProto(name="zlog/otlp/view.proto", package="zlogview", syntax="proto3")
    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

    def message(name: str, *fields: tuple[str, int, int, int, str], into: Any = None) -> Any:
        m = (fd.message_type if into is None else into).add(name=name)
        add(m, *fields)
        return m

    def add(m: Any, *fields: tuple[str, int, int, int, str]) -> None:
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name

    def attributes_in(m: Any, number: int) -> tuple[str, int, int, int, str]:
        entry = message("AttributesEntry", ("key", 1, _F.TYPE_STRING, opt, ""), ("value", 2, _F.TYPE_BYTES, opt, ""),
                        into=m.nested_type)
        entry.options.map_entry = True
        return ("attributes", number, _F.TYPE_MESSAGE, rep, f".zlogview.{m.name}.AttributesEntry")

    resource = message("Resource")
    add(resource, attributes_in(resource, 1))
    message("Scope", ("name", 1, _F.TYPE_STRING, opt, ""), ("version", 2, _F.TYPE_STRING, opt, ""))
    record = message("LogRecord", ("time_unix_nano", 1, _F.TYPE_FIXED64, opt, ""),
                     ("severity_number", 2, _F.TYPE_INT32, opt, ""), ("severity_text", 3, _F.TYPE_STRING, opt, ""),
                     ("body", 5, _F.TYPE_BYTES, opt, ""), ("trace_id", 9, _F.TYPE_BYTES, opt, ""),
                     ("span_id", 10, _F.TYPE_BYTES, opt, ""), ("observed_time_unix_nano", 11, _F.TYPE_FIXED64, opt, ""),
                     ("event_name", 12, _F.TYPE_STRING, opt, ""))
    add(record, attributes_in(record, 6))
    message("ScopeLogs", ("scope", 1, _F.TYPE_MESSAGE, opt, ".zlogview.Scope"),
            ("log_records", 2, _F.TYPE_MESSAGE, rep, ".zlogview.LogRecord"))
    message("ResourceLogs", ("resource", 1, _F.TYPE_MESSAGE, opt, ".zlogview.Resource"),
            ("scope_logs", 2, _F.TYPE_MESSAGE, rep, ".zlogview.ScopeLogs"))
    message("Request", ("resource_logs", 1, _F.TYPE_MESSAGE, rep, ".zlogview.ResourceLogs"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("zlogview.Request"))


_Request = _build()


class _Unusual(Exception):
    """Outside the view's shapes: the caller takes the exact path."""


def _string_value(raw: bytes) -> str:
    """The text of an AnyValue that holds a non-empty string_value and nothing else."""
    if raw[:1] != b"\x0a":
        raise _Unusual
    n = raw[1]
    at = 2
    if n >= 0x80:
        n, at = read_varint(memoryview(raw), 1)
    if not n or at + n != len(raw):
        raise _Unusual
    return raw[at:].decode()


def _texts(attributes: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in attributes.items():
        # A short string (one-byte length) inline; any other value through the checked reader.
        out[k] = v[2:].decode() if v[:1] == b"\x0a" and 0 < v[1] == len(v) - 2 < 0x80 else _string_value(v)
    return out


def view(data: bytes, received_ns: int) -> Mapped | None:
    """``otlp.to_records`` of an ExportLogsServiceRequest ``otlp.decode_proto`` accepted, or None."""
    req = _Request()
    try:
        req.ParseFromString(data)
        return _map(req, received_ns)
    except (_Unusual, DecodeError, ProtoError, UnicodeDecodeError):
        return None


def _map(req: Any, received_ns: int) -> Mapped:
    out = Mapped()
    from_number, from_text = levels.from_otlp_number, levels.from_text
    for rl in req.resource_logs:
        service, group = resource_group(_texts(rl.resource.attributes))
        append = group.entries.append
        for sl in rl.scope_logs:
            scope_name, scope_version = sl.scope.name, sl.scope.version
            for lr in sl.log_records:
                number = lr.severity_number
                if not 0 <= number <= 24:
                    raise _Unusual
                text = lr.severity_text
                level = from_text(text) if text else from_number(number)
                message = _string_value(lr.body)
                ts = lr.time_unix_nano or lr.observed_time_unix_nano or received_ns
                attributes = lr.attributes
                meta = _texts(attributes) if attributes else {}
                append((ts // 1_000_000, service, level, message,
                        record_meta(meta, lr.trace_id, lr.span_id, scope_name, scope_version, lr.event_name)))
        if group.entries:
            out.groups.append(group)
    return out
