"""The LogQL subset's lexer and recursive-descent parser: text -> ``zlog.loki.ast`` (pure).

Grammar (precedence low to high: ``+ -``, ``* / %``, ``^``, unary minus)::

    query     = log_query | expr
    expr      = term { ("+" | "-") term }            term = power { ("*" | "/" | "%") power }
    power     = unary [ "^" power ]                   unary = [ "-" ] primary
    primary   = NUMBER | "(" expr ")" | "vector" "(" NUMBER ")" | range_agg | vector_agg
    range_agg = RANGE_OP "(" log_query "[" DURATION "]" ")"  (the range may also follow the selector)
    vector_agg= AGG_OP [grouping] "(" [NUMBER ","] expr ")" [grouping]
    grouping  = ("by" | "without") "(" [IDENT { "," IDENT }] ")"
    log_query = "{" matcher { "," matcher } "}" { stage }
    matcher   = IDENT ("=" | "!=" | "=~" | "!~") STRING
    stage     = ("|=" | "!=" | "|~" | "!~") STRING | "|" ("json" | "logfmt") | "|" "line_format" STRING
              | "|" "drop" IDENT { "," IDENT }
              | "|" cmp { ("and" | "," | "or") cmp }
    cmp       = IDENT ("=" | "!=" | "=~" | "!~") STRING | IDENT ("==" | "!=" | ">" | ">=" | "<" | "<=") NUMBER

Invariants:
- Every error is ``LogQLError`` with the 1-based column of the token at fault, worded like Loki's
  (``parse error at line 1, col 7: ...``); a construct of full LogQL that this subset does not
  implement is named as unsupported, never misread as something else.
- Regular expressions are compiled here (``regex`` module) so that a bad one is a parse error.
- Bounded: at most ``MAX_DEPTH`` levels of nesting (the lexer bounds the length).
"""

from __future__ import annotations

import re

import regex

from zlog.loki import ast
from zlog.loki.lexer import LogQLError, Token, duration_ms, tokenize, unquote
from zlog.security.regexes import compile_bounded

MAX_DEPTH = 32
RANGE_OPS = ("count_over_time", "rate", "bytes_over_time", "bytes_rate")
AGG_OPS = ("sum", "count", "avg", "min", "max", "topk", "bottomk")
UNSUPPORTED_FUNCS = ("sum_over_time", "avg_over_time", "min_over_time", "max_over_time", "stddev_over_time",
                     "stdvar_over_time", "quantile_over_time", "first_over_time", "last_over_time",
                     "absent_over_time", "rate_counter", "stddev", "stdvar", "sort", "sort_desc",
                     "label_replace", "sqrt", "ceil", "floor", "round", "abs")
UNSUPPORTED_STAGES = ("pattern", "regexp", "unpack", "label_format", "keep", "decolorize", "unwrap",
                      "distinct")
_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_TEMPLATE_FIELD = re.compile(r"^\.([A-Za-z_][A-Za-z0-9_]*)$|^(__line__)$")


def check_template(template: str, col: int) -> None:
    for m in _TEMPLATE.finditer(template):
        if not _TEMPLATE_FIELD.match(m.group(1)):
            raise LogQLError(f"unsupported line_format template action {{{{{m.group(1)}}}}}: only {{{{.label}}}} "
                             "and {{__line__}}", col)


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    # -- tokens -------------------------------------------------------------------------

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

    # -- queries ------------------------------------------------------------------------

    def query(self) -> ast.Query:
        q: ast.Query = self.log_query() if self.tok.text == "{" else self.expr()
        if self.tok.kind != "end":
            if self.tok.text == "[":
                raise LogQLError("a range vector needs a function around it, such as count_over_time(...)",
                                 self.tok.col)
            raise self.error("expected end of query")
        return q

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise LogQLError(f"query nested deeper than {MAX_DEPTH}", self.tok.col)

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

    # -- log queries --------------------------------------------------------------------

    def log_query(self) -> ast.LogQuery:
        matchers = self.selector()
        return ast.LogQuery(matchers, self.stages())

    def selector(self) -> tuple[ast.Matcher, ...]:
        start = self.expect("{")
        out: list[ast.Matcher] = []
        while self.tok.text != "}":
            name = self.expect_kind("ident", "a label name")
            if self.tok.kind != "op" or self.tok.text not in ("=", "!=", "=~", "!~"):
                raise self.error("expected one of =, !=, =~, !~")
            op = self.take().text
            value = self.string()
            if op in ("=~", "!~"):
                self.compile(value, name.col)
            out.append(ast.Matcher(name.text, op, value))
            if not self.accept(","):
                break
        self.expect("}")
        if not out:
            raise LogQLError("queries require at least one matcher", start.col)
        if all(m.op in ("!=", "!~") or (m.op == "=" and m.value == "")
               or (m.op == "=~" and compile_bounded(m.value).fullmatch("", timeout=0.1)) for m in out):
            raise LogQLError("queries require at least one label matcher that does not match the empty string",
                             start.col)
        return tuple(out)

    def string(self) -> str:
        return unquote(self.expect_kind("string", "a quoted string"))

    def compile(self, pattern: str, col: int) -> None:
        try:
            compile_bounded(pattern)
        except regex.error as exc:
            raise LogQLError(f"invalid regular expression {pattern!r}: {exc}", col) from None

    def stages(self) -> tuple[ast.Stage, ...]:
        out: list[ast.Stage] = []
        while True:
            t = self.tok
            if t.kind == "op" and t.text in ("|=", "!=", "|~", "!~"):
                self.take()
                value = self.string()
                if t.text in ("|~", "!~"):
                    self.compile(value, t.col)
                if self.tok.text == "or":
                    raise LogQLError("unsupported: 'or' between line filters", self.tok.col)
                out.append(ast.LineFilter(t.text, value))
                continue
            if t.text != "|" or self.peek().text == "unwrap":
                return tuple(out)
            self.take()
            word = self.tok
            if word.text in ("json", "logfmt"):
                self.take()
                if (self.tok.kind == "ident" and self.peek().text == "=") or self.tok.text.startswith("--"):
                    raise LogQLError(f"unsupported: parameters of | {word.text}", self.tok.col)
                out.append(ast.Parser(word.text))
            elif word.text == "line_format":
                self.take()
                template = self.string()
                check_template(template, word.col)
                out.append(ast.LineFormat(template))
            elif word.text == "drop":
                self.take()
                names = [self.expect_kind("ident", "a label name").text]
                while self.accept(","):
                    names.append(self.expect_kind("ident", "a label name").text)
                if self.tok.text in ("=", "=~", "!=", "!~"):
                    raise LogQLError("unsupported: | drop with label matchers", self.tok.col)
                out.append(ast.Drop(tuple(names)))
            elif word.text in UNSUPPORTED_STAGES:
                raise LogQLError(f"unsupported pipeline stage | {word.text}: zlog's LogQL has | json, | logfmt, "
                                 "| line_format, | drop and label filters", word.col)
            elif word.kind == "ident":
                out.append(self.label_filter())
            else:
                raise self.error("expected a pipeline stage")

    def label_filter(self) -> ast.LabelFilter:
        alts: list[list[ast.LabelCmp]] = [[self.label_cmp()]]
        while True:
            if self.accept("and") or self.accept(","):
                alts[-1].append(self.label_cmp())
            elif self.accept("or"):
                alts.append([self.label_cmp()])
            else:
                return ast.LabelFilter(tuple(tuple(a) for a in alts))

    def label_cmp(self) -> ast.LabelCmp:
        if self.tok.text == "(":
            raise LogQLError("unsupported: parentheses in label filters", self.tok.col)
        name = self.expect_kind("ident", "a label name")
        op = self.tok
        if op.kind != "op" or op.text not in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="):
            raise self.error("expected a comparison operator")
        self.take()
        v = self.tok
        if v.kind == "string":
            if op.text in (">", ">=", "<", "<="):
                raise LogQLError(f"{op.text} compares numbers, not strings", v.col)
            value: str | float = self.string()
            if op.text in ("=~", "!~"):
                self.compile(str(value), v.col)
            return ast.LabelCmp(name.text, "=" if op.text == "==" else op.text, value)
        if v.kind == "number":
            self.take()
            if op.text in ("=~", "!~"):
                raise LogQLError(f"{op.text} needs a quoted regular expression", v.col)
            return ast.LabelCmp(name.text, "==" if op.text in ("=", "==") else op.text, float(v.text))
        if v.kind == "duration" or (v.kind == "ident" and re.match(r"^\d", v.text)):
            raise LogQLError("unsupported: duration and bytes comparisons in label filters", v.col)
        raise self.error("expected a quoted string or a number")


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
