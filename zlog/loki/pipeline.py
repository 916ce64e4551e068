"""A LogQL log query run on stored records: selector, line filters, parsers, label filters, line_format (pure).

A stored record's **stream labels** are its ``labels`` and structured ``metadata``, plus ``service``
and ``level`` unless its labels already name them (a record pushed over Loki keeps the stream it
was pushed with; an empty level is no label). A selector matcher looks a
name up in the stream labels and then among the record's other top-level string fields
(``client_ip``, ``ingested_node_id``, ...), so the original's records answer
``{service="auth_service", level="ERROR"}``. The **log line** is the record's ``message``.

Invariants:
- ``compile_log(q)(record)`` is None when the record does not match, else the entry's labels
  (stream labels plus what ``| json`` / ``| logfmt`` extracted) and its line after ``line_format``.
- Regex matchers are anchored (they match the whole value), line-filter regexes search, as in Loki;
  every regex runs under the ``regex`` module's timeout: a pattern too expensive for one record
  raises ``BadParameter('query', ...)`` (400), never stalls the worker.
- The bytes pre-check (``compile_log_query``) only ever rejects lines that cannot match: it looks
  for the orjson-escaped form of values and needles that must occur in the stored line.
- Extracted names are sanitised to ``[A-Za-z0-9_]`` and get the suffix ``_extracted`` when they would
  overwrite a stream label; a line that is not JSON (``| json``) gets ``__error__="JSONParserErr"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import regex

from zlog.loki import ast
from zlog.loki.logql import parse_log_query
from zlog.protocol.errors import BadParameter
from zlog.read.counting import stream_identity
from zlog.read.query import Filter
from zlog.security.regexes import compile_bounded

REGEX_TIMEOUT_S = 0.05
SERVICE_LABELS = ("service_name", "service", "app", "job")  # as zlog.ingest.loki picks the service
LEVEL_LABELS = ("level", "detected_level", "severity", "lvl", "loglevel")
Entry = tuple[dict[str, str], str]
_LOGFMT = regex.compile(r'([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))')
_BAD_NAME = regex.compile(r"[^A-Za-z0-9_]")
_TEMPLATE = regex.compile(r"\{\{\s*(?:\.([A-Za-z_][A-Za-z0-9_]*)|(__line__))\s*\}\}")


def stream_labels(rec: dict[str, Any]) -> dict[str, str]:
    labels = rec.get("labels")
    out = {str(k): v if type(v) is str else str(v) for k, v in labels.items()} if type(labels) is dict else {}
    svc, lvl = rec.get("service"), rec.get("level")
    # A record pushed by a Loki client got its service and level from its stream's labels: its
    # stream stays the labels it was pushed with. The others' fields become labels.
    if type(svc) is str and svc and not any(k in out for k in SERVICE_LABELS):
        out["service"] = svc
    if type(lvl) is str and lvl and not any(k in out for k in LEVEL_LABELS):
        out["level"] = lvl
    meta = rec.get("metadata")
    if type(meta) is dict:  # structured metadata: labels of the entry, as Loki shows them
        for k, v in meta.items():
            out.setdefault(str(k), v if type(v) is str else str(v))
    return out


def _lookup(rec: dict[str, Any], labels: dict[str, str], name: str) -> str:
    if name == "service":
        # Always the record's service, the partition key (a stream may carry both service_name and
        # a different service label): a service= matcher then reads exactly one partition.
        svc = rec.get("service")
        if type(svc) is str:
            return svc
    v = labels.get(name)
    if v is not None:
        return v
    field = rec.get(name) if name not in ("message", "labels", "timestamp") else None
    return field if type(field) is str else ""


def _timed(p: regex.Pattern[str], text: str, anchored: bool) -> bool:
    try:
        m = p.fullmatch(text, timeout=REGEX_TIMEOUT_S) if anchored else p.search(text, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        raise BadParameter("query", f"regular expression {p.pattern!r} too expensive: one match took over "
                                    f"{REGEX_TIMEOUT_S}s") from None
    return m is not None


def _matcher(m: ast.Matcher) -> Callable[[dict[str, Any], dict[str, str]], bool]:
    name, value = m.name, m.value
    if m.op == "=":
        return lambda rec, labels: _lookup(rec, labels, name) == value
    if m.op == "!=":
        return lambda rec, labels: _lookup(rec, labels, name) != value
    p = compile_bounded(value)
    want = m.op == "=~"
    return lambda rec, labels: _timed(p, _lookup(rec, labels, name), True) is want


def _line_filter(f: ast.LineFilter) -> Callable[[str], bool]:
    v = f.value
    if f.op == "|=":
        return lambda line: v in line
    if f.op == "!=":
        return lambda line: v not in line
    p = compile_bounded(v)
    want = f.op == "|~"
    return lambda line: _timed(p, line, False) is want


def _name(key: str, labels: dict[str, str]) -> str:
    name = _BAD_NAME.sub("_", key)
    if not name or name[0].isdigit():
        name = "_" + name
    return name + "_extracted" if name in labels else name


def _flatten(obj: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for k, v in obj.items():
        key = f"{prefix}_{k}" if prefix else str(k)
        if type(v) is dict:
            _flatten(v, key, out)
        elif type(v) is str:
            out[key] = v
        elif type(v) is bool:
            out[key] = "true" if v else "false"
        elif type(v) is int or type(v) is float:
            out[key] = orjson.dumps(v).decode()
        # arrays and nulls are not extracted (as Loki's json parser without parameters)


def _parse_json(line: str, labels: dict[str, str]) -> None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    if type(obj) is not dict:
        labels["__error__"] = "JSONParserErr"
        return
    found: dict[str, str] = {}
    _flatten(obj, "", found)
    stream = dict(labels)
    for k, v in found.items():
        labels[_name(k, stream)] = v


def _parse_logfmt(line: str, labels: dict[str, str]) -> None:
    stream = dict(labels)
    for m in _LOGFMT.finditer(line):
        key, quoted, bare = m.group(1), m.group(2), m.group(3)
        value = bare if quoted is None else quoted.replace('\\"', '"').replace("\\\\", "\\")
        labels[_name(key, stream)] = value


def _label_cmp(c: ast.LabelCmp) -> Callable[[dict[str, str]], bool]:
    name, op, value = c.name, c.op, c.value
    if isinstance(value, str):
        if op == "=":
            return lambda labels: labels.get(name, "") == value
        if op == "!=":
            return lambda labels: labels.get(name, "") != value
        p = compile_bounded(value)
        want = op == "=~"
        return lambda labels: _timed(p, labels.get(name, ""), True) is want
    num = float(value)
    cmp: Callable[[float], bool] = {
        "==": lambda x: x == num, "!=": lambda x: x != num, ">": lambda x: x > num, ">=": lambda x: x >= num,
        "<": lambda x: x < num, "<=": lambda x: x <= num}[op]

    def check(labels: dict[str, str]) -> bool:
        try:
            return cmp(float(labels.get(name, "")))
        except ValueError:
            return False  # not a number: the comparison does not hold

    return check


def _label_filter(f: ast.LabelFilter) -> Callable[[dict[str, str]], bool]:
    alts = [[_label_cmp(c) for c in alt] for alt in f.alternatives]
    return lambda labels: any(all(c(labels) for c in alt) for alt in alts)


def _line_format(f: ast.LineFormat) -> Callable[[str, dict[str, str]], str]:
    template = f.template

    def render(line: str, labels: dict[str, str]) -> str:
        return _TEMPLATE.sub(lambda m: line if m.group(2) else labels.get(m.group(1), ""), template)

    return render


def compile_log(q: ast.LogQuery) -> Callable[[dict[str, Any]], Entry | None]:
    """The query as a function of a decoded stored record (see the module's invariants)."""
    matchers = [_matcher(m) for m in q.matchers]
    steps: list[tuple[str, Any]] = []
    for s in q.stages:
        if isinstance(s, ast.LineFilter):
            steps.append(("line", _line_filter(s)))
        elif isinstance(s, ast.Parser):
            steps.append(("parse", _parse_json if s.kind == "json" else _parse_logfmt))
        elif isinstance(s, ast.LabelFilter):
            steps.append(("labels", _label_filter(s)))
        elif isinstance(s, ast.Drop):
            steps.append(("drop", s.names))
        else:
            steps.append(("format", _line_format(s)))

    def run(rec: dict[str, Any]) -> Entry | None:
        labels = stream_labels(rec)
        for m in matchers:
            if not m(rec, labels):
                return None
        msg = rec.get("message")
        line = msg if type(msg) is str else ""
        for kind, fn in steps:
            if kind == "line":
                if not fn(line):
                    return None
            elif kind == "parse":
                fn(line, labels)
            elif kind == "labels":
                if not fn(labels):
                    return None
            elif kind == "drop":
                for name in fn:
                    labels.pop(name, None)
            else:
                line = fn(line, labels)
        return labels, line

    return run


def _escaped(text: str) -> bytes:
    return orjson.dumps(text)[1:-1]


def line_substrings(q: ast.LogQuery) -> list[str]:
    """Substrings every matching record's message holds: the ``|=`` filters before any line_format."""
    out: list[str] = []
    for s in q.stages:
        if isinstance(s, ast.LineFormat):
            break
        if isinstance(s, ast.LineFilter) and s.op == "|=" and s.value:
            out.append(s.value)
    return out


def needles(q: ast.LogQuery) -> list[bytes]:
    """Bytes that must occur in a stored line for ``q`` to match it (see the invariants)."""
    out = [_escaped(m.value) for m in q.matchers if m.op == "=" and m.value]
    for s in q.stages:
        if isinstance(s, ast.LineFormat):
            break
        if isinstance(s, ast.LineFilter) and s.op == "|=" and s.value:
            out.append(_escaped(s.value))
    return out


def label_key(labels: dict[str, str]) -> str:
    """A label set as one canonical string (sorted JSON object): a series' identity on the wire."""
    return orjson.dumps(dict(sorted(labels.items()))).decode()


def compile_log_query(text: str, *, need_line: bool = True) -> Callable[[bytes], tuple[str, str] | None]:
    """For workers: LogQL log-query text -> a function of a stored line: (label key, line) or None.

    With ``need_line=False`` (counting entries, or only testing for a match) and a pipeline that
    never looks at the line (only ``| drop`` and label filters), the answer depends on the record's
    fields but its timestamp, message and ``received_at``, so it is remembered per those bytes
    (``stream_identity``) and most lines cost no JSON parse; the line returned is then ``""``.
    """
    try:
        q = parse_log_query(text)
    except ValueError as exc:
        raise BadParameter("query", str(exc)) from None
    run = compile_log(q)
    must = needles(q)
    loads = orjson.loads

    def slow(line: bytes) -> tuple[str, str] | None:
        try:
            rec = loads(line)
        except orjson.JSONDecodeError:
            return None
        if type(rec) is not dict:
            return None
        out = run(rec)
        return None if out is None else (label_key(out[0]), out[1])

    cacheable = not need_line and all(isinstance(s, ast.Drop | ast.LabelFilter) for s in q.stages)
    cache: dict[bytes, tuple[str, str] | None] = {}

    def on_line(line: bytes) -> tuple[str, str] | None:
        for n in must:
            if n not in line:
                return None
        if not cacheable:
            return slow(line)
        ident = stream_identity(line)
        if ident is None:
            return slow(line)
        hit = cache.get(ident, _MISS)
        if hit is _MISS:
            out = slow(line)
            hit = None if out is None else (out[0], "")
            if len(cache) >= _CACHE_ENTRIES:
                cache.clear()
            cache[ident] = hit
        return hit

    return on_line


_MISS: Any = object()
_CACHE_ENTRIES = 4096


def prefilter(q: ast.LogQuery) -> Filter:
    """What the ``/v1/logs`` filter can say of ``q``: its ``service=`` matcher (it also scopes partitions)."""
    services = tuple(m.value for m in q.matchers if m.name == "service" and m.op == "=")
    return Filter(services=services[:1])
