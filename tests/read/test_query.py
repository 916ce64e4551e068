"""The filter spec and line predicate (zlog.read.query), HTTP parameters (zlog.read.params) and paging (zlog.read.paging): pure, no I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.ingest.records import Limits, encode_batch
from zlog.protocol.errors import BadParameter
from zlog.read.paging import EXHAUSTED, Cursor, PageMerge, decode_cursor, timestamp_of, with_position
from zlog.read.params import parse_params, parse_time, to_params
from zlog.read.query import MAX_LIMIT, Filter, compile_filter

NOW = 1_800_000_000_000


def line_of(rec: dict[str, Any]) -> bytes:
    """Encode exactly as the gateway does, so the predicate sees real stored lines."""
    groups = encode_batch([rec], Limits(), received_at=NOW, client_ip="10.0.0.1", node_id="n1")
    return next(iter(groups.values())).lines[0]


def reference(f: Filter, rec: dict[str, Any]) -> bool:
    """The filter's meaning, written as plainly as possible."""
    msg = rec["message"]
    labels = rec.get("labels") or {}
    return (
        (not f.services or rec["service"] in f.services)
        and (not f.levels or rec.get("level", "").lower() in {lv.lower() for lv in f.levels})
        and (not f.contains or f.contains in msg)
        and (f.regex is None or re.search(f.regex, msg) is not None)
        and all(labels.get(k) == v for k, v in f.labels)
        and (f.since_ms is None or rec["timestamp"] >= f.since_ms)
        and (f.until_ms is None or rec["timestamp"] <= f.until_ms)
        and not any(
            (k == "service" and rec["service"] == v)
            or (k == "level" and rec.get("level", "").lower() == v.lower())
            or (k.startswith("label.") and labels.get(k[6:]) == v)
            for k, v in f.exclude
        )
    )


BASE = {"timestamp": 1000, "service": "auth_service", "level": "INFO", "message": "user token refreshed",
        "labels": {"region": "eu", "pod": "a-1"}}

CASES: list[tuple[str, Filter, dict[str, Any], bool]] = [
    ("empty filter matches", Filter(), BASE, True),
    ("service hit", Filter(services=("auth_service",)), BASE, True),
    ("service miss", Filter(services=("auth",)), BASE, False),
    ("one of services", Filter(services=("x", "auth_service")), BASE, True),
    ("service named only in a label", Filter(services=("eu",)),
     {**BASE, "labels": {"service": "eu"}}, False),
    ("service named in the message", Filter(services=("bob",)),
     {**BASE, "message": '"service":"bob"'}, False),
    ("level ignores case", Filter(levels=("info",)), BASE, True),
    ("level miss", Filter(levels=("ERROR", "WARN")), BASE, False),
    ("contains in message", Filter(contains="token"), BASE, True),
    ("contains only in service", Filter(contains="auth"), BASE, False),
    ("contains is case sensitive", Filter(contains="Token"), BASE, False),
    ("contains with quote", Filter(contains='say "hi"'), {**BASE, "message": 'they say "hi" twice'}, True),
    ("contains with backslash and newline", Filter(contains="a\\b\nc"), {**BASE, "message": "xa\\b\ncx"}, True),
    ("contains non-ascii", Filter(contains="héllo ✓"), {**BASE, "message": "say héllo ✓ now"}, True),
    ("regex", Filter(regex=r"tok(en|EN)\s+re"), BASE, True),
    ("regex miss", Filter(regex=r"^token"), BASE, False),
    ("label hit", Filter(labels=(("region", "eu"),)), BASE, True),
    ("label miss value", Filter(labels=(("region", "us"),)), BASE, False),
    ("label absent", Filter(labels=(("zone", "eu"),)), BASE, False),
    ("label text in message only", Filter(labels=(("k", "v"),)), {**BASE, "message": '"k":"v"'}, False),
    ("since inclusive", Filter(since_ms=1000), BASE, True),
    ("since after", Filter(since_ms=1001), BASE, False),
    ("until inclusive", Filter(until_ms=1000), BASE, True),
    ("until before", Filter(until_ms=999), BASE, False),
    ("exclude service", Filter(exclude=(("service", "auth_service"),)), BASE, False),
    ("exclude other service", Filter(exclude=(("service", "billing"),)), BASE, True),
    ("exclude level ignores case", Filter(exclude=(("level", "info"),)), BASE, False),
    ("exclude label", Filter(exclude=(("label.pod", "a-1"),)), BASE, False),
    ("exclude absent label keeps", Filter(exclude=(("label.zone", "eu"),)), BASE, True),
    ("exclude a label value named in the message", Filter(exclude=(("label.k", "v"),)),
     {**BASE, "message": '"k":"v"'}, True),
    ("include and exclude", Filter(levels=("INFO",), exclude=(("label.region", "us"),)), BASE, True),
    ("all together", Filter(("auth_service",), ("INFO",), "token", "refresh", (("pod", "a-1"),), 0, 2000),
     BASE, True),
]


@pytest.mark.parametrize(("name", "flt", "rec", "expected"), CASES, ids=[c[0] for c in CASES])
def test_predicate_cases(name: str, flt: Filter, rec: dict[str, Any], expected: bool) -> None:
    pred = compile_filter(flt)
    got = True if pred is None else pred(line_of(rec))
    assert got is expected
    assert reference(flt, rec) is expected


_text = st.text(alphabet=st.sampled_from(list('ab"\\\n é✓{}:,')), max_size=8)
_records = st.fixed_dictionaries({
    "timestamp": st.integers(0, 50),
    "service": st.sampled_from(["a", "b", 'q"x', "é"]),
    "level": st.sampled_from(["INFO", "info", "ERROR", "Warn", ""]),
    "message": _text.filter(bool),
    "labels": st.dictionaries(st.sampled_from(["k", "service", "é"]), _text, max_size=2),
})
_filters = st.builds(
    Filter,
    services=st.lists(st.sampled_from(["a", "b", 'q"x', "é"]), max_size=2, unique=True).map(tuple),
    levels=st.lists(st.sampled_from(["info", "ERROR", "warn"]), max_size=2, unique=True).map(tuple),
    contains=st.none() | _text.filter(bool),
    regex=st.none() | st.sampled_from(["a+", "^b", r"\\", "é$"]),
    labels=st.lists(st.tuples(st.sampled_from(["k", "service"]), _text), max_size=1).map(tuple),
    since_ms=st.none() | st.integers(0, 50),
    until_ms=st.none() | st.integers(0, 50),
    exclude=st.lists(st.tuples(st.sampled_from(["service", "level", "label.k", "label.service"]),
                               st.sampled_from(["a", 'q"x', "é", "info", "ERROR", "b\\"])),
                     max_size=2, unique=True).map(sorted).map(tuple),
)


@settings(max_examples=400, deadline=None)
@given(_filters, _records)
def test_predicate_equals_reference(flt: Filter, rec: dict[str, Any]) -> None:
    pred = compile_filter(flt)
    got = True if pred is None else pred(line_of(rec))
    assert got is reference(flt, rec)


@settings(max_examples=200, deadline=None)
@given(_filters)
def test_filter_body_round_trip(flt: Filter) -> None:
    if flt.since_ms is not None and flt.until_ms is not None and flt.since_ms > flt.until_ms:
        return
    assert Filter.from_body(flt.to_body()) == flt
    again = parse_params(to_params(flt), NOW)
    assert again.filter.to_body() == Filter(
        flt.services, tuple(dict.fromkeys(flt.levels)), flt.contains or None, flt.regex, flt.labels,
        flt.since_ms, flt.until_ms, flt.exclude,
    ).to_body()


def test_parse_params_full() -> None:
    q = parse_params([("service", "a"), ("service", "b"), ("level", "error,WARN"), ("contains", "tok"),
                      ("regex", "x+"), ("label.region", "eu"), ("since", "15m"),
                      ("until", "2027-01-15T10:00:00Z"), ("limit", "20"), ("direction", "forward")], NOW)
    f = q.filter
    assert f.services == ("a", "b") and f.levels == ("error", "WARN")
    assert f.contains == "tok" and f.regex == "x+" and f.labels == (("region", "eu"),)
    assert f.since_ms == NOW - 15 * 60_000
    assert f.until_ms == int(datetime(2027, 1, 15, 10, tzinfo=UTC).timestamp() * 1000)
    assert q.limit == 20 and q.backward is False and q.cursor is None


def test_parse_params_defaults() -> None:
    q = parse_params([], NOW)
    assert q.filter.is_empty() and q.limit == 100 and q.backward


@pytest.mark.parametrize(("pairs", "parameter"), [
    ([("limit", "0")], "limit"),
    ([("limit", str(MAX_LIMIT + 1))], "limit"),
    ([("limit", "ten")], "limit"),
    ([("direction", "sideways")], "direction"),
    ([("since", "yesterday")], "since"),
    ([("until", "2027-01-15T10:00:00")], "until"),
    ([("since", "2000"), ("until", "1000")], "since"),
    ([("regex", "(unclosed")], "regex"),
    ([("regex", "a" * 600)], "regex"),
    ([("cursor", "!!notbase64")], "cursor"),
    ([("cursor", "eyJ2IjoyfQ")], "cursor"),
    ([("service", "")], "service"),
    ([("label.", "x")], "label."),
    ([("-message", "x")], "-message"),
    ([("-service", "")], "-service"),
    ([("-label.", "x")], "-label."),
    ([("servce", "a")], "servce"),
    ([("limit", "1"), ("limit", "2")], "limit"),
])
def test_bad_parameters_name_the_parameter(pairs: list[tuple[str, str]], parameter: str) -> None:
    with pytest.raises(BadParameter) as err:
        parse_params(pairs, NOW)
    assert err.value.parameter == parameter
    assert err.value.http_status == 400
    assert err.value.to_json()["parameter"] == parameter


def test_parse_time_forms() -> None:
    assert parse_time("1700000000000", "since", NOW) == 1_700_000_000_000
    assert parse_time("2h", "since", NOW) == NOW - 7_200_000
    assert parse_time("500ms", "since", NOW) == NOW - 500
    assert parse_time("1970-01-01T00:00:01Z", "since", NOW) == 1000
    assert parse_time("1970-01-01T01:00:01+01:00", "since", NOW) == 1000


def test_cursor_round_trip_and_binding() -> None:
    f = Filter(services=("a",))
    c = Cursor(True, {0: 10, 3: EXHAUSTED}, f.digest())
    text = c.encode()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text)
    assert decode_cursor(text) == c
    assert parse_params([("service", "a"), ("cursor", text)], NOW).cursor == c
    with pytest.raises(BadParameter, match="other filters"):
        parse_params([("service", "b"), ("cursor", text)], NOW)
    with pytest.raises(BadParameter, match="other direction"):
        parse_params([("service", "a"), ("cursor", text), ("direction", "forward")], NOW)
    assert Cursor(True, {0: EXHAUSTED, 1: EXHAUSTED}).exhausted()
    assert not Cursor(False, {0: EXHAUSTED}).exhausted()


def test_timestamp_and_position_splice() -> None:
    line = line_of(BASE)
    assert timestamp_of(line) == 1000
    assert timestamp_of(b'{"service":"x","timestamp":42}') == 42
    assert timestamp_of(b"garbage") == 0
    rec = orjson.loads(with_position(line, 3, 77))
    assert rec["partition"] == 3 and rec["offset"] == 77 and rec["message"] == BASE["message"]
    assert orjson.loads(with_position(b"{}", 1, 2)) == {"partition": 1, "offset": 2}


def test_from_body_rejects_garbage() -> None:
    body: object
    for body in ([], {"services": "a"}, {"labels": {"a": 1}}, {"since": "x"}, {"nope": 1}):
        with pytest.raises(BadParameter):
            Filter.from_body(body)


# -- PageMerge: paging across partitions, simulated storage -----------------------------------


def _fake_search(recs: list[tuple[int, bytes]], keep: set[int], backward: bool, start: int | None, limit: int,
                 budget: int) -> tuple[list[tuple[int, bytes]], int | None]:
    """What a worker answers: matches in offset order, at most ``budget`` records scanned."""
    n = len(recs)
    off = (n - 1 if start is None else min(start, n - 1)) if backward else (0 if start is None else start)
    out: list[tuple[int, bytes]] = []
    scanned = 0
    while 0 <= off < n and len(out) < limit and scanned < budget:
        if off in keep:
            out.append(recs[off])
        off += -1 if backward else 1
        scanned += 1
    return out, (off if 0 <= off < n else None)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 30), max_size=25), min_size=1, max_size=4),
    st.integers(1, 7),
    st.integers(1, 5),
    st.booleans(),
    st.integers(0, 3),
)
def test_page_merge_never_gaps_or_repeats(stamps: list[list[int]], limit: int, budget: int, backward: bool,
                                          keep_mod: int) -> None:
    parts = {p: [(o, b'{"timestamp":%d,"x":1}' % ts) for o, ts in enumerate(tss)] for p, tss in enumerate(stamps)}
    keep = {p: {o for o in range(len(r)) if keep_mod == 0 or o % (keep_mod + 1) != 1} for p, r in parts.items()}
    expected = {(p, o) for p, ks in keep.items() for o in ks}
    seen: list[tuple[int, int]] = []
    cursor: Cursor | None = None
    for _ in range(500):
        merge = PageMerge(parts, backward, limit, cursor, "d")
        while not merge.run():
            for p, start in merge.wanted().items():
                recs, nxt = _fake_search(parts[p], keep[p], backward, start, limit - len(merge.out), budget)
                merge.feed(p, recs, nxt, len(parts[p]))
        page = [(p, o) for p, o, _ in merge.out]
        assert len(page) <= limit
        for p in parts:  # within a partition, a page follows offset order
            offs = [o for q, o in page if q == p]
            assert offs == sorted(offs, reverse=backward)
        seen += page
        if not merge.more():
            break
        cursor = decode_cursor(merge.cursor().encode())
    assert len(seen) == len(set(seen)), "a record was repeated"
    assert set(seen) == expected, "a record was skipped"


def test_a_catastrophic_regex_fails_the_search_instead_of_stalling_it() -> None:
    import time

    from zlog.read.query import REGEX_TIMEOUT_S

    line = orjson.dumps({"timestamp": 1, "service": "s", "level": "INFO", "message": "a" * 40 + "!",
                         "labels": {}})
    pred = compile_filter(Filter(regex="(a|aa)+$"))
    assert pred is not None
    t0 = time.monotonic()
    with pytest.raises(BadParameter) as info:
        pred(line)
    assert info.value.parameter == "regex"
    assert time.monotonic() - t0 < 20 * REGEX_TIMEOUT_S


def test_parse_params_exclusions() -> None:
    q = parse_params([("-service", "a"), ("-level", "debug,INFO"), ("-label.pod", "x"), ("-service", "a")], NOW)
    assert q.filter.exclude == (("label.pod", "x"), ("level", "INFO"), ("level", "debug"), ("service", "a"))
    assert q.filter.digest() != Filter().digest()  # a cursor made without them is refused
    with pytest.raises(BadParameter):
        Filter.from_body({"exclude": [["message", "x"]]})
    with pytest.raises(BadParameter):
        Filter.from_body({"exclude": [["service"]]})
