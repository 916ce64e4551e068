"""A cursor over a LogQL query's tokens, with the checks every grammar rule shares (pure).

Invariants:
- Every error it raises is ``LogQLError`` at the 1-based column of the token at fault, worded
  like Loki's; the cursor never moves past the ``end`` token.
- Bounded: at most ``MAX_DEPTH`` levels of nesting (``enter``); the lexer bounds the length.
- Regular expressions are compiled here (``regex`` module, bounded) so that a bad one is a parse
  error.
"""

from __future__ import annotations

import regex

from zlog.loki.lexer import LogQLError, Token, tokenize, unquote
from zlog.security.regexes import compile_bounded

MAX_DEPTH = 32


class TokenCursor:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> Token:
        t = self.tok
        self.i += 1
        return t

    def accept(self, text: str) -> bool:
        if self.tok.kind in ("op", "ident") and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str, what: str | None = None) -> Token:
        if self.tok.kind in ("op", "ident") and self.tok.text == text:
            return self.take()
        raise self.error(f"expected {what or repr(text)}")

    def expect_kind(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}")
        return self.take()

    def error(self, message: str) -> LogQLError:
        t = self.tok
        found = "end of query" if t.kind == "end" else repr(t.text)
        return LogQLError(f"syntax error: unexpected {found}, {message}", t.col)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise LogQLError(f"query nested deeper than {MAX_DEPTH}", self.tok.col)

    def string(self) -> str:
        return unquote(self.expect_kind("string", "a quoted string"))

    def compile(self, pattern: str, col: int) -> None:
        try:
            compile_bounded(pattern)
        except regex.error as exc:
            raise LogQLError(f"invalid regular expression {pattern!r}: {exc}", col) from None
