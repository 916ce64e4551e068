"""The Loki push API's bodies, decoded into zlog records: JSON, protobuf (snappy) and legacy JSON.

Three wire forms, one result (a list of ``Stream``):
- ``/loki/api/v1/push`` JSON: ``{"streams":[{"stream":{k:v},"values":[["<ns>","line",{meta}?]]}]}``
- ``/loki/api/v1/push`` protobuf: ``logproto.PushRequest`` in a snappy *block* (not framed);
  ``PushRequest{streams=1}``, ``StreamAdapter{labels=1 (text), entries=2, hash=3}``,
  ``EntryAdapter{timestamp=1 (google.protobuf.Timestamp), line=2, structuredMetadata=3}``,
  ``LabelPairAdapter{name=1, value=2}`` (decoded by the protobuf package's C parser, ``logproto``).
- ``/api/prom/push`` JSON: ``{"streams":[{"labels":"{a=\"b\"}","entries":[{"ts":"<RFC3339>","line":..}]}]}``

Invariants:
- Pure: bytes in, streams or label groups out; the clock is an argument.
- All or nothing: any problem raises ``PushError`` (400) naming the stream and the reason, as
  Loki's own validation does; nothing is returned to store. zlog's own record checks (line and
  metadata lengths, encoded size) run where the groups are encoded (``zlog.ingest.streams``),
  and the push handler refuses the whole push, naming the stream, if any record fails them.
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
from google.protobuf.message import DecodeError

from zlog.ingest import levels, protowire
from zlog.ingest.labeltext import format_labels, parse_labels
from zlog.ingest.logproto import PushRequest
from zlog.ingest.protowire import ProtoError
from zlog.ingest.streams import LabelGroup
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
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
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
        if all(type(v) is str for v in raw_labels.values()):
            labels = raw_labels
        else:
            text = format_labels({str(k): str(v) for k, v in raw_labels.items()})
            labels = {k: _as_str(v, f"label {k!r}", text) for k, v in raw_labels.items()}
        st = Stream(labels)
        append = st.entries.append
        for v in s["values"]:
            # The common cases in one test; anything else takes the checked path that names the problem.
            if type(v) is list and len(v) >= 2 and type(v[0]) is str and type(v[1]) is str and v[0].isascii() \
                    and v[0].isdigit() and len(v[0]) <= 19:
                n = len(v)
                if n == 2:
                    append((int(v[0]), v[1], None))
                    continue
                if n == 3 and type(m := v[2]) is dict:
                    for x in m.values():
                        if type(x) is not str:
                            break
                    else:
                        append((int(v[0]), v[1], m or None))
                        continue
            append(_json_value_entry(v, format_labels(labels)))
        out.append(st)
    return out


def _json_value_entry(v: Any, text: str) -> tuple[int, str, dict[str, str] | None]:
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
    return ns, line, meta


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


def decode_proto(raw: bytes) -> list[Stream]:
    """A decoded (inflated) ``logproto.PushRequest``."""
    req = PushRequest()
    try:
        req.ParseFromString(raw)
    except DecodeError as exc:
        raise PushError(f"the body is not a valid logproto.PushRequest: {exc}") from None
    out: list[Stream] = []
    for s in req.streams:
        text = s.labels
        try:
            labels = parse_labels(text)
        except ValueError as exc:
            raise PushError(f"bad labels: {exc}", text[:256]) from None
        entries: list[tuple[int, str, dict[str, str] | None]] = []
        append = entries.append
        for e in s.entries:
            ts = e.timestamp
            md = e.structuredMetadata
            append((ts.seconds * 1_000_000_000 + ts.nanos, e.line, {m.name: m.value for m in md} if md else None))
        out.append(Stream(labels, entries))
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
    text = validate_labels(st.labels, limits)
    # Lines and metadata are checked where they are encoded (zlog.ingest.streams), with the same
    # limits; only what zlog's record checks do not know about is checked here.
    if st.entries:
        validate_times(min(e[0] for e in st.entries), max(e[0] for e in st.entries), text, limits, now_ms)
    return text


def validate_labels(labels: dict[str, str], limits: PushLimits) -> str:
    """Loki's checks of a stream's label set; returns its label text."""
    text = format_labels(labels)
    if not labels:
        raise PushError("at least one label pair is required per stream", "{}")
    if len(labels) > limits.max_labels_per_stream:
        raise PushError(f"{len(labels)} labels, more than the {limits.max_labels_per_stream} allowed per stream",
                        text[:256])
    for k, v in labels.items():
        if not LABEL_NAME.fullmatch(k):
            raise PushError(f"invalid label name {k[:64]!r}: must match [a-zA-Z_][a-zA-Z0-9_]*", text[:256])
        if _utf8_len(k) > limits.max_label_name_bytes:
            raise PushError(f"label name {k[:64]!r} is longer than {limits.max_label_name_bytes} bytes", text[:256])
        if _utf8_len(v) > limits.max_label_value_bytes:
            raise PushError(f"label {k!r} value is longer than {limits.max_label_value_bytes} bytes", text[:256])
    return text


def validate_times(lo: int, hi: int, text: str, limits: PushLimits, now_ms: int) -> None:
    """Loki's checks of a stream's oldest and newest timestamps (unix ns)."""
    oldest, newest = now_ms - limits.max_age_ms, now_ms + limits.grace_ms
    if lo < 0 or hi > MAX_NS:
        raise PushError(f"timestamp {lo if lo < 0 else hi} is out of range", text)
    if ns_to_ms(lo) < oldest:
        raise PushError(f"entry has timestamp too old: {lo} ns; the oldest accepted is {oldest} ms "
                        "(timestamps are unix nanoseconds)", text)
    if ns_to_ms(hi) > newest:
        raise PushError(f"entry has timestamp too new: {hi} ns; the newest accepted is {newest} ms", text)


def to_groups(streams: list[Stream], limits: PushLimits, now_ms: int, source: str = "loki",
              ) -> tuple[list[LabelGroup], list[str]]:
    """Validate every stream, then map it to a label group of records (``zlog.ingest.streams``);
    also returns each group's label text, to name the stream if a record is refused later."""
    total = sum(len(s.entries) for s in streams)
    if total == 0:
        raise PushError("the push holds no entries")
    if total > limits.max_entries:
        raise PushError(f"{total} entries in one push, more than {limits.max_entries}")
    texts = [validate(st, limits, now_ms) for st in streams]
    groups: list[LabelGroup] = []
    for st, text in zip(streams, texts, strict=True):
        labels = dict(st.labels)
        labels.setdefault("source", source)
        service = service_of(st.labels, text)
        stream_level = level_of(st.labels, None)
        entries = [(ns // 1_000_000, service, stream_level or (level_of({}, meta) if meta else ""), line, meta)
                   for ns, line, meta in st.entries]
        groups.append(LabelGroup(labels, entries))
    return groups, texts


def to_records(streams: list[Stream], limits: PushLimits, now_ms: int, source: str = "loki",
               ) -> tuple[list[dict[str, Any]], list[str]]:
    """The same mapping as ``to_groups``, one /v1/logs record dict per entry (with its stream's text)."""
    groups, texts = to_groups(streams, limits, now_ms, source)
    records: list[dict[str, Any]] = []
    names: list[str] = []
    for g, text in zip(groups, texts, strict=True):
        for ts, service, level, line, meta in g.entries:
            rec: dict[str, Any] = {"timestamp": ts, "service": service, "level": level, "message": line,
                                   "labels": g.labels}
            if meta:
                rec["metadata"] = meta
            records.append(rec)
            names.append(text)
    return records, names
