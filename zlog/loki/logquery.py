"""The log query half of the LogQL subset: stream selector and pipeline stages (pure).

Grammar::

    log_query = "{" matcher { "," matcher } "}" { stage }
    matcher   = IDENT ("=" | "!=" | "=~" | "!~") STRING
    stage     = ("|=" | "!=" | "|~" | "!~") STRING | "|" ("json" | "logfmt") | "|" "line_format" STRING
              | "|" "drop" IDENT { "," IDENT }
              | "|" cmp { ("and" | "," | "or") cmp }
    cmp       = IDENT ("=" | "!=" | "=~" | "!~") STRING | IDENT ("==" | "!=" | ">" | ">=" | "<" | "<=") NUMBER

Invariants:
- A selector has at least one matcher that does not match the empty string, as Loki requires.
- A stage of full LogQL that this subset does not implement is named as unsupported
  (``UNSUPPORTED_STAGES``), never misread as a label filter.
- ``line_format`` templates use only ``{{.label}}`` and ``{{__line__}}`` (``check_template``).
"""

from __future__ import annotations

import re

from zlog.loki import ast
from zlog.loki.cursor import TokenCursor
from zlog.loki.lexer import LogQLError
from zlog.security.regexes import compile_bounded

UNSUPPORTED_STAGES = ("pattern", "regexp", "unpack", "label_format", "keep", "decolorize", "unwrap",
                      "distinct")
_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_TEMPLATE_FIELD = re.compile(r"^\.([A-Za-z_][A-Za-z0-9_]*)$|^(__line__)$")


def check_template(template: str, col: int) -> None:
    for m in _TEMPLATE.finditer(template):
        if not _TEMPLATE_FIELD.match(m.group(1)):
            raise LogQLError(f"unsupported line_format template action {{{{{m.group(1)}}}}}: only {{{{.label}}}} "
                             "and {{__line__}}", col)


class LogQueryParser(TokenCursor):
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
