"""A tenant's read limits: how long a time range and how many records one read may ask for.

Invariants:
- Pure: the caller passes the limits, the parsed request and ``now_ms``.
- A request over a limit is refused (400 naming the parameter and the limit), never silently
  cut: a shorter range or a smaller page that looked whole would be a wrong answer.
- 0 means no limit, as everywhere in ``[tenants]``.
"""

from __future__ import annotations

from zlog.config import TenantLimits
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
