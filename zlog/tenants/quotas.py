"""A tenant's read limits: how long a time range and how many records one read may ask for.

Invariants:
- Pure: the caller passes the limits, the parsed request and ``now_ms``.
- A request over a limit is refused (400 naming the parameter and the limit), never silently
  cut: a shorter range or a smaller page that looked whole would be a wrong answer.
- 0 means no limit, as everywhere in ``[tenants]``.
- ``LimitsOf`` memoises a process's lookups in the instance that owns it (bounded).
"""

from __future__ import annotations

from zlog.config import TenantLimits, TenantsConfig
from zlog.read.query import BadParameter


def check_range(limits: TenantLimits, since_ms: int | None, until_ms: int | None, now_ms: int) -> None:
    """``until - since`` within ``max_query_range_ms`` (a missing ``until`` is now; a missing
    ``since`` is the beginning of time, so it is refused when the tenant has a range limit)."""
    most = limits.max_query_range_ms
    if not most:
        return
    if since_ms is None:
        raise BadParameter("since", f"required: this tenant's queries span at most {most} ms (max_query_range_ms)")
    span = (now_ms if until_ms is None else until_ms) - since_ms
    if span > most:
        raise BadParameter("since", f"the range spans {span} ms, over this tenant's max_query_range_ms of {most}")


def check_limit(limits: TenantLimits, limit: int) -> None:
    most = limits.max_query_records
    if most and limit > most:
        raise BadParameter("limit", f"{limit} is over this tenant's max_query_records of {most}")


def capped(limits: TenantLimits, limit: int) -> int:
    """For the original's ``/v1/query``, whose body cannot say it was cut: the limit it gets."""
    most = limits.max_query_records
    return min(limit, most) if most else limit


class LimitsOf:
    """``TenantsConfig.limits`` remembered per tenant, for the paths that ask per request or per
    batch (building the limits costs microseconds; a dict lookup does not). Bounded: forgets
    everything past ``max_tenants`` entries. One per process, held by its owner (no globals)."""

    __slots__ = ("config", "_memo", "_max")

    def __init__(self, config: TenantsConfig, max_tenants: int = 4096) -> None:
        self.config = config
        self._memo: dict[str, TenantLimits] = {}
        self._max = max_tenants

    def __call__(self, tenant: str) -> TenantLimits:
        lim = self._memo.get(tenant)
        if lim is None:
            if len(self._memo) >= self._max:
                self._memo.clear()
            lim = self._memo[tenant] = self.config.limits(tenant)
        return lim
