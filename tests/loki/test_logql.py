"""The LogQL parser as a table: accepted queries and their trees' text, rejected ones and their errors."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.loki import ast
from zlog.loki.logql import LogQLError, parse
from zlog.loki.metrics import Series, eval_times, evaluate, fmt, window_spec
from zlog.loki.pipeline import compile_log, compile_log_query
from zlog.loki.requests import parse_duration, parse_time
from zlog.protocol.errors import BadParameter
from zlog.read.counting import Counts

ACCEPTED = [
    ('{service="auth_service", level="ERROR"}', '{service="auth_service", level="ERROR"}'),
    ("{a!=`raw\\d`, b=~\"x|y\", c!~\"z.*\"}", '{a!="raw\\\\d", b=~"x|y", c!~"z.*"}'),
    ('{a="b"} |= "x" != "y" |~ "t[0-9]+" !~ "no"', '{a="b"} |= "x" != "y" |~ "t[0-9]+" !~ "no"'),
    ('{a="b"} | json | status >= 500 and method="GET" or level=~"err.*"',
     '{a="b"} | json | status>=500.0 and method="GET" or level=~"err.*"'),
    ('{a="b"} | logfmt | duration < 1.5', '{a="b"} | logfmt | duration<1.5'),
    ('{a="b"} | line_format "{{.a}} {{ .b }} {{__line__}}"', '{a="b"} | line_format "{{.a}} {{ .b }} {{__line__}}"'),
    ('{a="b"} | drop __error__, __error_details__', '{a="b"} | drop __error__, __error_details__'),
]

METRICS = [
    "vector(1)+vector(1)",
    'sum by (level) (count_over_time({service="x"} |= "token" [5m]))',
    'sum(count_over_time({a="b"}[1m])) by (level)',
    'topk(3, sum without (pod) (rate({a="b"} | json [1h30m])))',
    'avg(bytes_rate({a="b"}[30s])) / 2 - -1',
    'max(bytes_over_time({a="b"}[1m])) ^ 2 % 7',
    'count(count_over_time({a="b"} | drop __error__[1m]))',
    "(1 + 2) * 3",
]

REJECTED = [
    ("", 1, "empty query"),
    ('{service="x"', 13, "unexpected end of query"),
    ("{}", 1, "at least one matcher"),
    ('{a=""}', 1, "does not match the empty string"),
    ('{a=~".*"}', 1, "does not match the empty string"),
    ('{a="b"', 7, "expected"),
    ('{a=~"("}', 2, "invalid regular expression"),
    ('{a="b"} |~ "(?"', 9, "invalid regular expression"),
    ('{a="b"} | pattern "<ip> <_>"', 11, "unsupported pipeline stage | pattern"),
    ('{a="b"} | label_format x=y', 11, "unsupported pipeline stage | label_format"),
    ('{a="b"} | json x="y"', 16, "unsupported: parameters of | json"),
    ('{a="b"} | line_format "{{ .a | upper }}"', 11, "unsupported line_format template action"),
    ('{a="b"} | x > "s"', 15, "compares numbers"),
    ('{a="b"} | x > 5s', 15, "unsupported: duration"),
    ('{a="b"} |= "x" or "y"', 16, "unsupported: 'or' between line filters"),
    ('quantile_over_time(0.99, {a="b"} | unwrap d [1m])', 1, "unsupported function quantile_over_time"),
    ('sum_over_time({a="b"} | unwrap d [1m])', 1, "unsupported function sum_over_time"),
    ('rate({a="b"}[5m] offset 1h)', 18, "unsupported: offset"),
    ('count_over_time({a="b"})', 24, "expected a range"),
    ('{a="b"}[5m]', 8, "needs a function"),
    ('sum(rate({a="b"}[1m])) > 1', 24, "unsupported: comparison"),
    ('sum(rate({a="b"}[1m])) by (x', 29, "expected"),
    ('topk(x, rate({a="b"}[1m]))', 6, "topk's k"),
    ('rate({a="b"}[1m:10s])', 16, "unsupported: subqueries"),
    ('sum({a="b"})', 5, "cannot be used inside a metric expression"),
    ('{a="b"} @', 9, "unexpected character"),
    ('{a="b\\q"}', 4, "invalid escape"),
    ("(" * 100 + "1" + ")" * 100, 33, "nested deeper than 32"),
    ("-" * 5000 + "1", 33, "nested deeper than 32"),
    ("1" + "^1" * 3000, 65, "nested deeper than 32"),
]


@pytest.mark.parametrize(("query", "text"), ACCEPTED)
def test_accepted_log_queries_round_trip(query: str, text: str) -> None:
    q = parse(query)
    assert isinstance(q, ast.LogQuery)
    assert q.text() == text
    assert parse(q.text()) == q  # the text sent to workers parses to the same tree


@pytest.mark.parametrize("query", METRICS)
def test_accepted_metric_queries(query: str) -> None:
    q = parse(query)
    assert not isinstance(q, ast.LogQuery)


@pytest.mark.parametrize(("query", "col", "needle"), REJECTED)
def test_rejected_queries_name_the_column_and_the_problem(query: str, col: int, needle: str) -> None:
    with pytest.raises(LogQLError) as info:
        parse(query)
    assert info.value.col == col, str(info.value)
    assert needle in str(info.value)
    assert str(info.value).startswith(f"parse error at line 1, col {col}: ")


def rec(message: str, **kw: object) -> dict[str, object]:
    return {"timestamp": 1, "service": "api", "level": "ERROR", "message": message, "labels": {"env": "prod"}, **kw}


def test_pipeline_stream_labels_parsers_and_filters() -> None:
    run = compile_log(parse('{service="api", env=~"pr.*"} | json | status >= 500 | line_format "{{.status}} {{.user_id}}"'))  # type: ignore[arg-type]
    assert run(rec('{"status": 503, "user": {"id": "u1"}, "level": "x"}')) == (
        {"env": "prod", "service": "api", "level": "ERROR", "status": "503", "user_id": "u1", "level_extracted": "x"},
        "503 u1")
    assert run(rec('{"status": 200}')) is None
    assert run(rec("not json")) is None  # __error__ set, status missing: the filter drops it
    run = compile_log(parse('{client_ip="10.0.0.1"} | logfmt | msg="a b"'))  # type: ignore[arg-type]
    assert run(rec('msg="a b" took=5ms', client_ip="10.0.0.1")) is not None
    assert run(rec('msg="a b"', client_ip="10.0.0.2")) is None
    # A record pushed over Loki keeps its own stream: no service/level labels added beside app/level.
    run = compile_log(parse('{app="web"}'))  # type: ignore[arg-type]
    out = run({"timestamp": 1, "service": "web", "level": "INFO", "message": "m",
               "labels": {"app": "web", "level": "info", "source": "loki"}, "metadata": {"trace": "t1"}})
    assert out == ({"app": "web", "level": "info", "source": "loki", "trace": "t1"}, "m")


def test_expensive_regex_is_a_bad_parameter_not_a_stall() -> None:
    on_line = compile_log_query('{service="api"} |~ "(a|aa)+$"')
    line = orjson.dumps(rec("a" * 40 + "!"))
    with pytest.raises(BadParameter):
        on_line(line)


def test_window_buckets_and_evaluation() -> None:
    times = eval_times(60_000, 180_000, 60_000)
    assert window_spec(times, 120_000) == (-59_999, 60_000, 4)
    counts = Counts()
    key = orjson.dumps({"level": "ERROR"}).decode()
    for j, v in ((0, 1), (1, 2), (3, 5)):
        counts.add(key, j, v)
    q = parse('sum by (level) (count_over_time({a="b"}[2m]))')
    assert isinstance(q, ast.VectorAgg) and isinstance(q.expr, ast.RangeAgg)
    res = evaluate(q, times, {q.expr: counts})
    assert isinstance(res, dict)
    assert [s.points for s in res.values()] == [[3.0, 2.0, 5.0]]
    q2 = parse('rate({a="b"}[2m]) * 60 + vector(1)')
    assert isinstance(q2, ast.BinOp)
    inner = q2.left
    assert isinstance(inner, ast.BinOp) and isinstance(inner.left, ast.RangeAgg)
    res2 = evaluate(q2, times, {inner.left: counts})
    assert res2 == {}  # a labelled series and vector(1)'s empty label set do not match
    assert evaluate(parse("vector(1)+vector(1)"), times, {}) == {"{}": Series({}, [2.0, 2.0, 2.0])}  # type: ignore[arg-type]
    assert [fmt(v) for v in (2.0, 0.5, float("inf"), float("nan"))] == ["2", "0.5", "+Inf", "NaN"]


def test_loki_times_and_durations() -> None:
    assert parse_time("1700000000", "start", 0) == 1_700_000_000 * 10**9
    assert parse_time("1700000000123456789", "start", 0) == 1700000000123456789
    assert parse_time("1700000000.5", "start", 0) == 1_700_000_000_500_000_000
    assert parse_time("2023-11-14T22:13:20.25Z", "start", 0) == 1_700_000_000_250_000_000
    assert parse_time("", "start", 42) == 42
    assert parse_duration("1h30m", "step") == 5400 * 10**9 and parse_duration("15", "step") == 15 * 10**9
    assert parse_duration("1m0s", "step") == 60 * 10**9 and parse_duration("2.5s", "step") == 2_500_000_000
    for bad in ("yesterday", "1e999"):
        with pytest.raises(BadParameter):
            parse_time(bad, "start", 0)
    with pytest.raises(BadParameter):
        parse_duration("-5", "step")


def test_cached_label_sets_equal_the_full_evaluation() -> None:
    from zlog.ingest.records import Limits, encode_batch

    recs = [{"timestamp": 1_700_000_000_000 + i, "service": ["api", "web"][i % 2], "level": ["INFO", "ERROR"][i % 3 % 2],
             "message": f'm{i} "quoted", "labels": {{}}', "labels": {"env": ["prod", "dev"][i % 5 % 2]}}
            for i in range(60)]
    lines = [line for received in (1, 2) for g in encode_batch(recs, Limits(), received_at=received,
                                                                 client_ip=f"10.0.0.{received}", node_id="n").values()
             for line in g.lines]
    for text in ('{service=~"ap."} | drop env', '{env="prod"} | level="ERROR"', '{client_ip="10.0.0.2"}'):
        fast = compile_log_query(text, need_line=False)
        full = compile_log_query(text)
        got = [fast(line) for line in lines]
        assert got == [None if r is None else (r[0], "") for r in map(full, lines)]
        assert any(g is not None for g in got) and any(g is None for g in got)


FRAGMENTS = ['{', '}', '(', ')', '[', ']', ',', '|', '|=', '!=', '|~', '!~', '=~', '=', '==', '>', '>=', '"x"', '`y`',
             'a', 'service', 'json', 'logfmt', 'line_format', 'drop', 'sum', 'by', 'without', 'topk', 'rate',
             'count_over_time', 'vector', '1', '5m', '1.5', '+', '-', '*', '/', '^', 'and', 'or', '"{{.a}}"', '"("',
             '"\\\\q"', ' ', '#c\n']


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14) | st.text(max_size=40).map(lambda t: [t]))
def test_fuzzed_queries_parse_or_fail_with_a_located_error(parts: list[str]) -> None:
    text = "".join(parts)
    try:
        q = parse(text)
    except LogQLError as exc:
        assert 1 <= exc.col <= len(text) + 1
        return
    if isinstance(q, ast.LogQuery):
        assert parse(q.text()) == q


def test_service_matcher_is_the_record_service_the_partition_key() -> None:
    both = {"timestamp": 1, "service": "x", "level": "", "message": "m",
            "labels": {"service_name": "x", "service": "y"}}
    assert compile_log(parse('{service="x"}'))(both) is not None  # type: ignore[arg-type]
    assert compile_log(parse('{service="y"}'))(both) is None  # type: ignore[arg-type]
