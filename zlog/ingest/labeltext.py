"""Prometheus label-set text, as Loki writes stream labels: ``{a="b", c="d\\"e"}``.

Invariants:
- Pure. ``parse_labels`` reads Go-quoted values (``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\u0041``) and
  raises ValueError naming the column for anything else (a missing quote, a duplicate name);
  ``format_labels`` writes the canonical text (names sorted), which ``parse_labels`` reads back.
"""

from __future__ import annotations

import re

_PAIR = re.compile(r'\s*([^\s=!~,{}"]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|(?=}))', re.S)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t", "r": "\r", "'": "'"}


def _unquote(s: str) -> str:
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            nxt = s[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "u" and i + 6 <= len(s):
                out.append(chr(int(s[i + 2:i + 6], 16)))
                i += 6
                continue
            raise ValueError(f"unknown escape \\{nxt}")
        out.append(c)
        i += 1
    return "".join(out)


def parse_labels(text: str) -> dict[str, str]:
    """``{a="b", c="d\\"e"}`` (Prometheus label-set text) -> dict; ValueError on bad syntax."""
    s = text.strip()
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError("labels must be written {name=\"value\", ...}")
    inner = s[1:-1] + "}"
    out: dict[str, str] = {}
    pos = 0
    while pos < len(inner) - 1:
        m = _PAIR.match(inner, pos)
        if m is None:
            raise ValueError(f"bad label syntax at column {pos + 2}")
        name = m.group(1)
        if name in out:
            raise ValueError(f"duplicate label name {name!r}")
        try:
            out[name] = _unquote(m.group(2))
        except (ValueError, IndexError) as exc:
            raise ValueError(f"label {name!r}: {exc}") from None
        pos = m.end()
        if m.group(3) == "" and inner[pos:].strip() != "}":
            raise ValueError(f"bad label syntax at column {pos + 2}")
        if m.group(3) == "":
            break
    return out


def format_labels(labels: dict[str, str]) -> str:
    """Loki's canonical label text: sorted names, Go-style quoted values."""
    parts = []
    for k in sorted(labels):
        v = labels[k].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{k}="{v}"')
    return "{" + ", ".join(parts) + "}"


