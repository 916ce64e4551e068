"""Request bodies of the intake APIs for tools/bench.py: the same records as its /v1/logs cells,
sent as a Loki push (JSON, protobuf + snappy), an OTLP protobuf export and an Elasticsearch bulk.

Invariants:
- Every record keeps the bench's audit tag ``zb: "<key>:<i>"`` (as Loki structured metadata,
  an OTLP attribute, a bulk document field), so the run's exactly-once audit covers these cells.
- Records are renumbered in the order the body carries them (Loki groups them into streams by
  service and level), so each service's records are stored in ascending tag order, as the audit
  requires.
- The tag placeholder has a fixed width, so a request is the template with the key spliced in;
  only the snappy cell compresses per request (the load generator's CPU, measured apart).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import cramjam
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from zlog.ingest.labeltext import format_labels
from zlog.ingest.logproto import PushRequest

KINDS = ("loki-json", "loki-proto", "otlp-proto", "bulk")
PATHS = {"loki-json": "/loki/api/v1/push", "loki-proto": "/loki/api/v1/push", "otlp-proto": "/otlp/v1/logs",
         "bulk": "/_bulk"}
TYPES = {"loki-json": "application/json", "loki-proto": "application/x-protobuf",
         "otlp-proto": "application/x-protobuf", "bulk": "application/x-ndjson"}
OK_STATUS = {"loki-json": 204, "loki-proto": 204, "otlp-proto": 200, "bulk": 200}


def _streams(records: list[dict[str, Any]], tag: Callable[[int], str]) -> list[tuple[dict[str, str], list[Any]]]:
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault((r["service"], r.get("level", "")), []).append(r)
    out = []
    i = 0
    for (service, level), recs in by.items():
        entries = []
        for r in recs:
            entries.append((r["timestamp"] * 1_000_000, r["message"], {"zb": tag(i)}))
            i += 1
        out.append(({"service_name": service, "level": level.lower()}, entries))
    return out


def body(kind: str, records: list[dict[str, Any]], tag: Callable[[int], str]) -> bytes:
    if kind == "loki-json":
        return orjson.dumps({"streams": [{"stream": labels, "values": [[str(ns), line, meta] for ns, line, meta in e]}
                                         for labels, e in _streams(records, tag)]})
    if kind == "loki-proto":
        push = PushRequest()
        for labels, entries in _streams(records, tag):
            stream = push.streams.add()
            stream.labels = format_labels(labels)
            for ns, line, meta in entries:
                entry = stream.entries.add()
                entry.timestamp.seconds, entry.timestamp.nanos = divmod(ns, 10**9)
                entry.line = line
                for k, v in meta.items():
                    pair = entry.structuredMetadata.add()
                    pair.name, pair.value = k, v
        proto: bytes = push.SerializeToString()
        return proto
    if kind == "otlp-proto":
        req = ExportLogsServiceRequest()
        by: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by.setdefault(r["service"], []).append(r)
        i = 0
        for service, recs in by.items():
            rl = req.resource_logs.add()
            kv = rl.resource.attributes.add()
            kv.key, kv.value.string_value = "service.name", service
            sl = rl.scope_logs.add()
            sl.scope.name = "bench"
            for r in recs:
                lr = sl.log_records.add()
                lr.time_unix_nano = r["timestamp"] * 1_000_000
                lr.severity_text = r.get("level", "")
                lr.body.string_value = r["message"]
                a = lr.attributes.add()
                a.key, a.value.string_value = "zb", tag(i)
                i += 1
        data: bytes = req.SerializeToString()
        return data
    if kind == "bulk":
        lines = []
        for i, r in enumerate(records):
            lines.append(b'{"create":{"_index":"bench"}}')
            lines.append(orjson.dumps({"@timestamp": r["timestamp"], "message": r["message"],
                                       "service": {"name": r["service"]}, "log": {"level": r.get("level", "")},
                                       "zb": tag(i)}))
        return b"\n".join(lines) + b"\n"
    raise ValueError(f"unknown intake kind {kind!r}")


def renderer(kind: str, url: str, records: list[dict[str, Any]], placeholder: bytes,
             ) -> Callable[[bytes], bytes]:
    """A function of the unit key -> the whole HTTP request."""
    u = urlsplit(url)
    template = body(kind, records, lambda i: f"{placeholder.decode()}:{i}")
    head = (f"POST {PATHS[kind]} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: {TYPES[kind]}\r\n"
            "Connection: keep-alive\r\nContent-Length: ")

    if kind == "loki-proto":
        def render_snappy(key: bytes) -> bytes:
            data = bytes(cramjam.snappy.compress_raw(template.replace(placeholder, key)))
            return (head + f"{len(data)}\r\n\r\n").encode() + data
        return render_snappy
    fixed = (head + f"{len(template)}\r\n\r\n").encode() + template

    def render(key: bytes) -> bytes:
        return fixed.replace(placeholder, key)
    return render


def accept(kind: str) -> Callable[[int, bytes], bool]:
    """Success: Loki's 204, OTLP's 200 without partial_success, a bulk 200 with no failed item."""
    want = OK_STATUS[kind]
    if kind == "bulk":
        return lambda status, data: status == want and b'"errors":false' in data[:64]
    return lambda status, data: status == want and not (kind == "otlp-proto" and data)
