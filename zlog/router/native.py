"""Native producers' share of their tenant's rate: the router charges each PRODUCE that comes on a
producer key (a CURVE key bound to a tenant) to that tenant's bucket, the one gateways ADMIT from.

A gateway ADMITs an HTTP request before it produces it, so its PRODUCE messages are not charged
again; a native producer sends no ADMIT, and whatever it sends must not be what limits it. The
router tells the two apart by the ZAP User-Id of the connection (``zlog.security.curve``): only a
producer key's is ``tenant:<id>``. Without CURVE the router cannot tell them apart, every sender is
on loopback (``check_bind``) and trusted as before: nothing is charged here.

Invariants:
- A tenant without a rate limit costs one limits lookup per PRODUCE: its body is not read.
- A limited tenant's body is unpacked once (msgpack) for its lines' count and bytes, from the
  lines themselves (newlines of ``data``, or the length of ``records``), never from a field the
  producer could fill in: what the worker stores is what was counted.
- A charged request is held until its worker answers: a whole-message NACK from the worker
  (nothing of it stored: OUT_OF_ORDER_SEQUENCE, NOT_OWNER, INVALID_RECORD, ...) gives the tokens
  back, an ACK keeps them, and a request lost with its worker keeps them (it may be stored).
  A batch refused inside a multi-partition ACK stays charged: the limit errs towards less.
- Bounded: at most one held charge per request the routing table has in flight.
"""

from __future__ import annotations

from collections.abc import Iterable

from zlog.protocol.wire import MalformedFrame, unpack_body
from zlog.tenants.admission import Admission, Refusal
from zlog.tenants.quotas import LimitsOf

Key = tuple[bytes, bytes]  # (producer identity on the front socket, request id)


def produce_size(body: bytes) -> tuple[int, int]:
    """(records, stored bytes) of a PRODUCE body, single or multi-partition; ``BAD_BODY`` when it
    is not a msgpack map. Shapes the worker would refuse count what they can (it NACKs them)."""
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
            continue
        lines = item.get("records")
        if isinstance(lines, list):
            records += len(lines)
            nbytes += sum(len(r) + 1 for r in lines if isinstance(r, bytes))
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
        if not (lim.records_per_s or lim.bytes_per_s):
            return None
        try:
            records, nbytes = produce_size(body)
        except MalformedFrame as exc:
            return Refusal(exc.code, str(exc), 0)
        refused = self.admission.admit(tenant, lim, records, nbytes, (), now)
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
