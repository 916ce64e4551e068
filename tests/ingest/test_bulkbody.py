"""The bulk body's one-pass parse against parse_bulk + the label-group encoder: the same records, or none."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.ingest import bulkbody, elastic, streams
from zlog.ingest.records import Limits
from zlog.ingest.streams import LabelGroup

NOW = 1_796_000_000_000
KW: dict[str, Any] = {"client_ip": "::1", "node_id": "n"}


def _exact(body: bytes, limits: Limits) -> tuple[list[elastic.Item], dict[str, Any]]:
    items = elastic.parse_bulk(body, "", NOW)
    batches: list[LabelGroup] = []
    for it in items:
        rec = it.record
        if rec is None:
            continue
        if not batches or batches[-1].labels["index"] != it.index:
            batches.append(LabelGroup(rec["labels"]))
        batches[-1].entries.append((rec["timestamp"], rec["service"], rec["level"], rec["message"], rec.get("metadata")))
    groups, refused = streams.encode_groups(batches, limits, received_at=NOW, **KW)
    return items, {"groups": groups, "refused": refused}


def _same(body: bytes, limits: Limits = Limits()) -> bool:  # noqa: B008
    """Whether the one-pass parse answered; when it did, the exact path stores the same records."""
    fast = bulkbody.parse(body, "", NOW, limits, **KW)
    if fast is None:
        return False
    items, exact = _exact(body, limits)
    assert exact["refused"] == [] and all(it.status == 0 and it.record is not None for it in items)
    assert [(it.action, it.index) for it in items] == list(zip(fast.actions, fast.indexes, strict=True))
    given_ids = [it.doc_id for it in items]
    assert len(fast.ids) == len(given_ids) and all(len(i) == 20 or i == g for i, g in zip(fast.ids, given_ids, strict=True))

    def lines(groups: dict[str, Any], ids: list[str]) -> dict[str, list[Any]]:
        out = {}
        for svc, g in groups.items():  # generated ids differ per request: compare them by position
            recs = [orjson.loads(line) for line in g.lines]
            for r in recs:
                r["metadata"]["_id"] = ids.index(r["metadata"]["_id"])
            out[svc] = recs
        return out

    assert lines(fast.groups, fast.ids) == lines(exact["groups"], given_ids)
    assert list(fast.groups) == list(exact["groups"]) and fast.services == [it.record["service"] for it in items if it.record]
    return True


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()  # any integer, unlike orjson


def _bulk(*pairs: tuple[dict[str, Any], Any]) -> bytes:
    return b"".join(_json(a) + b"\n" + _json(d) + b"\n" for a, d in pairs)


def test_common_bodies_take_the_one_pass_way() -> None:
    body = _bulk(({"create": {"_index": "bench"}}, {"@timestamp": NOW, "message": "m", "service": {"name": "s"},
                                                    "log": {"level": "warning"}, "zb": "k:0"}),
                 ({"create": {"_index": "bench"}}, {"@timestamp": "2026-12-04T12:30:00.123Z", "message": "ü \"q\"",
                                                    "service": {"name": "t"}, "log": {"level": "x"}, "zb": "k:1"}),
                 ({"index": {"_id": "7"}}, {"msg": "m", "n": 1.5, "tags": ["a"], "deep": {"a": {"b": None}}}),
                 ({"index": {"_index": "other", "_id": "given"}}, {"a": 1}))
    assert _same(body)
    assert _same(body.rstrip(b"\n"))
    fast = bulkbody.parse(body, "", NOW, Limits(), **KW)
    assert fast is not None
    seqs = bulkbody.seq_numbers(fast.services, {s: 10 for s in fast.groups})
    answer = bulkbody.answer(3, fast, seqs)
    assert answer is not None
    items = bulkbody.items(fast)
    for it in items:
        it.status = 201
    assert json.loads(answer) == json.loads(elastic.response(3, items, seqs))


def test_unusual_bodies_go_the_exact_way() -> None:
    doc = {"message": "m"}
    for body in [_bulk(({"delete": {}}, doc)), _bulk(({"update": {}}, doc)), _bulk(({"index": {}}, [1])),
                 _bulk(({"index": {"_id": 7}}, doc)), _bulk(({"index": {"_id": 123456789012345678901234}}, doc)),
                 _bulk(({"index": {"_index": 5}}, doc)), _bulk(({"index": {}}, {"@timestamp": "bad", "message": "m"})),
                 _bulk(({"index": {}}, {"message": "m", "msg": "n"})), _bulk(({"index": {}}, {"message": ""})),
                 _bulk(({"index": {}}, {"message": "m", "n": 123456789012345678901})),
                 _bulk(({"index": {}}, {"@timestamp": -1, "message": "m"})),
                 b'{"index":{}}\n\n{"message":"m"}\n', b'{"index":{}}\r\n{"message":"m"}\r\n', b"", b"\n",
                 b'{"index":{}}\n{"message":"m"} {"a":1}\n', b'{"index":{}} {"message":"m"}\n']:
        assert not _same(body), body


_scalar = st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False) | st.text(max_size=5)
_doc = st.dictionaries(st.sampled_from(["message", "msg", "log", "@timestamp", "timestamp", "service", "app", "level",
                                        "severity", "x", "y.z"]),
                       _scalar | st.dictionaries(st.sampled_from(["name", "level", "a"]), _scalar, max_size=2), max_size=5)
_action = st.fixed_dictionaries({}, optional={"_index": st.sampled_from(["a", "b", ""]), "_id": st.sampled_from(["x", "", 3])})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["index", "create"]), _action, _doc), min_size=1, max_size=5))
def test_random_bodies_agree_with_the_exact_path(pairs: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    _same(_bulk(*(({a: m}, d) for a, m, d in pairs)))
