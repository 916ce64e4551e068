"""Loki's query parameters: times, durations, limits and directions, parsed as Loki parses them (pure).

Times (``start``, ``end``, ``time``): unix nanoseconds, unix seconds (at most 10 digits, or with a
fraction), or RFC 3339 (with nanoseconds). Durations (``step``, ``since``): Prometheus durations
(``5m``, ``1h30m``, ``250ms``; Go's ``1m0s`` and ``2.5s`` as Grafana sends them) or seconds as a
number (``15``, ``0.5``).

Invariants:
- Pure: "now" is an argument; every error is ``BadParameter`` naming the parameter (400).
- Internally times are unix nanoseconds (ints); the counting engine works in milliseconds,
  ``ns_to_ms`` floors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from zlog.protocol.errors import BadParameter
from zlog.read.params import parse_limit  # Loki's limit rules are /v1/logs' own

DEFAULT_SINCE_NS = 3_600_000_000_000
MAX_NS = (1 << 63) - 1
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w|y)")
_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9,
            "w": 604800 * 10**9, "y": 31536000 * 10**9}
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)


def parse_time(text: str | None, name: str, default_ns: int) -> int:
    ns = _parse_time(text, name, default_ns)
    if not -MAX_NS <= ns <= MAX_NS:
        raise BadParameter(name, "out of range (unix nanoseconds must fit 63 bits)")
    return ns


def _parse_time(text: str | None, name: str, default_ns: int) -> int:
    if text is None or text == "":
        return default_ns
    text = text.strip()
    if "." in text and _RFC3339.match(text) is None:
        try:
            return round(float(text) * 1e9)
        except (ValueError, OverflowError):
            raise BadParameter(name, f"cannot parse {text!r} as a timestamp") from None
    if text.lstrip("-").isdigit():
        n = int(text)
        return n * 10**9 if len(text.lstrip("-")) <= 10 else n
    m = _RFC3339.match(text)
    if m is None:
        raise BadParameter(name, f"cannot parse {text!r} as a timestamp: unix nanoseconds, seconds or RFC 3339")
    base = datetime.fromisoformat(m.group(1) + (m.group(3).upper().replace("Z", "+00:00")))
    frac = int((m.group(2) or "0").ljust(9, "0"))
    return int(base.timestamp()) * 10**9 + frac


def parse_duration(text: str | None, name: str) -> int | None:
    """A duration in nanoseconds, or None when absent."""
    if text is None or text == "":
        return None
    text = text.strip()
    if _DURATION.match(text):
        ns = round(sum(float(n) * _UNIT_NS[u] for n, u in _PART.findall(text)))
    else:
        try:
            ns = round(float(text) * 1e9)
        except (ValueError, OverflowError):
            raise BadParameter(name, f"cannot parse {text!r} as a duration, such as 15s, 1m or 0.5") from None
    if ns <= 0:
        raise BadParameter(name, "must be a positive duration")
    return ns


def parse_direction(text: str | None) -> bool:
    """True for backward (Loki's default)."""
    if text is None or text == "" or text.lower() == "backward":
        return True
    if text.lower() == "forward":
        return False
    raise BadParameter("direction", "must be forward or backward")


def ns_to_ms(ns: int) -> int:
    return ns // 10**6


@dataclass(frozen=True, slots=True)
class RangeRequest:
    query: str
    start_ns: int
    end_ns: int
    step_ns: int
    limit: int
    backward: bool


def default_step_ns(start_ns: int, end_ns: int) -> int:
    """Loki's default: the range over 250 points, in whole seconds, at least one second."""
    return max((end_ns - start_ns) // 10**9 // 250, 1) * 10**9


def range_request(params: dict[str, str], now_ns: int) -> RangeRequest:
    query = params.get("query", "")
    if not query:
        raise BadParameter("query", "required")
    end = parse_time(params.get("end"), "end", now_ns)
    since = parse_duration(params.get("since"), "since")
    start = parse_time(params.get("start"), "start", end - (since or DEFAULT_SINCE_NS))
    if end < start:
        raise BadParameter("end", "end timestamp must not be before start time")
    step = parse_duration(params.get("step"), "step") or default_step_ns(start, end)
    return RangeRequest(query, start, end, step, parse_limit(params.get("limit")),
                        parse_direction(params.get("direction")))
