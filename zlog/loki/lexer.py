"""The LogQL subset's lexer: text -> tokens with their columns, strings unquoted, durations read (pure).

Invariants:
- Every error is ``LogQLError`` with the 1-based column at fault, worded like Loki's
  (``parse error at line 1, col 7: ...``).
- Bounded: a query of at most ``MAX_QUERY_CHARS`` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

MAX_QUERY_CHARS = 16 * 1024
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "y": 31_536_000_000}
_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+(?![A-Za-z0-9_]))
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>\|=|\|~|!=|!~|=~|==|>=|<=|[{}()\[\],|=<>+\-*/%^:])
""", re.VERBOSE)
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


class LogQLError(ValueError):
    """A query outside the grammar or the subset; ``col`` is 1-based."""

    def __init__(self, message: str, col: int) -> None:
        super().__init__(f"parse error at line 1, col {col}: {message}")
        self.col = col
        self.problem = message


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # duration number string ident op end
    text: str
    col: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_QUERY_CHARS:
        raise LogQLError(f"query longer than {MAX_QUERY_CHARS} characters", 1)
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] in "\"`":
                raise LogQLError("unterminated string", pos + 1)
            raise LogQLError(f"syntax error: unexpected character {text[pos]!r}", pos + 1)
        kind = m.lastgroup or "op"
        if kind != "ws":
            out.append(Token(kind, m.group(), pos + 1))
        pos = m.end()
    out.append(Token("end", "", len(text) + 1))
    return out


def duration_ms(text: str) -> int:
    return sum(int(n) * _UNITS_MS[u] for n, u in _DURATION_PART.findall(text))


def unquote(tok: Token) -> str:
    if tok.text.startswith("`"):
        return tok.text[1:-1]
    try:
        value = orjson.loads(tok.text)
    except orjson.JSONDecodeError:
        # Go's escapes beyond JSON's (\a, \v, \x41, octal) are rare in queries: refuse them plainly.
        raise LogQLError(f"invalid escape in string {tok.text}", tok.col) from None
    return str(value)
