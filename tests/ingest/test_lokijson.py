"""Loki push JSON's typed one-pass path against the exact one: the same groups, or no answer."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.ingest import loki, lokijson, streams
from zlog.ingest.records import Limits

NOW_MS = 1_796_000_000_000
NS = NOW_MS * 1_000_000
KW: dict[str, Any] = {"received_at": NOW_MS + 5, "client_ip": "::1", "node_id": "n"}
SMALL = Limits(max_message_bytes=40, max_labels=3, max_label_key_bytes=8, max_label_value_bytes=12,
               max_record_bytes=600)
DEFAULT, PUSH = Limits(), loki.PushLimits()


def _same(body: bytes, limits: Limits = DEFAULT, push_limits: loki.PushLimits = PUSH) -> bool:
    """Whether the fast path answered; when it did, the exact path stores the same bytes."""
    fast = lokijson.encode_push(body, push_limits, limits, now_ms=NOW_MS, source="loki", **KW)
    if fast is None:
        return False
    groups, count = fast
    batches, _ = loki.to_groups(loki.decode_json(body), push_limits, NOW_MS, "loki")
    exact, refused = streams.encode_groups(batches, limits, **KW)
    assert refused == []
    assert count == sum(len(b.entries) for b in batches)
    assert {k: (g.data, g.count, g.max_timestamp) for k, g in groups.items()} == \
        {k: (g.data, g.count, g.max_timestamp) for k, g in exact.items()}
    assert list(groups) == list(exact)
    return True


def _push(*streams_: tuple[dict[str, Any], list[Any]]) -> bytes:
    return json.dumps({"streams": [{"stream": labels, "values": values} for labels, values in streams_]}).encode()


def test_common_pushes_take_the_fast_path() -> None:
    assert _same(_push(({"service_name": "api", "level": "warn"}, [[str(NS), "one", {"zb": "k:0"}], [str(NS + 1), "two"]]),
                       ({"job": "j"}, [[str(NS), "ünï \"q\"\n", {"detected_level": "err"}], [str(NS), "x", {}]]),
                       ({"app": "a"}, [])))
    assert _same(b'{"streams": [{"stream": {"a": "b"}, "values": [["1796000000000000000", "m", null]]}], "x": 1}')


def test_anything_unusual_goes_the_exact_way() -> None:
    ok = [str(NS), "m"]
    for labels, value in [({"a": "b"}, [NS, "m"]), ({"a": 1}, ok), ({"a": "b"}, [str(NS), ""]),
                          ({"a": "b"}, [str(NS), "m", {}, 4]), ({"a": "b"}, [str(NS), "m", {"k": 1}]),
                          ({"a": "b"}, ["+1", "m"]), ({"a": "b"}, ["1" * 20, "m"]), ({}, ok), ({"a-b": "c"}, ok),
                          ({"a": "b"}, [str(NS - 8 * 24 * 3600 * 10**9), "m"]), ({"a": "b"}, [str(NS), "\ud800"])]:
        body = _push((labels, [ok, value]))
        assert not _same(body), (labels, value)
    assert not _same(_push(({"a": "b"}, [])))  # no entries at all: the exact path names it
    assert not _same(_push(({"a": "b"}, [ok] * 3)), push_limits=loki.PushLimits(max_entries=2))
    assert not _same(b"[]") and not _same(b"{")


_text = st.text(st.characters(codec="utf-8"), max_size=12)
_value = st.one_of(
    st.tuples(st.integers(NS - 10**12, NS + 10**12).map(str), _text),
    st.tuples(st.integers(NS - 10**12, NS + 10**12).map(str), _text,
              st.none() | st.dictionaries(st.sampled_from(["zb", "level", "trace_id", "", "kkkkkkkkk"]), _text, max_size=4)),
).map(list)
_labels = st.dictionaries(st.sampled_from(["app", "job", "level", "service_name", "x", "bad-name"]),
                          st.sampled_from(["a", "warn", "ü" * 4, "v" * 13, ""]), max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_labels, st.lists(_value, max_size=4)), max_size=3))
def test_random_pushes_agree_with_the_exact_path(pushed: list[tuple[dict[str, str], list[Any]]]) -> None:
    _same(_push(*pushed), SMALL)
    _same(_push(*pushed))
