"""The replication socket's messages: followers ask a leader for epoch ends and for batches.

One msgpack map per ZeroMQ message (after the leader's ROUTER identity envelope):

- ``{"t": "epoch", "id", "p", "replica", "epoch"}`` -> ``{"t": "epoch", "id", "p", "epoch",
  "end", "leader_epoch"}`` or an error: where the leader's records of the largest epoch <= the
  one asked for end (KIP-101's OffsetsForLeaderEpoch).
- ``{"t": "fetch", "id", "p", "replica", "epoch", "offset", "max_bytes", "wait_ms"}`` ->
  ``{"t": "fetch", "id", "p", "hw", "leo", "batches": [[base, count, data, max_ts, pid, seq,
  segment, epoch, data_hash]]}``: the batches from ``offset`` (a long poll: held up to ``wait_ms``
  while there are none), each with the xxh3_64 of its bytes from the leader's ``.batches`` entry
  (a reply of 8-item batches, without it, is still read: the follower then checks every record).
  The fetch offset tells the leader what the follower holds durably.
- errors: ``{"t": ..., "id", "p", "error": code, "leader_epoch", "log_start"}`` with code
  ``NOT_LEADER`` (this worker does not lead that partition in that epoch), ``OFFSET`` (not a batch
  boundary or past the log end: the follower must truncate first), ``OFFSET_OUT_OF_RANGE``
  (below the leader's log start, ``log_start``: retention deleted it; the follower starts its
  log there, with ``producers``, the producer snapshot ``[[pid, seq, base, count]]`` the
  leader's first segment starts with) or ``INTERNAL``.

Invariants:
- ``parse`` validates every field and raises ``BadMessage``; nothing else escapes it.
- Records travel as the stored batch bytes, never re-encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from zlog.replication.logfiles import Batch


class BadMessage(ValueError):
    pass


def pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _int(obj: dict[str, Any], name: str, minimum: int = 0) -> int:
    v = obj.get(name)
    if type(v) is not int or v < minimum:
        raise BadMessage(f"{name} must be an integer >= {minimum}")
    return v


@dataclass(frozen=True, slots=True)
class Request:
    kind: str  # "epoch" | "fetch"
    id: int
    partition: str
    replica: int
    epoch: int
    offset: int = 0
    max_bytes: int = 1 << 20
    wait_ms: int = 0


def parse_request(raw: bytes) -> Request:
    try:
        obj = msgpack.unpackb(raw, raw=False)
    except Exception:
        raise BadMessage("not msgpack") from None
    if not isinstance(obj, dict) or obj.get("t") not in ("epoch", "fetch") or not isinstance(obj.get("p"), str):
        raise BadMessage("not a replication request")
    kind = obj["t"]
    if kind == "epoch":
        return Request(kind, _int(obj, "id"), obj["p"], _int(obj, "replica"), _int(obj, "epoch", -1))
    return Request(kind, _int(obj, "id"), obj["p"], _int(obj, "replica"), _int(obj, "epoch", -1),
                   _int(obj, "offset"), max(1, min(_int(obj, "max_bytes"), 64 << 20)),
                   min(_int(obj, "wait_ms"), 10_000))


def request(r: Request) -> bytes:
    obj: dict[str, Any] = {"t": r.kind, "id": r.id, "p": r.partition, "replica": r.replica, "epoch": r.epoch}
    if r.kind == "fetch":
        obj.update(offset=r.offset, max_bytes=r.max_bytes, wait_ms=r.wait_ms)
    return pack(obj)


def fetch_reply(r: Request, hw: int, leo: int, batches: list[Batch], epochs: list[int]) -> bytes:
    return pack({"t": "fetch", "id": r.id, "p": r.partition, "hw": hw, "leo": leo,
                 "batches": [[b.base, b.count, b.data, b.max_ts, b.producer_id, b.sequence, b.segment, e,
                              b.data_hash]
                             for b, e in zip(batches, epochs, strict=True)]})


def epoch_reply(r: Request, epoch: int, end: int, leader_epoch: int) -> bytes:
    return pack({"t": "epoch", "id": r.id, "p": r.partition, "epoch": epoch, "end": end,
                 "leader_epoch": leader_epoch})


def error_reply(r: Request, code: str, leader_epoch: int) -> bytes:
    return pack({"t": r.kind, "id": r.id, "p": r.partition, "error": code, "leader_epoch": leader_epoch})


def out_of_range_reply(r: Request, leader_epoch: int, log_start: int,
                       producers: list[tuple[bytes, int, int, int]]) -> bytes:
    return pack({"t": r.kind, "id": r.id, "p": r.partition, "error": "OFFSET_OUT_OF_RANGE",
                 "leader_epoch": leader_epoch, "log_start": log_start, "producers": [list(x) for x in producers]})


@dataclass(frozen=True, slots=True)
class Reply:
    kind: str
    id: int
    partition: str
    error: str | None
    hw: int = 0
    leo: int = 0
    batches: tuple[tuple[Batch, int], ...] = ()  # (batch, its epoch)
    epoch: int = -1
    end: int = -1
    log_start: int = -1  # with OFFSET_OUT_OF_RANGE: the leader's first offset
    producers: tuple[tuple[bytes, int, int, int], ...] = ()  # ... and the producer snapshot there


def parse_reply(raw: bytes) -> Reply:
    try:
        obj = msgpack.unpackb(raw, raw=False)
    except Exception:
        raise BadMessage("not msgpack") from None
    if not isinstance(obj, dict) or obj.get("t") not in ("epoch", "fetch") or not isinstance(obj.get("p"), str):
        raise BadMessage("not a replication reply")
    kind, rid, p = obj["t"], _int(obj, "id"), obj["p"]
    err = obj.get("error")
    if err == "OFFSET_OUT_OF_RANGE":
        return Reply(kind, rid, p, err, log_start=_int(obj, "log_start"), producers=_producers(obj.get("producers")))
    if err is not None:
        return Reply(kind, rid, p, str(err))
    if kind == "epoch":
        return Reply(kind, rid, p, None, epoch=_int(obj, "epoch", -1), end=_int(obj, "end", -1))
    items = obj.get("batches")
    if not isinstance(items, list):
        raise BadMessage("batches must be a list")
    out = []
    for it in items:
        if (not isinstance(it, list) or len(it) not in (8, 9) or not isinstance(it[2], bytes)
                or not isinstance(it[4], bytes) or not all(type(it[i]) is int for i in (0, 1, 3, *range(5, len(it))))):
            raise BadMessage("bad batch")
        out.append((Batch(it[0], it[1], it[2], it[3], it[4], it[5], it[6], it[8] if len(it) == 9 else -1), it[7]))
    return Reply(kind, rid, p, None, _int(obj, "hw"), _int(obj, "leo"), tuple(out))


def _producers(items: Any) -> tuple[tuple[bytes, int, int, int], ...]:
    if not isinstance(items, list):
        raise BadMessage("producers must be a list")
    out = []
    for it in items:
        if (not isinstance(it, list) or len(it) != 4 or not isinstance(it[0], bytes)
                or not all(type(v) is int and v >= 0 for v in it[1:])):
            raise BadMessage("bad producer entry")
        out.append((it[0], it[1], it[2], it[3]))
    return tuple(out)
