"""A JSON request body to encoded groups in one typed pass (msgspec), the exact path as fallback.

The fast path decodes the body straight into structs whose types and bounds msgspec checks in C
while it parses, groups them by service, and encodes each group (the three enrichment fields
set on every struct as one pre-encoded ``msgspec.Raw``) into one newline-terminated blob with
``lines.encode_groups``, the encoder the column builders share. Anything it does
not accept (a single object, NDJSON, a wrong type, a string longer than a quarter of its byte
limit, invalid UTF-8, ...) goes to ``records.parse_body`` + ``records.encode_batch``, which
either encode it or name every offending record.

Invariants:
- Same answer as the exact path: for every body the fast path accepts, its groups are
  byte-identical to what ``encode_batch(parse_body(body))`` returns (tests check it on a corpus
  of valid and invalid records); it never rejects anything itself, so every error is the exact
  path's named error.
- The fast path's bounds are a quarter of each byte limit in characters (a character is at most
  4 UTF-8 bytes), so a string it accepts is within its byte limit without being measured.
- Pure: no sockets, files or clocks.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import msgspec

from zlog.ingest.lines import encode_groups
from zlog.ingest.records import (
    MAX_TIMESTAMP,
    NDJSON_TYPES,
    Group,
    InvalidBatch,
    Limits,
    encode_batch,
    enrichment,
    parse_body,
)


@functools.lru_cache(maxsize=8)
def _decoder(limits: Limits) -> msgspec.json.Decoder[Any]:
    """A decoder of ``list[record]`` whose types and bounds are the fast path's acceptance test."""
    def text(limit: int, min_length: int = 0) -> Any:
        return Annotated[str, msgspec.Meta(min_length=min_length, max_length=limit // 4)]

    labels = Annotated[dict[text(limits.max_label_key_bytes, 1), text(limits.max_label_value_bytes)],  # type: ignore[misc,valid-type]
                       msgspec.Meta(max_length=limits.max_labels)]
    # Field order is the stored line's order (records.FIELD_ORDER).
    record = msgspec.defstruct("Record", [
        ("timestamp", Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP)] | None, None),
        ("service", text(limits.max_service_bytes, 1)),
        ("level", text(limits.max_level_bytes), ""),
        ("message", text(limits.max_message_bytes, 1)),
        ("labels", labels, msgspec.field(default_factory=dict)),
        # Enrichment, set on every record before encoding (a client's own values are overwritten,
        # and its ingested_node_id or client_ip are unknown fields, ignored). One field carries
        # all three: a msgspec.Raw, written verbatim after "received_at": (records.enrichment).
        ("received_at", Any, 0),
    ], kw_only=True, gc=False)
    return msgspec.json.Decoder(list[record])  # type: ignore[valid-type]


def _fast(body: bytes, limits: Limits, received_at: int, client_ip: str, node_id: str) -> dict[str, Group] | None:
    try:
        items = _decoder(limits).decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if not items or len(items) > limits.max_records:
        return None
    buckets: dict[str, list[Any]] = {}
    enrich = msgspec.Raw(enrichment(received_at, node_id, client_ip))
    for r in items:
        if r.timestamp is None:  # missing or null: the time it was received
            r.timestamp = received_at
        r.received_at = enrich
        b = buckets.get(r.service)
        if b is None:
            buckets[r.service] = [r]
        else:
            b.append(r)
    return encode_groups(buckets, limits)


def encode_body(body: bytes, content_type: str, limits: Limits, *, received_at: int, client_ip: str,
                node_id: str) -> tuple[int, dict[str, Group]]:
    """Parse, validate and encode a request body: (records, groups by service). All or nothing:
    raises ``InvalidBatch`` naming the offending records, as ``records.encode_batch`` does."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype not in NDJSON_TYPES:
        groups = _fast(body, limits, received_at, client_ip, node_id)
        if groups is not None:
            return sum(g.count for g in groups.values()), groups
    items = parse_body(body, content_type)
    groups = encode_batch(items, limits, received_at=received_at, client_ip=client_ip, node_id=node_id)
    if not groups:  # unreachable: encode_batch names every record it does not encode
        raise InvalidBatch("the body holds no records")
    return len(items), groups
