"""HTTP parameters of the read API: ``/v1/logs`` and ``/v1/tail`` requests into a ``Query`` (pure).

Invariants:
- Pure: "now" is an argument wherever a relative time is parsed.
- Every parse error is ``BadParameter`` naming the offending parameter (HTTP 400).
- A ``?cursor=`` is accepted only for the request's direction and filter digest.
- ``to_params`` is the inverse of ``parse_params`` for the filter part.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from zlog.protocol.errors import BadParameter
from zlog.read.paging import Cursor, decode_cursor
from zlog.read.query import DEFAULT_LIMIT, EXCLUDE_FIELDS, MAX_CONTAINS_CHARS, MAX_LIMIT, Filter
from zlog.storage.tokens import words

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

@dataclass(frozen=True, slots=True)
class Query:
    """A parsed ``/v1/logs`` (or ``/v1/tail``) request."""

    filter: Filter = field(default_factory=Filter)
    limit: int = DEFAULT_LIMIT
    backward: bool = True
    cursor: Cursor | None = None


def parse_time(text: str, name: str, now_ms: int) -> int:
    """Unix ms (digits), RFC 3339, or a duration ago (``15m``, ``2h``, ``500ms``, ``7d``)."""
    text = text.strip()
    if not text:
        raise BadParameter(name, "empty")
    if text.isdigit():
        return int(text)
    m = _DURATION.match(text)
    if m:
        return now_ms - int(m.group(1)) * _UNIT_MS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadParameter(name, "expected unix milliseconds, RFC 3339, or a duration such as 15m") from None
    if dt.tzinfo is None:
        raise BadParameter(name, "an RFC 3339 time needs a zone offset (Z or +hh:mm)")
    return int(dt.timestamp() * 1000)


def parse_limit(text: str | None, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """``?limit=``: absent is ``default``, otherwise an integer in 1..``maximum``."""
    if text is None or text == "":
        return default
    try:
        n = int(text)
    except ValueError:
        raise BadParameter("limit", "must be an integer") from None
    if not 1 <= n <= maximum:
        raise BadParameter("limit", f"must be 1..{maximum}")
    return n


_KNOWN = frozenset(("service", "level", "contains", "q", "regex", "since", "until", "limit", "direction", "cursor"))


def parse_params(pairs: Iterable[tuple[str, str]], now_ms: int, *, strict: bool = True) -> Query:
    """Parse query-string pairs (repeated keys allowed) into a ``Query``.

    ``service`` and ``level`` repeat (``level`` also splits on commas); ``label.<k>=<v>`` adds a
    label condition; ``-service``, ``-level`` and ``-label.<k>`` (repeatable) exclude a value;
    ``q`` is words that must all appear (``zlog.read.query``). Unknown parameters are refused when
    ``strict`` (a typo must not silently widen a search).
    """
    services: list[str] = []
    levels: list[str] = []
    labels: dict[str, str] = {}
    exclude: set[tuple[str, str]] = set()
    single: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("-"):
            name = key[1:]
            if name not in EXCLUDE_FIELDS and not name.startswith("label."):
                if strict:
                    raise BadParameter(key, "only service, level and label.<k> can be excluded")
                continue
            if name == "label.":
                raise BadParameter(key, "label name is empty")
            if name == "level":
                exclude.update(("level", lv.strip()) for lv in value.split(",") if lv.strip())
            elif value:
                exclude.add((name, value))
            else:
                raise BadParameter(key, "empty")
        elif key == "service":
            if not value:
                raise BadParameter("service", "empty")
            if value not in services:
                services.append(value)
        elif key == "level":
            for lv in value.split(","):
                lv = lv.strip()
                if lv and lv.lower() not in (x.lower() for x in levels):
                    levels.append(lv)
        elif key.startswith("label."):
            name = key[6:]
            if not name:
                raise BadParameter(key, "label name is empty")
            labels[name] = value
        elif key in _KNOWN:
            if key in single and single[key] != value:
                raise BadParameter(key, "given more than once")
            single[key] = value
        elif strict:
            raise BadParameter(key, "unknown parameter")
    contains = single.get("contains")
    q_text = single.get("q") or ""
    if len(q_text) > MAX_CONTAINS_CHARS:
        raise BadParameter("q", f"at most {MAX_CONTAINS_CHARS} characters")
    q_words = tuple(dict.fromkeys(words(q_text)))
    if q_text and not q_words:
        raise BadParameter("q", "has no words (runs of letters, digits or _)")
    since = parse_time(single["since"], "since", now_ms) if single.get("since") else None
    until = parse_time(single["until"], "until", now_ms) if single.get("until") else None
    direction = single.get("direction") or "backward"
    if direction not in ("backward", "forward"):
        raise BadParameter("direction", "must be backward or forward")
    f = Filter(
        tuple(services),
        tuple(levels),
        contains or None,
        single.get("regex") or None,
        tuple(sorted(labels.items())),
        since,
        until,
        tuple(sorted(exclude)),
        q_words,
    )
    f.check()
    backward = direction == "backward"
    cursor = decode_cursor(single["cursor"]) if single.get("cursor") else None
    if cursor is not None:
        if cursor.backward != backward:
            raise BadParameter("cursor", "was made for the other direction")
        if cursor.filter_digest != f.digest():
            raise BadParameter("cursor", "was made for other filters")
    return Query(f, parse_limit(single.get("limit")), backward, cursor)


def to_params(f: Filter) -> list[tuple[str, str]]:
    """The inverse of ``parse_params`` for the filter part (times as unix ms)."""
    out: list[tuple[str, str]] = [("service", s) for s in f.services]
    out += [("level", lv) for lv in f.levels]
    if f.contains is not None:
        out.append(("contains", f.contains))
    if f.regex is not None:
        out.append(("regex", f.regex))
    out += [(f"label.{k}", v) for k, v in f.labels]
    if f.since_ms is not None:
        out.append(("since", str(f.since_ms)))
    if f.until_ms is not None:
        out.append(("until", str(f.until_ms)))
    out += [("-" + k, v) for k, v in f.exclude]
    if f.words:
        out.append(("q", " ".join(f.words)))
    return out


