"""Per-tenant ingest admission: token buckets for records/s and bytes/s, and the services a tenant
may write to. Kept by the router, so every gateway process draws on one bucket per tenant.

A gateway asks before it sends a request's records (ADMIT, docs/protocol.md); the answer is
admitted, or refused with the limit's name and how long to wait.

Invariants:
- Pure: no sockets and no clock; callers pass ``now`` (seconds, monotonic) and the limits.
- A bucket holds at most ``rate * burst_s`` tokens and refills at ``rate`` per second. A request
  is admitted when the bucket holds at least ``min(need, capacity)`` tokens (so a request larger
  than the burst is admitted once the bucket is full, instead of never), and then takes ``need``:
  the bucket may go below zero, which later requests wait out. Over any window the admitted
  amount is at most ``rate * window + capacity + one request``.
- Records and bytes are checked together: a refused request takes nothing from either bucket.
- A tenant's services are remembered up to ``max_services``; a request naming a new one beyond
  that is refused (TOO_MANY_SERVICES), one naming only known services is not. The set lives in
  the router's memory: after a router restart it is learnt again from the traffic.
- ``refund`` gives back what an admitted request took when it stored nothing after all (the
  router's charge of a native producer's batch that a worker NACKed), never beyond capacity.
- Memory is bounded: at most ``max_tenants`` tenants are tracked; beyond, tenants whose buckets
  are full again (nothing owed) are forgotten first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from zlog.config import TenantLimits


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str  # TENANT_RATE_LIMITED | TOO_MANY_SERVICES
    message: str
    retry_after_s: int


@dataclass(slots=True)
class Bucket:
    rate: float
    capacity: float
    tokens: float
    at: float

    def refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def wait_s(self, need: float) -> float:
        """Seconds until ``need`` (capped at the capacity) is available; 0 when it is now."""
        want = min(need, self.capacity)
        return 0.0 if self.tokens >= want else (want - self.tokens) / self.rate

    def full(self) -> bool:
        return self.tokens >= self.capacity


@dataclass(slots=True)
class TenantState:
    records: Bucket | None = None
    bytes: Bucket | None = None
    services: set[str] = field(default_factory=set)


def _bucket(rate: int, burst_s: float, now: float, old: Bucket | None) -> Bucket | None:
    if rate <= 0:
        return None
    capacity = max(1.0, rate * burst_s)
    if old is not None and old.rate == rate and old.capacity == capacity:
        return old
    return Bucket(float(rate), capacity, capacity, now)


class Admission:
    def __init__(self, max_tenants: int = 1000) -> None:
        self.max_tenants = max_tenants
        self.tenants: dict[str, TenantState] = {}
        self.refused: dict[tuple[str, str], int] = {}  # (tenant, code) -> count, for metrics

    def admit(self, tenant: str, limits: TenantLimits, records: int, nbytes: int,
              services: Iterable[str], now: float) -> Refusal | None:
        st = self.tenants.get(tenant)
        if st is None:
            if len(self.tenants) >= self.max_tenants:
                self._forget(now)
            st = self.tenants[tenant] = TenantState()
        st.records = _bucket(limits.records_per_s, limits.burst_s, now, st.records)
        st.bytes = _bucket(limits.bytes_per_s, limits.burst_s, now, st.bytes)
        new: set[str] = set()
        if limits.max_services:
            new = set(services) - st.services
            if new and len(st.services) + len(new) > limits.max_services:
                return self._refuse(tenant, Refusal(
                    "TOO_MANY_SERVICES",
                    f"tenant {tenant!r} writes to at most {limits.max_services} services (max_services); "
                    f"{len(st.services)} are in use and this request names {len(new)} more", 60))
        waits = []
        for b, need, name, unit in ((st.records, records, "records_per_s", "records"),
                                    (st.bytes, nbytes, "bytes_per_s", "bytes")):
            if b is None:
                continue
            b.refill(now)
            w = b.wait_s(need)
            if w > 0:
                waits.append((w, name, b.rate, unit))
        if waits:
            w, name, rate, unit = max(waits)
            return self._refuse(tenant, Refusal(
                "TENANT_RATE_LIMITED",
                f"tenant {tenant!r} is over its ingest rate of {rate:g} {unit}/s ({name}); retry after the wait",
                max(1, math.ceil(w))))
        if st.records is not None:
            st.records.tokens -= records
        if st.bytes is not None:
            st.bytes.tokens -= nbytes
        st.services |= new
        return None

    def refund(self, tenant: str, records: int, nbytes: int) -> None:
        st = self.tenants.get(tenant)
        if st is None:
            return
        for b, n in ((st.records, records), (st.bytes, nbytes)):
            if b is not None:
                b.tokens = min(b.capacity, b.tokens + n)

    def _refuse(self, tenant: str, r: Refusal) -> Refusal:
        key = (tenant, r.code)
        self.refused[key] = self.refused.get(key, 0) + 1
        return r

    def _forget(self, now: float) -> None:
        idle = []
        for name, st in self.tenants.items():
            for b in (st.records, st.bytes):
                if b is not None:
                    b.refill(now)
            if all(b is None or b.full() for b in (st.records, st.bytes)):
                idle.append(name)
        for name in idle or list(self.tenants)[: max(1, len(self.tenants) // 2)]:
            del self.tenants[name]
