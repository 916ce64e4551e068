"""Record parsing, validation, enrichment and the stored line format.

Invariants:
- The stored line is the original project's, byte for byte: field order, sorted labels, no spaces.
- A request is accepted whole or rejected whole, with the first offending indexes and fields named.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from zlog.ingest.records import (
    FIELD_ORDER,
    MAX_REPORTED_ERRORS,
    InvalidBatch,
    Limits,
    encode_batch,
    encode_one,
    parse_body,
)

ORIGINAL_BODY = (
    b'[{"timestamp":1795675988031,"service":"focus_allocator","level":"ERROR","message":"focus time suggestion '
    b'generated","labels":{"focus_type":"shallow_work","duration_minutes":"25"}},\n'
    b' {"timestamp":1795675988290,"service":"auth_service","level":"INFO","message":"user login successful"}]'
)
ORIGINAL_LINE = (
    b'{"timestamp":1795675988031,"service":"focus_allocator","level":"ERROR","message":"focus time suggestion '
    b'generated","labels":{"duration_minutes":"25","focus_type":"shallow_work"},"received_at":1795675987238,'
    b'"ingested_node_id":"id-string-1","client_ip":"127.0.0.1"}'
)
LIMITS = Limits()
ENRICH: dict[str, Any] = {"received_at": 1795675987238, "client_ip": "127.0.0.1", "node_id": "id-string-1"}


def encode(items: list[Any], limits: Limits = LIMITS) -> dict[str, list[bytes]]:
    return {s: list(g.lines) for s, g in encode_batch(items, limits, **ENRICH).items()}


def rejected(items: list[Any], limits: Limits = LIMITS) -> InvalidBatch:
    with pytest.raises(InvalidBatch) as info:
        encode_batch(items, limits, **ENRICH)
    return info.value


def test_the_original_example_body_is_stored_as_the_original_stores_it() -> None:
    groups = encode_batch(parse_body(ORIGINAL_BODY, "application/json"), LIMITS, **ENRICH)
    assert list(groups) == ["focus_allocator", "auth_service"]
    assert groups["focus_allocator"].lines == (ORIGINAL_LINE,)
    assert groups["focus_allocator"].max_timestamp == 1795675988031
    auth = json.loads(groups["auth_service"].lines[0])
    assert auth == {
        "timestamp": 1795675988290, "service": "auth_service", "level": "INFO",
        "message": "user login successful", "labels": {}, **{"received_at": 1795675987238,
        "ingested_node_id": "id-string-1", "client_ip": "127.0.0.1"},
    }


def test_field_order_of_the_stored_line() -> None:
    (line,) = encode([{"labels": {"b": "2", "a": "1"}, "message": "m", "service": "s", "level": "L", "timestamp": 5}])["s"]
    assert tuple(json.loads(line)) == FIELD_ORDER
    assert list(json.loads(line)["labels"]) == ["a", "b"]
    assert b" " not in line and b"\n" not in line


def test_groups_keep_request_order_and_max_timestamp() -> None:
    items = [{"service": s, "message": str(i), "timestamp": ts} for i, (s, ts) in
             enumerate([("a", 5), ("b", 1), ("a", 3), ("a", 9), ("b", 2)])]
    groups = encode_batch(items, LIMITS, **ENRICH)
    assert [json.loads(x)["message"] for x in groups["a"].lines] == ["0", "2", "3"]
    assert (groups["a"].max_timestamp, groups["b"].max_timestamp) == (9, 2)


def test_missing_optional_fields_take_defaults() -> None:
    (line,) = encode([{"service": "s", "message": "m"}])["s"]
    rec = json.loads(line)
    assert rec["timestamp"] == ENRICH["received_at"] and rec["level"] == "" and rec["labels"] == {}


def test_unknown_fields_are_ignored() -> None:
    (line,) = encode([{"service": "s", "message": "m", "timestamp": 1, "extra": {"x": 1}}])["s"]
    assert "extra" not in json.loads(line)


def test_unicode_and_control_characters_stay_one_line() -> None:
    msg = "naïve café ☕ 日本語 \U0001f600 line1\nline2\ttab \u2028 \"quoted\" \\"
    (line,) = encode([{"service": "sérvice", "message": msg, "timestamp": 1, "labels": {"ключ": "значение"}}])["sérvice"]
    assert b"\n" not in line and b"\r" not in line
    rec = json.loads(line.decode("utf-8"))
    assert rec["message"] == msg and rec["labels"] == {"ключ": "значение"}


def test_enrichment_values_are_json_escaped() -> None:
    groups = encode_batch([{"service": "s", "message": "m", "timestamp": 1}], LIMITS,
                          received_at=7, client_ip='::1"', node_id="n\n1")
    rec = json.loads(groups["s"].lines[0])
    assert (rec["received_at"], rec["client_ip"], rec["ingested_node_id"]) == (7, '::1"', "n\n1")


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({}, "service"),
        ({"service": "", "message": "m"}, "service"),
        ({"service": 5, "message": "m"}, "service"),
        ({"service": None, "message": "m"}, "service"),
        ({"service": "s"}, "message"),
        ({"service": "s", "message": ""}, "message"),
        ({"service": "s", "message": ["m"]}, "message"),
        ({"service": "s", "message": "m", "timestamp": -1}, "timestamp"),
        ({"service": "s", "message": "m", "timestamp": 1.5}, "timestamp"),
        ({"service": "s", "message": "m", "timestamp": "1795675988031"}, "timestamp"),
        ({"service": "s", "message": "m", "timestamp": True}, "timestamp"),
        ({"service": "s", "message": "m", "timestamp": 2**63}, "timestamp"),
        ({"service": "s", "message": "m", "level": 3}, "level"),
        ({"service": "s", "message": "m", "level": None}, "level"),
        ({"service": "s", "message": "m", "labels": ["a"]}, "labels"),
        ({"service": "s", "message": "m", "labels": "a=b"}, "labels"),
        ({"service": "s", "message": "m", "labels": {"a": 1}}, "labels"),
        ({"service": "s", "message": "m", "labels": {"a": {"b": "c"}}}, "labels"),
        ({"service": "s", "message": "m", "labels": {"a": None}}, "labels"),
        ({"service": "s", "message": "m", "labels": {"": "v"}}, "labels"),
        ("a string", ""),
        (None, ""),
        ([{"service": "s", "message": "m"}], ""),
    ],
)
def test_each_invalid_record_is_named_by_index_and_field(record: Any, field: str) -> None:
    good = {"service": "ok", "message": "fine", "timestamp": 1}
    err = rejected([good, record, good])
    assert err.code == "INVALID_RECORD" and err.http_status == 400
    assert [(e.index, e.field) for e in err.errors] == [(1, field)]
    assert err.invalid_count == 1
    body = err.to_json()
    assert body["errors"] == [{"index": 1, "field": field, "problem": err.errors[0].problem}]
    assert body["invalid_records"] == 1


def test_all_or_nothing_reports_the_first_few() -> None:
    items: list[Any] = [{"service": "s", "message": "m"} if i % 2 else {} for i in range(40)]
    err = rejected(items)
    assert err.invalid_count == 20
    assert [e.index for e in err.errors] == list(range(0, 2 * MAX_REPORTED_ERRORS, 2))
    assert "nothing was stored" in err.message


@pytest.mark.parametrize(
    ("limits", "record", "field"),
    [
        (Limits(max_service_bytes=4), {"service": "abcde", "message": "m"}, "service"),
        (Limits(max_service_bytes=4), {"service": "éé€", "message": "m"}, "service"),  # 7 UTF-8 bytes
        (Limits(max_message_bytes=10), {"service": "s", "message": "x" * 11}, "message"),
        (Limits(max_level_bytes=5), {"service": "s", "message": "m", "level": "CRITICAL"}, "level"),
        (Limits(max_labels=2), {"service": "s", "message": "m", "labels": {"a": "1", "b": "2", "c": "3"}}, "labels"),
        (Limits(max_label_key_bytes=3), {"service": "s", "message": "m", "labels": {"abcd": "1"}}, "labels"),
        (Limits(max_label_value_bytes=3), {"service": "s", "message": "m", "labels": {"a": "1234"}}, "labels"),
        (Limits(max_record_bytes=200), {"service": "s", "message": "m" * 150}, ""),
    ],
)
def test_limits(limits: Limits, record: dict[str, Any], field: str) -> None:
    err = rejected([record], limits)
    assert [(e.index, e.field) for e in err.errors] == [(0, field)]


def test_values_exactly_at_the_limits_are_accepted() -> None:
    limits = Limits(max_service_bytes=4, max_message_bytes=6, max_labels=1, max_label_key_bytes=2,
                    max_label_value_bytes=2)
    assert encode([{"service": "éé", "message": "€€", "labels": {"ab": "cd"}}], limits)


def test_too_many_records() -> None:
    err = rejected([{"service": "s", "message": "m"}] * 3, Limits(max_records=2))
    assert "too many records" in err.message


def test_a_stored_line_never_exceeds_max_record_bytes() -> None:
    limits = Limits(max_record_bytes=300, max_message_bytes=1000)
    for n in range(100, 300):
        try:
            groups = encode_batch([{"service": "s", "message": "x" * n, "timestamp": 1}], limits, **ENRICH)
        except InvalidBatch:
            continue
        assert len(groups["s"].lines[0]) <= 300


def test_encode_one() -> None:
    service, line, ts = encode_one({"service": "s", "message": "m", "timestamp": 42}, LIMITS, **ENRICH)
    assert (service, ts) == ("s", 42) and json.loads(line)["message"] == "m"


# -- request bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8", "", "text/plain",
                                   "application/x-www-form-urlencoded"])
def test_json_arrays_are_read_whatever_the_content_type(ctype: str) -> None:
    assert len(parse_body(ORIGINAL_BODY, ctype)) == 2


def test_a_single_object_is_one_record() -> None:
    assert parse_body(b'{"service":"s","message":"m"}', "application/json") == [{"service": "s", "message": "m"}]


@pytest.mark.parametrize("ctype", ["application/x-ndjson", "application/ndjson", "application/jsonl"])
def test_ndjson(ctype: str) -> None:
    body = b'{"service":"a","message":"1"}\r\n\n  \n{"service":"b","message":"2"}'
    assert [r["service"] for r in parse_body(body, ctype)] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "ctype", "needle"),
    [
        (b"", "application/json", "invalid JSON"),
        (b"[", "application/json", "invalid JSON"),
        (b"null", "application/json", "null"),
        (b"[]", "application/json", "empty"),
        (b"42", "application/json", "array"),
        (b'"x"', "application/json", "array"),
        (b"\xff\xfe", "application/json", "invalid JSON"),
        (b"\n\n", "application/x-ndjson", "no records"),
        (b'{"service":"a"}\n{bad', "application/x-ndjson", "line 2"),
    ],
)
def test_bad_bodies_are_400(body: bytes, ctype: str, needle: str) -> None:
    with pytest.raises(InvalidBatch) as info:
        parse_body(body, ctype)
    assert needle in info.value.message and info.value.http_status == 400


def test_ndjson_line_that_is_not_an_object_is_named_by_index() -> None:
    items = parse_body(b'{"service":"a","message":"1"}\n[1]\n', "application/x-ndjson")
    assert [(e.index, e.field) for e in rejected(items).errors] == [(1, "")]


def test_lone_surrogates_are_rejected_not_stored() -> None:
    try:
        items = parse_body(b'[{"service":"s","message":"\\ud800"}]', "application/json")
    except InvalidBatch:
        return  # refused at parse time: fine
    assert rejected(items).errors


def test_orjson_round_trip_of_every_stored_line() -> None:
    items = [{"service": f"svc{i % 3}", "message": f"m{i}", "timestamp": i, "level": "INFO",
              "labels": {"k": str(i)}} for i in range(100)]
    for lines in encode(items).values():
        for line in lines:
            rec = orjson.loads(line)
            assert orjson.dumps(rec) == line


def test_a_null_timestamp_is_the_received_time_like_a_missing_one() -> None:
    groups = encode_batch([{"service": "s", "message": "m", "timestamp": None}], LIMITS, **ENRICH)
    assert orjson.loads(groups["s"].lines[0])["timestamp"] == ENRICH["received_at"]
