"""Native producers' share of their tenant's limits: the router charges each PRODUCE that comes on
a producer key (a CURVE key bound to a tenant) to that tenant's bucket and services set, the ones
gateways ADMIT from.

A gateway ADMITs an HTTP request before it produces it, so its PRODUCE messages are not charged
again; a native producer sends no ADMIT, and whatever it sends must not be what limits it. The
router tells the two apart by the ZAP User-Id of the connection (``zlog.security.curve``): only a
producer key's is ``tenant:<id>``. Without CURVE the router cannot tell them apart, every sender is
on loopback (``check_bind``) and trusted as before: nothing is charged here.

Invariants:
- A tenant without a rate or services limit costs one limits lookup per PRODUCE: its body is
  not read.
- A limited tenant's body is unpacked once (msgpack) for its lines' count and bytes, from the
  lines themselves (newlines of ``data``, or the length of ``records``), never from a field the
  producer could fill in: what the worker stores is what was counted.
- With ``max_services``, each line's ``service`` is decoded too (msgspec, every other field
  skipped), as the worker's own msgspec decode reads it (a repeated key resolves the same way);
  a line it cannot read falls back to orjson, and one neither reads has no service here (the
  worker refuses such a line: ``service`` must be a non-empty string).
- A charged request is held until its worker answers: a whole-message NACK from the worker
  (nothing of it stored: OUT_OF_ORDER_SEQUENCE, NOT_OWNER, INVALID_RECORD, ...) gives the tokens
  back, an ACK keeps them, and a request lost with its worker keeps them (it may be stored).
  A batch refused inside a multi-partition ACK stays charged: the limit errs towards less.
- Bounded: at most one held charge per request the routing table has in flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import orjson

from zlog.protocol.wire import MalformedFrame, unpack_body
from zlog.tenants.admission import Admission, Refusal
from zlog.tenants.quotas import LimitsOf

Key = tuple[bytes, bytes]  # (producer identity on the front socket, request id)


class _Service(msgspec.Struct, gc=False):
    service: object = None


_decode_service = msgspec.json.Decoder(_Service).decode


def _service(line: object) -> object:
    if not isinstance(line, bytes):
        return None
    try:
        return _decode_service(line).service
    except msgspec.DecodeError:
        try:
            r = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        return r.get("service") if type(r) is dict else None


def _services_of(lines: list[Any], into: set[str]) -> None:
    try:  # one decode per line, in C, while every line reads
        found = {r.service for r in map(_decode_service, lines)}
    except (msgspec.DecodeError, TypeError):
        found = set(map(_service, lines))
    into.update(s for s in found if type(s) is str and s)


def produce_size(body: bytes, services: set[str] | None = None) -> tuple[int, int]:
    """(records, stored bytes) of a PRODUCE body, single or multi-partition; ``BAD_BODY`` when it
    is not a msgpack map. Shapes the worker would refuse count what they can (it NACKs them).
    ``services``, when given, gets the service of every line."""
    obj = unpack_body(body)
    items = obj.get("batches")
    if not isinstance(items, list):
        items = [obj]
    records = nbytes = 0
    for item in items:
        if not isinstance(item, dict):
            continue
        data = item.get("data")
        if isinstance(data, bytes):
            records += data.count(b"\n")
            nbytes += len(data)
            if services is not None:
                lines = data.split(b"\n")
                if not lines[-1]:
                    lines.pop()  # what follows the last newline
                _services_of(lines, services)
            continue
        records_ = item.get("records")
        if isinstance(records_, list):
            records += len(records_)
            nbytes += sum(len(r) + 1 for r in records_ if isinstance(r, bytes))
            if services is not None:
                _services_of(records_, services)
    return records, nbytes


class NativeCharges:
    """The router's charges of native producers' PRODUCE messages (pure: ``now`` is passed in)."""

    __slots__ = ("admission", "limits_of", "held")

    def __init__(self, admission: Admission, limits_of: LimitsOf) -> None:
        self.admission = admission
        self.limits_of = limits_of
        self.held: dict[Key, tuple[str, int, int]] = {}

    def charge(self, bound: bytes, key: Key, body: bytes, now: float) -> Refusal | None:
        """Charge ``body`` to tenant ``bound``: None when admitted (and held), else the refusal."""
        tenant = bound.decode()
        lim = self.limits_of(tenant)
        if not (lim.records_per_s or lim.bytes_per_s or lim.max_services):
            return None
        services: set[str] | None = set() if lim.max_services else None
        try:
            records, nbytes = produce_size(body, services)
        except MalformedFrame as exc:
            return Refusal(exc.code, str(exc), 0)
        refused = self.admission.admit(tenant, lim, records, nbytes, services or (), now)
        if refused is None:
            self.held[key] = (tenant, records, nbytes)
        return refused

    def settle(self, key: Key, stored_nothing: bool) -> None:
        """The worker answered ``key``: a NACK (``stored_nothing``) gives its tokens back."""
        charge = self.held.pop(key, None)
        if charge is not None and stored_nothing:
            self.admission.refund(*charge)

    def forget(self, keys: Iterable[Key]) -> None:
        """Requests that will get no answer from a worker: their charges stay."""
        for key in keys:
            self.held.pop(key, None)
