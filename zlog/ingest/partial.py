"""Encoding for the APIs that may store part of a request: the valid records, and why the others fail.

OTLP's ``partial_success``, the bulk API's per-item answers and the syslog listener (which has no
one to answer) keep what is valid. ``records.encode_batch`` is all or nothing; this runs it once
and, only when it refuses the batch, once per record, so a valid batch costs nothing extra.

Invariants:
- Pure. Every input record is either encoded into ``groups`` (in input order within its
  service) or named in ``refused`` with ``encode_batch``'s own field and problem; never both.
"""

from __future__ import annotations

from typing import Any

from zlog.ingest.records import Group, InvalidBatch, Limits, RecordError, encode_batch


def encode_partial(items: list[Any], limits: Limits, *, received_at: int, client_ip: str, node_id: str,
                   ) -> tuple[dict[str, Group], list[RecordError]]:
    kw: dict[str, Any] = {"received_at": received_at, "client_ip": client_ip, "node_id": node_id,
                          "with_metadata": True}
    try:
        return encode_batch(items, limits, **kw), []
    except InvalidBatch:
        pass
    groups: dict[str, Group] = {}
    refused: list[RecordError] = []
    for i, item in enumerate(items):
        try:
            one = encode_batch([item], limits, **kw)
        except InvalidBatch as exc:
            e = exc.errors[0] if exc.errors else RecordError(0, "", exc.message)
            refused.append(RecordError(i, e.field, e.problem))
            continue
        for service, g in one.items():
            groups.setdefault(service, Group()).add(g)
    return groups, refused
