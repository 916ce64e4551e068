"""The typed fast path of ``encode_body`` against the exact path it must agree with.

Invariants:
- For every body, ``encode_body`` returns exactly what ``encode_batch(parse_body(body))`` returns
  (groups byte for byte, and the record count), or raises the same named error.
- The fast path really is taken for ordinary bodies (else the equivalence would be vacuous).
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tools.loadgen import generate
from zlog.ingest import body as body_mod
from zlog.ingest.body import encode_body
from zlog.ingest.records import InvalidBatch, Limits, encode_batch, parse_body

ENRICH: dict[str, Any] = {"received_at": 1795675987238, "client_ip": "127.0.0.1", "node_id": "id-\"1\u00e9"}
SMALL = Limits(max_service_bytes=16, max_level_bytes=8, max_message_bytes=64, max_labels=3,
               max_label_key_bytes=8, max_label_value_bytes=16, max_record_bytes=400, max_records=50)


def exact(body: bytes, limits: Limits, ctype: str = "application/json") -> tuple[int, dict[str, Any]] | str:
    try:
        items = parse_body(body, ctype)
        groups = encode_batch(items, limits, **ENRICH)
    except InvalidBatch as exc:
        return orjson.dumps(exc.to_json()).decode()
    return len(items), {s: (g.data, g.count, g.max_timestamp) for s, g in groups.items()}


def fast(body: bytes, limits: Limits, ctype: str = "application/json") -> tuple[int, dict[str, Any]] | str:
    try:
        n, groups = encode_body(body, ctype, limits, **ENRICH)
    except InvalidBatch as exc:
        return orjson.dumps(exc.to_json()).decode()
    return n, {s: (g.data, g.count, g.max_timestamp) for s, g in groups.items()}


def test_the_load_generators_records_take_the_fast_path_and_match() -> None:
    records = generate(random.Random(3), 1_795_675_988_031, 500)
    records[7]["timestamp"] = None
    del records[8]["timestamp"]
    body = orjson.dumps(records)
    assert body_mod._fast(body, Limits(), ENRICH["received_at"], ENRICH["client_ip"], ENRICH["node_id"]) is not None
    assert fast(body, Limits()) == exact(body, Limits())


EDGE_RECORDS: list[Any] = [
    {"service": "s", "message": "m"},
    {"service": "s", "message": "m", "timestamp": 0, "level": "", "labels": {}},
    {"service": "s", "message": "m", "labels": None},
    {"service": "s", "message": "m", "labels": {"b": "2", "a": "1", "c": ""}},
    {"service": "s", "message": "m", "labels": {"a": "1", "b": "2", "c": "3", "d": "4"}},
    {"service": "s", "message": "m", "labels": {"": "x"}},
    {"service": "s", "message": "m", "labels": {"k": 1}},
    {"service": "s", "message": "m", "labels": []},
    {"service": "s", "message": "m", "timestamp": -1},
    {"service": "s", "message": "m", "timestamp": 1.0},
    {"service": "s", "message": "m", "timestamp": True},
    {"service": "s", "message": "m", "timestamp": (1 << 63) - 1},
    {"service": "s", "message": "m", "timestamp": 1 << 63},
    {"service": "s", "message": "m", "level": None},
    {"service": "s", "message": "m", "extra": {"x": [1, 2]}, "received_at": 5},
    {"service": "", "message": "m"},
    {"service": "s", "message": ""},
    {"service": 3, "message": "m"},
    {"message": "m"},
    {"service": "s"},
    {"service": "é" * 4, "message": "m"},
    {"service": "é" * 5, "message": "m"},
    {"service": "é" * 8, "message": "m"},
    {"service": "é" * 9, "message": "m"},
    {"service": "s", "message": "😀" * 16},
    {"service": "s", "message": "😀" * 17},
    {"service": "s", "message": "a\nb\u2028\x00\"\\</c>"},
    {"service": "s", "message": "x" * 64},
    {"service": "s", "message": "x" * 65},
    "not an object",
    None,
    [1],
]


@pytest.mark.parametrize("record", EDGE_RECORDS, ids=repr)
def test_each_edge_record_alone_and_among_valid_ones(record: Any) -> None:
    for items in ([record], [{"service": "a", "message": "m"}, record, {"service": "b", "message": "n"}]):
        body = orjson.dumps(items)
        for limits in (Limits(), SMALL):
            assert fast(body, limits) == exact(body, limits)


@pytest.mark.parametrize("body", [
    b"", b"[]", b"null", b"{}", b"3", b"[", b'{"service":"s","message":"m"}', b'["\\ud800"]',
    b'[{"service":"s","message":"\\ud800"}]', b'[{"service":"s","message":"\xff"}]',
    b'[{"service":"s","service":"t","message":"m"}]', b' [ {"service" : "s" , "message" : "m"} ] ',
])
def test_odd_bodies(body: bytes) -> None:
    for limits in (Limits(), SMALL):
        assert fast(body, limits) == exact(body, limits)


def test_ndjson_and_too_many_records_go_the_exact_way() -> None:
    nd = b'{"service":"s","message":"m"}\n\n{"service":"t","message":"n"}\n'
    assert fast(nd, SMALL, "application/x-ndjson") == exact(nd, SMALL, "application/x-ndjson")
    many = orjson.dumps([{"service": "s", "message": "m"}] * 51)
    assert fast(many, SMALL) == exact(many, SMALL)
    assert isinstance(fast(many, SMALL), str)


def test_the_record_size_limit_is_the_exact_paths_to_the_byte() -> None:
    items = [{"service": "s", "message": "x" * 60, "labels": {"k": "v" * 9}}, {"service": "s", "message": "y" * 30}]
    body = orjson.dumps(items)
    longest = max(len(line) for line in encode_batch(items, Limits(), **ENRICH)["s"].lines)
    outcomes = set()
    for n in range(longest - 40, longest + 40):  # the limit sweeps across both records' sizes
        limits = Limits(max_record_bytes=n)
        outcome = fast(body, limits)
        assert outcome == exact(body, limits)
        outcomes.add(isinstance(outcome, str))
    assert outcomes == {True, False}


text = st.text(alphabet=st.sampled_from(["a", "é", "😀", "\n", '"', "\x01"]), max_size=20)
record = st.fixed_dictionaries(
    {"service": st.one_of(text, st.integers(0, 3))},
    optional={"message": text, "level": st.one_of(text, st.none()),
              "timestamp": st.one_of(st.integers(-2, 1 << 64), st.none(), st.floats(0, 10)),
              "labels": st.one_of(st.none(), st.dictionaries(text, st.one_of(text, st.integers()), max_size=4))},
)


@settings(max_examples=300, deadline=None)
@given(st.lists(record, max_size=8))
def test_random_bodies_agree(items: list[dict[str, Any]]) -> None:
    body = json.dumps(items, ensure_ascii=False).encode()  # integers beyond 64 bits too
    assert fast(body, SMALL) == exact(body, SMALL)
