"""The LogQL subset's parser: text -> ``zlog.loki.ast`` (pure); the metric expressions here,
the log query half in ``logquery.py``, the token cursor in ``cursor.py``, tokens in ``lexer.py``.

Grammar (precedence low to high: ``+ -``, ``* / %``, ``^``, unary minus)::

    query     = log_query | expr
    expr      = term { ("+" | "-") term }            term = power { ("*" | "/" | "%") power }
    power     = unary [ "^" power ]                   unary = [ "-" ] primary
    primary   = NUMBER | "(" expr ")" | "vector" "(" NUMBER ")" | range_agg | vector_agg
    range_agg = RANGE_OP "(" log_query "[" DURATION "]" ")"  (the range may also follow the selector)
    vector_agg= AGG_OP [grouping] "(" [NUMBER ","] expr ")" [grouping]
    grouping  = ("by" | "without") "(" [IDENT { "," IDENT }] ")"
    log_query = see logquery.py

Invariants:
- Every error is ``LogQLError`` with the 1-based column of the token at fault, worded like Loki's
  (``parse error at line 1, col 7: ...``); a construct of full LogQL that this subset does not
  implement is named as unsupported (``UNSUPPORTED_FUNCS``, ``logquery.UNSUPPORTED_STAGES``),
  never misread as something else.
- Regular expressions are compiled while parsing (``cursor.TokenCursor.compile``) so that a bad
  one is a parse error.
- Bounded: at most ``cursor.MAX_DEPTH`` levels of nesting (the lexer bounds the length).
"""

from __future__ import annotations

from zlog.loki import ast
from zlog.loki.lexer import LogQLError, duration_ms
from zlog.loki.logquery import LogQueryParser

RANGE_OPS = ("count_over_time", "rate", "bytes_over_time", "bytes_rate")
AGG_OPS = ("sum", "count", "avg", "min", "max", "topk", "bottomk")
UNSUPPORTED_FUNCS = ("sum_over_time", "avg_over_time", "min_over_time", "max_over_time", "stddev_over_time",
                     "stdvar_over_time", "quantile_over_time", "first_over_time", "last_over_time",
                     "absent_over_time", "rate_counter", "stddev", "stdvar", "sort", "sort_desc",
                     "label_replace", "sqrt", "ceil", "floor", "round", "abs")


class _Parser(LogQueryParser):
    def query(self) -> ast.Query:
        q: ast.Query = self.log_query() if self.tok.text == "{" else self.expr()
        if self.tok.kind != "end":
            if self.tok.text == "[":
                raise LogQLError("a range vector needs a function around it, such as count_over_time(...)",
                                 self.tok.col)
            raise self.error("expected end of query")
        return q

    def expr(self) -> ast.Expr:
        self.enter()
        left = self.term()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.take().text
            left = ast.BinOp(op, left, self.term())
        if self.tok.kind == "op" and self.tok.text in ("==", "!=", ">", "<", ">=", "<="):
            raise LogQLError(f"unsupported: comparison operator {self.tok.text} between expressions", self.tok.col)
        self.depth -= 1
        return left

    def term(self) -> ast.Expr:
        left = self.power()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "%"):
            op = self.take().text
            left = ast.BinOp(op, left, self.power())
        return left

    def power(self) -> ast.Expr:
        base = self.unary()
        if self.accept("^"):
            self.enter()
            right = self.power()
            self.depth -= 1
            return ast.BinOp("^", base, right)
        return base

    def unary(self) -> ast.Expr:
        if self.accept("-"):
            self.enter()
            inner = self.unary()
            self.depth -= 1
            return ast.Number(-inner.value) if isinstance(inner, ast.Number) else ast.BinOp("*", ast.Number(-1), inner)
        self.accept("+")
        return self.primary()

    def primary(self) -> ast.Expr:
        t = self.tok
        if t.kind == "number":
            self.take()
            return ast.Number(float(t.text))
        if t.text == "(":
            self.take()
            e = self.expr()
            self.expect(")")
            return e
        if t.kind == "ident":
            name = t.text
            if name == "vector":
                self.take()
                self.expect("(")
                n = self.expect_kind("number", "a number")
                self.expect(")")
                return ast.Vector(float(n.text))
            if name in RANGE_OPS:
                return self.range_agg()
            if name in AGG_OPS:
                return self.vector_agg()
            if name in UNSUPPORTED_FUNCS:
                raise LogQLError(f"unsupported function {name}: zlog's LogQL has {', '.join(RANGE_OPS + AGG_OPS)}",
                                 t.col)
            if name in ("on", "ignoring", "group_left", "group_right", "bool", "offset", "unwrap"):
                raise LogQLError(f"unsupported: {name}", t.col)
        if t.text == "{":
            raise LogQLError("a log query cannot be used inside a metric expression; wrap it in count_over_time(...[range])",
                             t.col)
        if t.kind == "op" and t.text in ("==", "!=", ">", "<", ">=", "<="):
            raise LogQLError(f"unsupported: comparison operator {t.text} between expressions", t.col)
        raise self.error("expected a number, vector(...), a range aggregation or an aggregation")

    def range_agg(self) -> ast.RangeAgg:
        op = self.take().text
        self.expect("(")
        if self.tok.text != "{":
            raise self.error(f"expected a log query inside {op}(...)")
        matchers = self.selector()
        rng = self.maybe_range()
        stages = self.stages()
        if rng is None:
            rng = self.maybe_range()
        if rng is None:
            raise self.error("expected a range such as [5m]")
        if self.tok.text == "offset":
            raise LogQLError("unsupported: offset", self.tok.col)
        if self.tok.text == "|" and self.peek().text == "unwrap":
            raise LogQLError("unsupported: unwrap", self.peek().col)
        self.expect(")")
        return ast.RangeAgg(op, ast.LogQuery(matchers, stages), rng)

    def maybe_range(self) -> int | None:
        if not self.accept("["):
            return None
        d = self.expect_kind("duration", "a duration such as 5m")
        if self.tok.text == ":":
            raise LogQLError("unsupported: subqueries", self.tok.col)
        self.expect("]")
        ms = duration_ms(d.text)
        if ms <= 0:
            raise LogQLError("the range must be positive", d.col)
        return ms

    def vector_agg(self) -> ast.VectorAgg:
        op = self.take().text
        by, without = self.grouping()
        self.expect("(")
        param = None
        if op in ("topk", "bottomk"):
            n = self.expect_kind("number", f"{op}'s k, a whole number")
            if not n.text.isdigit() or int(n.text) < 1:
                raise LogQLError(f"{op}'s k must be a whole number >= 1", n.col)
            param = int(n.text)
            self.expect(",")
        inner = self.expr()
        self.expect(")")
        if by is None and without is None:
            by, without = self.grouping()
        return ast.VectorAgg(op, inner, by, without, param)

    def grouping(self) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
        if self.tok.text not in ("by", "without"):
            return None, None
        kind = self.take().text
        self.expect("(")
        names: list[str] = []
        while self.tok.text != ")":
            names.append(self.expect_kind("ident", "a label name").text)
            if not self.accept(","):
                break
        self.expect(")")
        return (tuple(names), None) if kind == "by" else (None, tuple(names))


def parse(text: str) -> ast.Query:
    """Parse a LogQL query of the subset; raises ``LogQLError``."""
    if not text.strip():
        raise LogQLError("syntax error: empty query", 1)
    return _Parser(text).query()


def parse_log_query(text: str) -> ast.LogQuery:
    q = parse(text)
    if not isinstance(q, ast.LogQuery):
        raise LogQLError("expected a log query (a stream selector and its pipeline)", 1)
    return q
