"""Encode records that share their labels (a Loki stream, an OTLP resource, a bulk index) in one pass.

The intake formats deliver records in groups with one label set each. ``records.encode_batch``
would validate, sort and serialise that label set again for every record; here it is done once
per group. The common case (every record valid) is checked a column at a time, in C-level passes
over a group's timestamps, messages and metadata, and encoded by msgspec with the group's labels
pre-encoded once; anything else takes the exact path, one record at a time, which names each
refused record.

Invariants:
- Same bytes and same verdicts as ``records.encode_batch(..., with_metadata=True)`` on the
  equivalent records (tests compare both on a corpus): a line is
  ``{"timestamp","service","level","message","labels"[,"metadata"],"received_at",...}`` with
  labels and metadata sorted by key; a record is refused for exactly the reasons encode_batch
  gives, worded by its ``_problem``. The fast path never refuses: it answers with the exact
  path's bytes or not at all (tests compare both on random groups).
- Partial: returns the encoded groups and the refused records (by their index in input order);
  a caller that must be all or nothing refuses the request when ``refused`` is not empty.
- Pure: no sockets, files or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from zlog.ingest.lines import UNSET, Lines, metadata_within, strings_within
from zlog.ingest.records import (
    MAX_TIMESTAMP,
    Group,
    Limits,
    RecordError,
    _check_labels,
    _problem,
    _utf8_len_over,
)

SORT_KEYS = orjson.OPT_SORT_KEYS  # code point order, as sorted() on str: the same bytes as encode_batch
Entry = tuple[int, str, str, str, "dict[str, str] | None"]  # timestamp ms, service, level, message, metadata


@dataclass(slots=True)
class LabelGroup:
    labels: dict[str, str]
    entries: list[Entry] = field(default_factory=list)


def _fast(batches: list[LabelGroup], limits: Limits, received_at: int, client_ip: str, node_id: str,
          ) -> dict[str, Group] | None:
    """The common case: every record valid, its checks made a column at a time (types and lengths
    over all of a group's messages, metadata keys and values at once) and its line encoded by
    ``lines.Lines``. None when anything is unusual (a bound that only a byte count can decide, a
    refused record, a lone surrogate, a line at the size limit): the exact path then decides and
    names each problem."""
    msg_fast = limits.max_message_bytes // 4  # at most 4 UTF-8 bytes a character
    out = Lines(limits, received_at=received_at, client_ip=client_ip, node_id=node_id)
    for batch in batches:
        if not batch.entries:
            continue
        stamps, services, levels, messages, metas = zip(*batch.entries)
        if not strings_within(messages, 1, msg_fast) or set(map(type, stamps)) != {int}:
            return None
        present = [m for m in metas if m is not None]
        if present and not metadata_within(present, limits):
            return None
        column = (None if not present else metas if len(present) == len(metas)
                  else tuple(UNSET if m is None else m for m in metas))
        one = services[0]
        if not out.add(batch.labels, stamps, one if services.count(one) == len(services) else services,
                       levels, messages, column):
            return None
    return out.groups()


def _meta_ok(meta: dict[str, str], key_fast: int, value_fast: int) -> bool:
    """The common case of ``_check_labels`` for a small map of short strings, without a call per
    key: False means "not sure", and the exact check decides."""
    if len(meta) > 4:
        return False
    for k, v in meta.items():
        if type(v) is not str or type(k) is not str or not k or len(k) > key_fast or len(v) > value_fast:
            return False
    return True


def encode_groups(batches: list[LabelGroup], limits: Limits, *, received_at: int, client_ip: str, node_id: str,
                  ) -> tuple[dict[str, Group], list[RecordError]]:
    """Encode every group's records, by service; the refused records with why (input order)."""
    groups = _fast(batches, limits, received_at, client_ip, node_id)
    if groups is not None:
        return groups, []
    return _exact(batches, limits, received_at=received_at, client_ip=client_ip, node_id=node_id)


def _exact(batches: list[LabelGroup], limits: Limits, *, received_at: int, client_ip: str, node_id: str,
           ) -> tuple[dict[str, Group], list[RecordError]]:
    suffix = (b',"received_at":' + str(received_at).encode() + b',"ingested_node_id":' + orjson.dumps(node_id)
              + b',"client_ip":' + orjson.dumps(client_ip) + b"}")
    max_line = limits.max_record_bytes - len(suffix)
    svc_lim, msg_lim, lvl_lim = limits.max_service_bytes, limits.max_message_bytes, limits.max_level_bytes
    msg_fast = msg_lim // 4  # at most 4 UTF-8 bytes a character: shorter needs no byte count
    key_fast, value_fast = limits.max_label_key_bytes // 4, limits.max_label_value_bytes // 4
    if limits.max_labels < 4:
        key_fast = 0  # _meta_ok assumes room for a few keys; below that, always the exact check
    dumps = orjson.dumps
    lines: dict[str, list[bytes]] = {}
    newest: dict[str, int] = {}
    refused: list[RecordError] = []
    svc_json: dict[Any, bytes] = {}
    lvl_json: dict[Any, bytes] = {}
    index = -1
    for batch in batches:
        labels_ok = _check_labels(batch.labels, limits) is None
        labels_json = b',"labels":' + dumps(batch.labels, option=SORT_KEYS) if labels_ok else b""
        for ts, service, level, message, meta in batch.entries:
            index += 1
            # Services and levels repeat: each distinct one is checked and serialised once.
            s = svc_json.get(service)
            if s is None and type(service) is str and service and not _utf8_len_over(service, svc_lim):
                s = svc_json[service] = b',"service":' + dumps(service)
            lv = lvl_json.get(level)
            if lv is None and type(level) is str and not _utf8_len_over(level, lvl_lim):
                lv = lvl_json[level] = b',"level":' + dumps(level)
            ok = (
                labels_ok and s is not None and lv is not None
                and type(message) is str and message and (len(message) <= msg_fast or not _utf8_len_over(message, msg_lim))
                and type(ts) is int and 0 <= ts <= MAX_TIMESTAMP
                and (meta is None or _meta_ok(meta, key_fast, value_fast) or _check_labels(meta, limits) is None)
            )
            if ok:
                try:
                    parts: list[bytes] = [b'{"timestamp":', str(ts).encode(), s, lv, b',"message":',  # type: ignore[list-item]
                                          dumps(message), labels_json]
                    if meta is not None:
                        parts += (b',"metadata":', dumps(meta, option=SORT_KEYS))
                except orjson.JSONEncodeError:  # a lone surrogate: the exact path names it
                    ok = False
                else:
                    line = b"".join(parts)
                    if len(line) + 1 > max_line:
                        refused.append(RecordError(index, "", f"encoded record exceeds {limits.max_record_bytes} bytes"))
                        continue
                    out = lines.get(service)
                    if out is None:
                        out = lines[service] = []
                        newest[service] = ts
                    out.append(line + suffix)
                    if ts > newest[service]:
                        newest[service] = ts
                    continue
            rec: dict[str, Any] = {"timestamp": ts, "service": service, "level": level, "message": message,
                                   "labels": batch.labels}
            if meta is not None:
                rec["metadata"] = meta
            refused.append(RecordError(index, *_problem(rec, limits, True)))
    return {svc: Group.of_lines(ls, newest[svc]) for svc, ls in lines.items()}, refused
