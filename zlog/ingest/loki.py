"""The Loki push API's bodies, decoded into zlog records: JSON, protobuf (snappy) and legacy JSON.

Three wire forms, one result (a list of ``Stream``):
- ``/loki/api/v1/push`` JSON: ``{"streams":[{"stream":{k:v},"values":[["<ns>","line",{meta}?]]}]}``
- ``/loki/api/v1/push`` protobuf: ``logproto.PushRequest`` in a snappy *block* (not framed);
  ``PushRequest{streams=1}``, ``StreamAdapter{labels=1 (text), entries=2, hash=3}``,
  ``EntryAdapter{timestamp=1 (google.protobuf.Timestamp), line=2, structuredMetadata=3}``,
  ``LabelPairAdapter{name=1, value=2}``.
- ``/api/prom/push`` JSON: ``{"streams":[{"labels":"{a=\"b\"}","entries":[{"ts":"<RFC3339>","line":..}]}]}``

Invariants:
- Pure: bytes in, streams or records out; the clock is an argument.
- All or nothing: any problem raises ``PushError`` (400) naming the stream and the reason, as
  Loki's own validation does; nothing is returned to store.
- Every entry is kept: duplicate streams and equal timestamps are not merged or dropped.
- Numbers and booleans given as label or metadata values are stored as their JSON text.
- Bounded: the snappy preamble's length is checked against ``max_bytes`` before inflating.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import cramjam
import orjson
import xxhash

from zlog.ingest import levels, protowire
from zlog.ingest.protowire import ProtoError
from zlog.ingest.timestamps import ns_to_ms, parse_rfc3339
from zlog.protocol.errors import ZlogError

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# The stream label that names the service (and so the partition), in order of preference.
SERVICE_LABELS = ("service_name", "service", "app", "job")
LEVEL_KEYS = ("level", "detected_level", "severity", "lvl", "loglevel")
MAX_NS = (1 << 63) - 1
MAX_SERVICE_TEXT = 200  # bytes of label text used as a service name; longer sets are hashed


class PushError(ZlogError):
    """A push refused whole, naming the stream (its label text) and the reason."""

    def __init__(self, reason: str, stream: str = "") -> None:
        msg = f"stream '{stream}': {reason}" if stream else reason
        super().__init__("INVALID_RECORD", msg + "; nothing of the push was stored")
        self.stream = stream
        self.reason = reason

    def to_json(self) -> dict[str, object]:
        out = super().to_json()
        if self.stream:
            out["stream"] = self.stream
        out["reason"] = self.reason
        return out


@dataclass(frozen=True, slots=True)
class PushLimits:
    """Loki's validation limits (its defaults where zlog has no tighter one of its own)."""

    max_labels_per_stream: int = 15
    max_label_name_bytes: int = 128
    max_label_value_bytes: int = 1024
    max_line_bytes: int = 64 * 1024
    max_age_ms: int = 7 * 24 * 3600 * 1000  # reject_old_samples_max_age
    grace_ms: int = 10 * 60 * 1000  # creation_grace_period: how far in the future
    max_entries: int = 20_000


@dataclass(slots=True)
class Stream:
    labels: dict[str, str]
    entries: list[tuple[int, str, dict[str, str] | None]] = field(default_factory=list)  # (ns, line, meta)


# -- label text ---------------------------------------------------------------------------------

_PAIR = re.compile(r'\s*([^\s=!~,{}"]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|(?=}))', re.S)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "'": "'"}


def _unquote(s: str) -> str:
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and i + 6 <= len(s):
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
                continue
            raise ValueError(f"unknown escape \\{nxt}")
        out.append(c)
        i += 1
    return "".join(out)


def parse_labels(text: str) -> dict[str, str]:
    """``{a="b", c="d\\"e"}`` (Prometheus label-set text) -> dict; ValueError on bad syntax."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError("labels must be written {name=\"value\", ...}")
    inner = s[1:-1] + "}"
    out: dict[str, str] = {}
    pos = 0
    while pos < len(inner) - 1:
        m = _PAIR.match(inner, pos)
        if m is None:
            raise ValueError(f"bad label syntax at column {pos + 2}")
        name = m.group(1)
        if name in out:
            raise ValueError(f"duplicate label name {name!r}")
        try:
            out[name] = _unquote(m.group(2))
        except (ValueError, IndexError) as exc:
            raise ValueError(f"label {name!r}: {exc}") from None
        pos = m.end()
        if m.group(3) == "" and inner[pos:].strip() != "}":
            raise ValueError(f"bad label syntax at column {pos + 2}")
        if m.group(3) == "":
            break
    return out


def format_labels(labels: dict[str, str]) -> str:
    """Loki's canonical label text: sorted names, Go-style quoted values."""
    parts = []
    for k in sorted(labels):
        v = labels[k].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{k}="{v}"')
    return "{" + ", ".join(parts) + "}"


# -- JSON ------------------------------------------------------------------------------------------

def _as_str(value: Any, what: str, stream: str) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool | int | float) and value is not None:
        return orjson.dumps(value).decode()
    raise PushError(f"{what} must be a string or a number, got {type(value).__name__}", stream)


def _json_value(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PushError(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("streams"), list):
        raise PushError('expected a JSON object {"streams": [...]}')
    return value


def _json_ns(raw: Any, stream: str) -> int:
    if type(raw) is str:
        if not raw.isdigit() or len(raw) > 19:
            raise PushError(f"timestamp {raw[:40]!r} is not an integer of unix nanoseconds", stream)
        return int(raw)
    if type(raw) is int and raw >= 0:
        return raw
    raise PushError("timestamp must be a string of unix nanoseconds", stream)


def decode_json(body: bytes) -> list[Stream]:
    """``/loki/api/v1/push`` JSON."""
    out: list[Stream] = []
    for i, s in enumerate(_json_value(body)["streams"]):
        if not isinstance(s, dict) or not isinstance(s.get("stream", {}), dict) or not isinstance(s.get("values"), list):
            raise PushError(f'stream {i} must be {{"stream": {{labels}}, "values": [[ns, line], ...]}}')
        raw_labels = s.get("stream") or {}
        text = format_labels({str(k): str(v) for k, v in raw_labels.items()})
        labels = {k: _as_str(v, f"label {k!r}", text) for k, v in raw_labels.items()}
        st = Stream(labels)
        for v in s["values"]:
            if not isinstance(v, list) or not 2 <= len(v) <= 3:
                raise PushError('each value must be ["<unix ns>", "line"] or ["<unix ns>", "line", {metadata}]', text)
            ns = _json_ns(v[0], text)
            line = v[1]
            if type(line) is not str:
                raise PushError("log line must be a string", text)
            meta = None
            if len(v) == 3 and v[2]:
                if not isinstance(v[2], dict):
                    raise PushError("structured metadata must be an object", text)
                meta = {str(k): _as_str(x, f"structured metadata {k!r}", text) for k, x in v[2].items()}
            st.entries.append((ns, line, meta))
        out.append(st)
    return out


def decode_legacy(body: bytes) -> list[Stream]:
    """``/api/prom/push`` JSON: label text and RFC 3339 timestamps."""
    out: list[Stream] = []
    for i, s in enumerate(_json_value(body)["streams"]):
        if not isinstance(s, dict) or type(s.get("labels")) is not str or not isinstance(s.get("entries"), list):
            raise PushError(f'stream {i} must be {{"labels": "{{...}}", "entries": [{{"ts": ..., "line": ...}}]}}')
        text = s["labels"]
        try:
            labels = parse_labels(text)
        except ValueError as exc:
            raise PushError(f"bad labels: {exc}", text[:256]) from None
        st = Stream(labels)
        for e in s["entries"]:
            if not isinstance(e, dict):
                raise PushError('each entry must be {"ts": "<RFC 3339>", "line": "..."}', text)
            ts, line = e.get("ts", e.get("timestamp")), e.get("line")
            if type(ts) is not str or type(line) is not str:
                raise PushError('each entry needs "ts" (RFC 3339 text) and "line" (a string)', text)
            try:
                ns = parse_rfc3339(ts)
            except ValueError as exc:
                raise PushError(str(exc), text) from None
            st.entries.append((ns, line, None))
        out.append(st)
    return out


# -- protobuf ----------------------------------------------------------------------------------------

def snappy_block(body: bytes, max_bytes: int) -> bytes:
    """Inflate a snappy block; its varint preamble (the inflated size) is checked first."""
    try:
        size, _ = protowire.read_varint(memoryview(body), 0)
    except ProtoError:
        raise PushError("the body is not snappy-compressed (empty or truncated)") from None
    if size > max_bytes:
        raise ZlogError("PAYLOAD_TOO_LARGE", f"the push inflates to {size} bytes, over the {max_bytes}-byte limit")
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise PushError(f"the body is not valid snappy block data: {exc}") from None


def _label_pair(data: memoryview) -> tuple[str, str]:
    name = value = ""
    for num, _, v in protowire.fields(data):
        if num == 1:
            name = protowire.text(v, "label name")
        elif num == 2:
            value = protowire.text(v, "label value")
    return name, value


def _entry(data: memoryview) -> tuple[int, str, dict[str, str] | None]:
    seconds = nanos = 0
    line = ""
    meta: dict[str, str] | None = None
    for num, _, v in protowire.fields(data):
        if num == 1:
            for n2, _, t in protowire.fields(protowire.message(v, "timestamp")):
                if n2 == 1 and isinstance(t, int):
                    seconds = protowire.to_signed64(t)
                elif n2 == 2 and isinstance(t, int):
                    nanos = protowire.to_signed64(t)
        elif num == 2:
            line = protowire.text(v, "line")
        elif num == 3:
            k, x = _label_pair(protowire.message(v, "structured metadata"))
            if meta is None:
                meta = {}
            meta[k] = x
    return seconds * 1_000_000_000 + nanos, line, meta


def decode_proto(raw: bytes) -> list[Stream]:
    """A decoded (inflated) ``logproto.PushRequest``."""
    out: list[Stream] = []
    try:
        for num, _, v in protowire.fields(raw):
            if num != 1:
                continue
            text = ""
            entries = []
            for n2, _, x in protowire.fields(protowire.message(v, "stream")):
                if n2 == 1:
                    text = protowire.text(x, "labels")
                elif n2 == 2:
                    entries.append(_entry(protowire.message(x, "entry")))
            try:
                labels = parse_labels(text)
            except ValueError as exc:
                raise PushError(f"bad labels: {exc}", text[:256]) from None
            out.append(Stream(labels, entries))
    except ProtoError as exc:
        raise PushError(f"the body is not a valid logproto.PushRequest: {exc}") from None
    return out


# -- validation and mapping ----------------------------------------------------------------------

def _utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def service_of(labels: dict[str, str], text: str) -> str:
    """The service (and so the partition key): a service-naming label, else the label set, whose
    text is replaced by a digest when it is too long to be a service name."""
    for k in SERVICE_LABELS:
        v = labels.get(k)
        if v:
            return v
    if len(text) <= MAX_SERVICE_TEXT:
        return text
    return "{streams:" + xxhash.xxh3_64_hexdigest(text.encode("utf-8", "surrogatepass")) + "}"


def level_of(labels: dict[str, str], meta: dict[str, str] | None) -> str:
    for source in (labels, meta or {}):
        for k in LEVEL_KEYS:
            v = source.get(k)
            if v:
                return levels.from_text(v)
    return ""


def validate(st: Stream, limits: PushLimits, now_ms: int) -> str:
    """Loki's per-stream checks; returns the stream's label text."""
    text = format_labels(st.labels)
    if not st.labels:
        raise PushError("at least one label pair is required per stream", "{}")
    if len(st.labels) > limits.max_labels_per_stream:
        raise PushError(f"{len(st.labels)} labels, more than the {limits.max_labels_per_stream} allowed per stream",
                        text[:256])
    for k, v in st.labels.items():
        if not LABEL_NAME.fullmatch(k):
            raise PushError(f"invalid label name {k[:64]!r}: must match [a-zA-Z_][a-zA-Z0-9_]*", text[:256])
        if _utf8_len(k) > limits.max_label_name_bytes:
            raise PushError(f"label name {k[:64]!r} is longer than {limits.max_label_name_bytes} bytes", text[:256])
        if _utf8_len(v) > limits.max_label_value_bytes:
            raise PushError(f"label {k!r} value is longer than {limits.max_label_value_bytes} bytes", text[:256])
    oldest, newest = now_ms - limits.max_age_ms, now_ms + limits.grace_ms
    for ns, line, meta in st.entries:
        ms = ns_to_ms(ns)
        if ns < 0 or ns > MAX_NS:
            raise PushError(f"timestamp {ns} is out of range", text)
        if ms < oldest:
            raise PushError(f"entry has timestamp too old: {ns} ns; the oldest accepted is {oldest} ms "
                            "(timestamps are unix nanoseconds)", text)
        if ms > newest:
            raise PushError(f"entry has timestamp too new: {ns} ns; the newest accepted is {newest} ms", text)
        if not line:
            raise PushError("empty log line", text)
        if _utf8_len(line) > limits.max_line_bytes:
            raise PushError(f"line of {_utf8_len(line)} bytes is longer than the {limits.max_line_bytes}-byte limit",
                            text)
        if meta:
            for k, v in meta.items():
                if not k or _utf8_len(k) > limits.max_label_name_bytes or _utf8_len(v) > limits.max_label_value_bytes:
                    raise PushError(f"structured metadata {k[:64]!r} is empty or too long", text)
    return text


def to_records(streams: list[Stream], limits: PushLimits, now_ms: int, source: str = "loki",
               ) -> tuple[list[dict[str, Any]], list[str]]:
    """Validate every stream, then map each entry to a /v1/logs record; also returns, per record,
    its stream's label text (to name the stream if storage-side validation refuses a record)."""
    total = sum(len(s.entries) for s in streams)
    if total == 0:
        raise PushError("the push holds no entries")
    if total > limits.max_entries:
        raise PushError(f"{total} entries in one push, more than {limits.max_entries}")
    texts = [validate(st, limits, now_ms) for st in streams]
    records: list[dict[str, Any]] = []
    names: list[str] = []
    for st, text in zip(streams, texts, strict=True):
        labels = dict(st.labels)
        labels.setdefault("source", source)
        service = service_of(st.labels, text)
        for ns, line, meta in st.entries:
            rec: dict[str, Any] = {"timestamp": ns_to_ms(ns), "service": service,
                                   "level": level_of(st.labels, meta), "message": line, "labels": labels}
            if meta:
                rec["metadata"] = meta
            records.append(rec)
            names.append(text)
    return records, names
