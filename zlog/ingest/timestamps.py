"""RFC 3339 / ISO 8601 timestamps to integer unix nanoseconds, exactly (no floats anywhere).

Loki's legacy push, Elasticsearch ``@timestamp`` and RFC 5424 syslog all carry text timestamps,
with fractions of any length and a ``Z`` or ``+hh:mm`` offset. Floats would lose a millisecond on
some values, so the arithmetic is done on integers.

Invariants:
- Pure. ``parse_rfc3339`` raises ``ValueError`` naming the problem for anything it cannot read
  exactly; a timestamp without an offset is refused unless the caller passes ``default_offset_s``.
- ``ns_to_ms`` is floor division, so ordering is kept and no value moves into the next millisecond.
"""

from __future__ import annotations

import calendar
import re

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9})\d*)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)


def parse_rfc3339(text: str, *, default_offset_s: int | None = None) -> int:
    """``2026-12-04T18:00:00.123456789+05:30`` -> unix ns. Also ``2026-12-04`` (midnight UTC)."""
    s = text.strip()
    m = _RFC3339.fullmatch(s)
    if m is None:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
            s += "T00:00:00Z"
            m = _RFC3339.fullmatch(s)
        if m is None:
            raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ValueError(f"timestamp out of range: {text[:64]!r}")
    if day > calendar.monthrange(year, month)[1]:
        raise ValueError(f"no such day: {text[:64]!r}")
    frac = m.group(7) or ""
    nanos = int(frac.ljust(9, "0")) if frac else 0
    if m.group(8):
        offset = 0
    elif m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise ValueError(f"bad UTC offset in {text[:64]!r}")
        offset = (oh * 3600 + om * 60) * (1 if m.group(9) == "+" else -1)
    elif default_offset_s is not None:
        offset = default_offset_s
    else:
        raise ValueError(f"timestamp has no UTC offset: {text[:64]!r}")
    seconds = calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)) - offset
    return seconds * 1_000_000_000 + nanos


def ns_to_ms(ns: int) -> int:
    return ns // 1_000_000
