"""Bulk bodies and document mapping without I/O; fuzzed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.ingest import elastic

NOW = 1_796_000_000_000


def test_dotted_and_nested_keys_are_one_field() -> None:
    a = elastic.map_document({"service": {"name": "s"}, "log": {"level": "warn"}, "message": "m"}, "i", "", NOW)
    b = elastic.map_document({"service.name": "s", "log.level": "warn", "message": "m"}, "i", "", NOW)
    assert a == b
    assert (a["service"], a["level"], a["timestamp"]) == ("s", "WARN", NOW)


@pytest.mark.parametrize(("value", "ms"), [
    ("2026-12-04T18:00:00.123+05:30", 1796387400123), ("2026-12-04T12:30:00.123Z", 1796387400123),
    ("2026-12-04T12:30:00.123", 1796387400123), (1796387400123, 1796387400123), ("1796387400123", 1796387400123),
])
def test_timestamps(value: object, ms: int) -> None:
    assert elastic.map_document({"@timestamp": value, "message": "m"}, "i", "", NOW)["timestamp"] == ms


def test_a_document_without_message_is_kept_whole_and_service_falls_back_to_the_index() -> None:
    rec = elastic.map_document({"a": 1}, "idx", "id1", NOW)
    assert rec["message"] == '{"a":1}' and rec["service"] == "idx"
    assert rec["metadata"] == {"a": "1", "_id": "id1"}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(
    [b'{"index":{}}', b'{"create":{"_index":"x"}}', b'{"delete":{}}', b'{"update":{}}', b'{"message":"m"}',
     b'{"@timestamp":"bad"}', b"[]", b"{}"])), max_size=8))
def test_bulk_fuzz_never_crashes(lines: list[bytes]) -> None:
    try:
        items = elastic.parse_bulk(b"\n".join(lines), "", NOW)
    except elastic.BulkError:
        return
    for it in items:
        assert (it.record is None) == (it.status >= 400)
        json.dumps(elastic.item_answer(it, 0))


def test_the_spliced_answer_is_the_json_of_item_answer() -> None:
    items = elastic.parse_bulk(b'{"index":{"_index":"a\\"b"}}\n{"message":"m"}\n{"create":{"_id":"x1"}}\n{"message":"n"}\n'
                               b'{"delete":{"_id":"2"}}\n', "logs", NOW)
    items[0].status = items[1].status = 201
    got = json.loads(elastic.response(3, items, [7, 8, -1]))
    assert got == {"took": 3, "errors": True,
                   "items": [elastic.item_answer(items[0], 7), elastic.item_answer(items[1], 8),
                             elastic.item_answer(items[2], -1)]}
    assert got["items"][1]["create"]["_id"] == "x1" and len(got["items"][0]["index"]["_id"]) == 20


def test_preferred_fields_win_and_the_others_stay_as_metadata() -> None:
    rec = elastic.map_document({"timestamp": 5, "log": "from log", "@timestamp": 7, "message": "from message",
                                "level": 3, "severity": "warning", "app": "a", "service": {"name": "s"}},
                               "i", "", NOW)
    assert (rec["timestamp"], rec["message"], rec["service"], rec["level"]) == (7, "from message", "s", "WARN")
    assert rec["metadata"] == {"timestamp": "5", "log": "from log", "level": "3", "app": "a"}
