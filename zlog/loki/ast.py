"""The LogQL subset's syntax tree (pure data, frozen).

A query is either a log query (``LogQuery``: stream selector + pipeline) or a metric expression
(``RangeAgg``, ``VectorAgg``, ``BinOp``, ``Number``, ``Vector``). ``LogQuery.text`` renders the log
part back to LogQL text: that text is what crosses the wire to the workers, which parse it again
(one grammar, no second encoding).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


def quote(text: str) -> str:
    return orjson.dumps(text).decode()


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def text(self) -> str:
        return f"{self.name}{self.op}{quote(self.value)}"


@dataclass(frozen=True, slots=True)
class LineFilter:
    op: str  # |= != |~ !~
    value: str

    def text(self) -> str:
        return f"{self.op} {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Parser:
    kind: str  # json | logfmt

    def text(self) -> str:
        return f"| {self.kind}"


@dataclass(frozen=True, slots=True)
class LabelCmp:
    name: str
    op: str  # = != =~ !~ == > >= < <=
    value: str | float

    def text(self) -> str:
        v = quote(self.value) if isinstance(self.value, str) else repr(self.value)
        return f"{self.name}{self.op}{v}"


@dataclass(frozen=True, slots=True)
class LabelFilter:
    """Comparisons joined by ``and`` (every one must hold) inside ``or`` alternatives."""

    alternatives: tuple[tuple[LabelCmp, ...], ...]

    def text(self) -> str:
        return "| " + " or ".join(" and ".join(c.text() for c in alt) for alt in self.alternatives)


@dataclass(frozen=True, slots=True)
class LineFormat:
    template: str

    def text(self) -> str:
        return f"| line_format {quote(self.template)}"


@dataclass(frozen=True, slots=True)
class Drop:
    names: tuple[str, ...]

    def text(self) -> str:
        return "| drop " + ", ".join(self.names)


Stage = LineFilter | Parser | LabelFilter | LineFormat | Drop


@dataclass(frozen=True, slots=True)
class LogQuery:
    matchers: tuple[Matcher, ...]
    stages: tuple[Stage, ...] = ()

    def text(self) -> str:
        sel = "{" + ", ".join(m.text() for m in self.matchers) + "}"
        return " ".join([sel, *(s.text() for s in self.stages)])


@dataclass(frozen=True, slots=True)
class RangeAgg:
    op: str  # count_over_time | rate | bytes_over_time | bytes_rate
    query: LogQuery
    range_ms: int


@dataclass(frozen=True, slots=True)
class VectorAgg:
    op: str  # sum | count | avg | min | max | topk | bottomk
    expr: Expr
    by: tuple[str, ...] | None = None
    without: tuple[str, ...] | None = None
    param: int | None = None  # topk's k


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # + - * / % ^
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Number:
    value: float


@dataclass(frozen=True, slots=True)
class Vector:
    """``vector(n)``: one series without labels, n at every step."""

    value: float


Expr = RangeAgg | VectorAgg | BinOp | Number | Vector
Query = LogQuery | Expr
