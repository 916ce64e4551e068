"""The label-group encoder's typed fast path against its exact path: the same bytes, or no answer."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.ingest import streams
from zlog.ingest.records import Limits
from zlog.ingest.streams import LabelGroup

KW: dict[str, Any] = {"received_at": 1_796_000_000_000, "client_ip": "::1", "node_id": "n\"1"}
SMALL = Limits(max_service_bytes=16, max_level_bytes=8, max_message_bytes=40, max_labels=3, max_label_key_bytes=8,
               max_label_value_bytes=12, max_record_bytes=400)


def _same(batches: list[LabelGroup], limits: Limits) -> bool:
    """Whether the fast path answered; when it did, its groups are the exact path's, byte for byte."""
    fast = streams._fast(batches, limits, KW["received_at"], KW["client_ip"], KW["node_id"])
    exact, refused = streams._exact(batches, limits, **KW)
    if fast is None:
        return False
    assert refused == []
    assert {k: (g.data, g.count, g.max_timestamp) for k, g in fast.items()} == \
        {k: (g.data, g.count, g.max_timestamp) for k, g in exact.items()}
    assert list(fast) == list(exact)  # services in order of first appearance
    return True


def test_common_groups_take_the_fast_path() -> None:
    batches = [
        LabelGroup({"service_name": "api", "source": "loki"}, [(5, "api", "INFO", "one", {"zb": "k:0"}),
                                                                (3, "api", "INFO", "two \"q\" ü\n", None)]),
        LabelGroup({"index": "x", "source": "elasticsearch"}, [(7, "web", "", "three", {"b": "1", "a": "2"}),
                                                                (9, "api", "WARN", "four", {})]),
        LabelGroup({"z": "1"}, []),
    ]
    assert _same(batches, Limits())
    groups, refused = streams.encode_groups(batches, Limits(), **KW)
    assert refused == [] and list(groups) == ["api", "web"] and groups["api"].count == 3


def test_anything_unusual_goes_the_exact_way() -> None:
    ok = (1, "s", "", "m", None)
    for entry in [(-1, "s", "", "m", None), (True, "s", "", "m", None), (1, "", "", "m", None), (1, "s", "", "", None),
                  (1, "s", "", "m", {"": "v"}), (1, "s", "", "m", {"k": 1}), (1, "s", "", "m" * 41, None),
                  (1, "s", "", "\ud800", None), (1, "s", "", "m", {"a": "1", "b": "2", "c": "3", "d": "4"})]:
        assert not _same([LabelGroup({"a": "b"}, [ok, entry])], SMALL), entry
    assert not _same([LabelGroup({"a": "b", "c": "d", "e": "f", "g": "h"}, [ok])], SMALL)
    assert not _same([LabelGroup({"a": "b"}, [(1, "s", "", "m" * 10, {"k": "v" * 3})] * 2)],
                     Limits(max_record_bytes=140))


_text = st.text(st.characters(codec="utf-8"), max_size=14)
_entry = st.tuples(st.integers(-2, 2**63), st.sampled_from(["s", "t", "ü" * 5, ""]), st.sampled_from(["", "INFO", "é" * 3]),
                   _text, st.none() | st.dictionaries(_text, _text, max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(_text, _text, max_size=4), st.lists(_entry, max_size=5)), max_size=4))
def test_random_groups_agree_with_the_exact_path(groups: list[tuple[dict[str, str], list[Any]]]) -> None:
    _same([LabelGroup(labels, entries) for labels, entries in groups], SMALL)
