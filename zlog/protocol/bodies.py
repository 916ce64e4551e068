"""The bodies of wire messages: PRODUCE, ACK, NACK, READY and ADMIT, their builders and schema-checking parsers.

``wire`` frames a message and leaves its body as bytes; the consumer of a message parses the body
here, once.

Invariants:
- Every ``parse_*`` validates the schema and raises only ``MalformedFrame("BAD_BODY", ...)`` on
  bad peer input; nothing here asserts on peer data.
- Records travel as pre-encoded JSON lines: a batch's lines as one newline-terminated msgpack
  bin (``data``), so no hop packs, unpacks or joins them one by one, and the worker appends the
  bytes it validated. ``records`` (a list of bin, one per line) is still read, joined once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from zlog.protocol.wire import Command, MalformedFrame, encode, unpack_body


def _int(obj: dict[str, Any], name: str, default: int | None = None, *, minimum: int = 0) -> int:
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MalformedFrame("BAD_BODY", f"{name} must be an integer >= {minimum}")
    return value


def _opt_int(obj: dict[str, Any], name: str) -> int | None:
    return None if obj.get(name) is None else _int(obj, name)


@dataclass(frozen=True, slots=True)
class ProduceBody:
    data: bytes  # newline-terminated lines, not yet validated (the storage engine does that)
    max_timestamp: int
    producer_id: bytes | None
    sequence: int | None
    tenant: str | None

    @property
    def records(self) -> list[bytes]:
        return self.data.split(b"\n")[:-1]


def _data(records: Sequence[bytes] | bytes) -> bytes:
    return records if isinstance(records, bytes) else b"\n".join([*records, b""])


def produce_body(
    records: Sequence[bytes] | bytes,
    max_timestamp: int,
    producer_id: bytes | None = None,
    sequence: int | None = None,
    tenant: str | None = None,
    acks: str | None = None,
) -> bytes:
    """``records``: the lines, or already one blob of newline-terminated lines."""
    obj: dict[str, Any] = {"data": _data(records), "max_ts": max_timestamp}
    if producer_id is not None:
        obj["pid"] = producer_id
        obj["seq"] = sequence
    if tenant is not None:
        obj["tenant"] = tenant
    if acks == "leader":  # absent means "all": a replicated partition answers once the ISR has it
        obj["acks"] = acks
    return msgpack.packb(obj, use_bin_type=True)


def parse_produce(body: bytes) -> ProduceBody:
    return produce_from(unpack_body(body))


def produce_from(obj: dict[str, Any]) -> ProduceBody:
    """A single-partition PRODUCE from its unpacked body."""
    data = obj.get("data")
    if data is None:
        records = obj.get("records")
        if not isinstance(records, list) or not records:
            raise MalformedFrame("BAD_BODY", "data (or records) must be given")
        for r in records:
            if not isinstance(r, bytes):
                raise MalformedFrame("BAD_BODY", "every record must be msgpack bin (JSON line bytes)")
        data = b"\n".join([*records, b""])
    elif not isinstance(data, bytes) or not data:
        raise MalformedFrame("BAD_BODY", "data must be non-empty msgpack bin (newline-terminated JSON lines)")
    pid = obj.get("pid")
    if pid is not None and (not isinstance(pid, bytes) or not 1 <= len(pid) <= 16):
        raise MalformedFrame("BAD_BODY", "pid must be 1..16 bytes")
    seq = _opt_int(obj, "seq")
    if (pid is None) != (seq is None):
        raise MalformedFrame("BAD_BODY", "pid and seq go together")
    tenant = obj.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise MalformedFrame("BAD_BODY", "tenant must be a string")
    return ProduceBody(data, _int(obj, "max_ts", 0), pid, seq, tenant)


def multi_produce_body(
    batches: Sequence[tuple[int, Sequence[bytes] | bytes, int, bytes | None, int | None, str | None]],
    acks: str | None = None,
) -> bytes:
    """Several partitions' batches in one PRODUCE, for partitions with the same owner (Kafka's
    produce request): ``(partition, records, max_ts, producer id, sequence, tenant)`` each. The
    route frame names the first partition; the worker answers one ACK with a result per batch."""
    items = []
    for partition, records, max_ts, pid, seq, tenant in batches:
        item: dict[str, Any] = {"p": partition, "data": _data(records), "max_ts": max_ts}
        if pid is not None:
            item["pid"] = pid
            item["seq"] = seq
        if tenant is not None:
            item["tenant"] = tenant
        items.append(item)
    obj: dict[str, Any] = {"batches": items}
    if acks == "leader":
        obj["acks"] = acks
    return msgpack.packb(obj, use_bin_type=True)


def parse_multi_produce(obj: dict[str, Any]) -> list[tuple[int, ProduceBody]]:
    """The batches of an unpacked multi-partition PRODUCE body, each validated like a single one."""
    items = obj.get("batches")
    if not isinstance(items, list) or not items:
        raise MalformedFrame("BAD_BODY", "batches must be a non-empty list")
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise MalformedFrame("BAD_BODY", "every batch must be a map")
        out.append((_int(item, "p"), produce_from(item)))
    return out


@dataclass(frozen=True, slots=True)
class Ack:
    partition: int
    offset: int  # base offset of the batch; -1 if a duplicate too old to remember
    count: int
    duplicate: bool = False


def ack_body(ack: Ack) -> bytes:
    return msgpack.packb(
        {"partition": ack.partition, "offset": ack.offset, "count": ack.count, "duplicate": ack.duplicate}
    )


def parse_ack(body: bytes) -> Ack:
    return _ack_from(unpack_body(body))


def _ack_from(obj: dict[str, Any]) -> Ack:
    return Ack(
        _int(obj, "partition"),
        _int(obj, "offset", minimum=-1),
        _int(obj, "count"),
        bool(obj.get("duplicate", False)),
    )


@dataclass(frozen=True, slots=True)
class Nack:
    code: str
    message: str
    retry: bool
    partition: int | None = None
    retry_after: int = 0  # seconds to wait before retrying (TENANT_RATE_LIMITED); 0: the sender's own backoff


def nack_body(nack: Nack) -> bytes:
    obj: dict[str, Any] = {"code": nack.code, "message": nack.message, "retry": nack.retry}
    if nack.partition is not None:
        obj["partition"] = nack.partition
    if nack.retry_after:
        obj["retry_after"] = nack.retry_after
    return msgpack.packb(obj)


def parse_nack(body: bytes) -> Nack:
    try:
        obj = unpack_body(body)
    except MalformedFrame as exc:
        return Nack("BAD_BODY", str(exc), False)
    code = obj.get("code")
    msg = obj.get("message")
    part = obj.get("partition")
    wait = obj.get("retry_after")
    return Nack(
        code if isinstance(code, str) else "UNKNOWN",
        msg if isinstance(msg, str) else "",
        bool(obj.get("retry", False)),
        part if isinstance(part, int) and not isinstance(part, bool) else None,
        wait if isinstance(wait, int) and not isinstance(wait, bool) and 0 < wait <= MAX_RETRY_AFTER_S else 0,
    )


MAX_RETRY_AFTER_S = 3600  # a larger retry_after from a peer is ignored (the sender's own backoff applies)


def nack_frames(request_id: int, code: str, message: str, *, retry: bool, partition: int | None = None,
                retry_after: int = 0) -> list[bytes]:
    return encode(Command.NACK, request_id, partition=partition,
                  body=nack_body(Nack(code, message, retry, partition, retry_after)))


def multi_ack_body(results: Sequence[Ack | Nack]) -> bytes:
    """The answer to a multi-partition PRODUCE: one ACK or NACK per batch, in request order."""
    out: list[dict[str, Any]] = []
    for r in results:
        if isinstance(r, Ack):
            out.append({"partition": r.partition, "offset": r.offset, "count": r.count, "duplicate": r.duplicate})
        else:
            out.append({"partition": r.partition, "code": r.code, "message": r.message, "retry": r.retry})
    return msgpack.packb({"results": out})


def parse_multi_ack(body: bytes) -> list[Ack | Nack]:
    obj = unpack_body(body)
    items = obj.get("results")
    if not isinstance(items, list):
        raise MalformedFrame("BAD_BODY", "results must be a list")
    out: list[Ack | Nack] = []
    for item in items:
        if not isinstance(item, dict):
            raise MalformedFrame("BAD_BODY", "every result must be a map")
        if "code" in item:
            part = item.get("partition")
            out.append(Nack(str(item["code"]), str(item.get("message", "")), bool(item.get("retry", False)),
                            part if isinstance(part, int) and not isinstance(part, bool) else None))
        else:
            out.append(_ack_from(item))
    return out


@dataclass(frozen=True, slots=True)
class Ready:
    worker_id: int
    partitions: tuple[int, ...]
    node: str = ""
    pid: int = 0
    metrics_port: int = 0
    host: str = ""  # cluster.host: the address the worker advertises (node is the records' node id)


def ready_body(ready: Ready) -> bytes:
    return msgpack.packb(
        {
            "worker": ready.worker_id,
            "partitions": list(ready.partitions),
            "node": ready.node,
            "pid": ready.pid,
            "metrics_port": ready.metrics_port,
            "host": ready.host,
        }
    )


def parse_ready(body: bytes) -> Ready:
    obj = unpack_body(body)
    parts = obj.get("partitions")
    if not isinstance(parts, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in parts):
        raise MalformedFrame("BAD_BODY", "partitions must be a list of integers >= 0")
    node, host = obj.get("node", ""), obj.get("host", "")
    return Ready(
        _int(obj, "worker"),
        tuple(parts),
        node if isinstance(node, str) else "",
        _int(obj, "pid", 0),
        _int(obj, "metrics_port", 0),
        host if isinstance(host, str) else "",
    )


MAX_ADMIT_SERVICES = 20_000


@dataclass(frozen=True, slots=True)
class AdmitRequest:
    """ADMIT: a tenant asks to ingest ``records`` (``nbytes`` of stored lines) to ``services``."""

    tenant: str
    records: int
    nbytes: int
    services: tuple[str, ...] = ()


def admit_body(req: AdmitRequest) -> bytes:
    obj: dict[str, Any] = {"tenant": req.tenant, "records": req.records, "bytes": req.nbytes}
    if req.services:
        obj["services"] = list(req.services)
    return msgpack.packb(obj)


def parse_admit(body: bytes) -> AdmitRequest:
    obj = unpack_body(body)
    tenant = obj.get("tenant")
    if not isinstance(tenant, str):
        raise MalformedFrame("BAD_BODY", "tenant must be a string")
    services = obj.get("services", [])
    if (not isinstance(services, list) or len(services) > MAX_ADMIT_SERVICES
            or not all(isinstance(s, str) for s in services)):
        raise MalformedFrame("BAD_BODY", f"services must be a list of at most {MAX_ADMIT_SERVICES} strings")
    return AdmitRequest(tenant, _int(obj, "records"), _int(obj, "bytes"), tuple(services))


def admitted_body(code: str | None = None, message: str = "", retry_after_s: int = 0) -> bytes:
    """The RESULT of an ADMIT: ``{ok: true}``, or a refusal naming its code and the wait."""
    if code is None:
        return msgpack.packb({"ok": True})
    return msgpack.packb({"ok": False, "code": code, "message": message, "retry_after": retry_after_s})
