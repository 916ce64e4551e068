"""The Loki push decoders and mapping, without I/O: label text, JSON, protobuf, legacy, validation, fuzz."""

from __future__ import annotations

import calendar
import json

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zlog.ingest import loki, protowire
from zlog.ingest.records import InvalidBatch, Limits, encode_batch
from zlog.ingest.timestamps import parse_rfc3339
from zlog.protocol.errors import ZlogError

NOW_MS = 1_796_000_000_000
NS = NOW_MS * 1_000_000


@pytest.mark.parametrize(("text", "labels"), [
    ('{a="b"}', {"a": "b"}),
    ('{ a = "b" , c="d\\"e" }', {"a": "b", "c": 'd"e'}),
    ('{job="x",level="info"}', {"job": "x", "level": "info"}),
    ("{}", {}),
    ('{a="line\\nbreak\\\\"}', {"a": "line\nbreak\\"}),
    ('{a="comma, and } brace"}', {"a": "comma, and } brace"}),
])
def test_label_text_is_parsed(text: str, labels: dict[str, str]) -> None:
    assert loki.parse_labels(text) == labels


@pytest.mark.parametrize("text", ['a="b"', '{a=b}', '{a="b"', '{a="b" c="d"}', '{a="b",a="c"}', '{a="\\q"}'])
def test_bad_label_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        loki.parse_labels(text)


@given(st.dictionaries(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True), st.text(max_size=20), max_size=6))
def test_format_then_parse_is_the_identity(labels: dict[str, str]) -> None:
    clean = {k: v.replace("\r", "").replace("\t", "") for k, v in labels.items()}
    assert loki.parse_labels(loki.format_labels(clean)) == clean


def test_rfc3339_exactly_to_the_nanosecond() -> None:
    utc_1230 = calendar.timegm((2026, 12, 4, 12, 30, 0, 0, 0, 0)) * 10**9
    assert parse_rfc3339("2026-12-04T18:00:00.123456789+05:30") == utc_1230 + 123456789
    assert parse_rfc3339("2026-12-04T12:30:00.123Z") == utc_1230 + 123_000_000
    assert parse_rfc3339("2026-12-04T07:30:00.1-05:00") == utc_1230 + 100_000_000
    assert parse_rfc3339("1970-01-01T00:00:00.000001-00:00") == 1000
    with pytest.raises(ValueError):
        parse_rfc3339("2026-12-04T18:00:00")  # no offset, none assumed
    assert parse_rfc3339("2026-12-04T18:00:00", default_offset_s=3600) == parse_rfc3339("2026-12-04T17:00:00Z")


def test_json_values_metadata_and_numbers() -> None:
    body = {"streams": [{"stream": {"app": "a", "n": 5, "ok": True},
                         "values": [[str(NS), "one"], [str(NS), "two", {"trace_id": "t", "n": 1.5}]]}]}
    recs, names = loki.to_records(loki.decode_json(json.dumps(body).encode()), loki.PushLimits(), NOW_MS)
    assert [r["message"] for r in recs] == ["one", "two"]
    assert recs[0]["labels"] == {"app": "a", "n": "5", "ok": "true", "source": "loki"}
    assert recs[1]["metadata"] == {"trace_id": "t", "n": "1.5"}
    assert "metadata" not in recs[0]
    assert names == ['{app="a", n="5", ok="true"}'] * 2
    groups = encode_batch(recs, Limits(), received_at=NOW_MS, client_ip="::1", node_id="n", with_metadata=True)
    line = json.loads(groups["a"].lines[1])
    assert list(line)[:6] == ["timestamp", "service", "level", "message", "labels", "metadata"]


def test_service_and_level_come_from_the_labels() -> None:
    def one(labels: dict[str, str], meta: dict[str, str] | None = None) -> dict[str, object]:
        st_ = loki.Stream(labels, [(NS, "x", meta)])
        return loki.to_records([st_], loki.PushLimits(), NOW_MS)[0][0]

    assert one({"job": "j", "app": "a"})["service"] == "a"
    assert one({"job": "j", "service_name": "s"})["service"] == "s"
    assert one({"x": "1"})["service"] == '{x="1"}'
    assert one({"level": "warning"})["level"] == "WARN"
    assert one({"a": "b"}, {"detected_level": "critical"})["level"] == "FATAL"
    long = one({f"k{i}": "v" * 30 for i in range(10)})["service"]
    assert isinstance(long, str) and long.startswith("{streams:") and len(long) < 64


def test_protobuf_with_metadata_decodes() -> None:
    def f(num: int, payload: bytes) -> bytes:
        return bytes([num << 3 | 2, len(payload)]) + payload

    ts = bytes([0x08]) + _varint(NS // 10**9) + bytes([0x10]) + _varint(NS % 10**9 + 7)
    entry = f(1, ts) + f(2, b"hello") + f(3, f(1, b"k") + f(2, b"v"))
    raw = f(1, f(1, b'{app="p"}') + f(2, entry) + bytes([0x18, 0x01]))  # hash=1 is ignored
    streams = loki.decode_proto(loki.snappy_block(bytes(cramjam.snappy.compress_raw(raw)), 1 << 20))
    assert streams[0].labels == {"app": "p"}
    assert streams[0].entries == [(NS + 7, "hello", {"k": "v"})]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_snappy_size_is_checked_before_inflating() -> None:
    body = bytes(cramjam.snappy.compress_raw(b"\x00" * 100_000))
    with pytest.raises(ZlogError) as err:
        loki.snappy_block(body, 50_000)
    assert err.value.code == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(("stream", "reason"), [
    ({"stream": {}, "values": [[str(NS), "x"]]}, "at least one label"),
    ({"stream": {"a-b": "x"}, "values": [[str(NS), "x"]]}, "invalid label name"),
    ({"stream": {"a": "x"}, "values": [["17960000000", "x"]]}, "too old"),
    ({"stream": {"a": "x"}, "values": [[str(NS + 11 * 60 * 10**9), "x"]]}, "too new"),
    ({"stream": {"a": "x"}, "values": [["1.5e18", "x"]]}, "not an integer"),
    ({"stream": {"a": "x"}, "values": [[str(NS), 5]]}, "must be a string"),
    ({"stream": {"a": {"b": 1}}, "values": [[str(NS), "x"]]}, "must be a string or a number"),
    ({"stream": {"a": "x"}, "values": [[str(NS)]]}, "each value must be"),
])
def test_loki_validation(stream: dict[str, object], reason: str) -> None:
    with pytest.raises(loki.PushError) as err:
        loki.to_records(loki.decode_json(json.dumps({"streams": [stream]}).encode()), loki.PushLimits(), NOW_MS)
    assert reason in err.value.reason


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_protobuf_fuzz_never_crashes(data: bytes) -> None:
    try:
        loki.decode_proto(data)
    except loki.PushError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                    max_leaves=20))
def test_json_fuzz_is_refused_by_name_or_mapped(value: object) -> None:
    body = json.dumps({"streams": [value]} if not isinstance(value, dict) else value).encode()
    for decode in (loki.decode_json, loki.decode_legacy):
        try:
            recs, _ = loki.to_records(decode(body), loki.PushLimits(), NOW_MS)
        except loki.PushError:
            continue
        assert all(isinstance(r["message"], str) and r["message"] for r in recs)


def test_protowire_rejects_truncation() -> None:
    for bad in (b"\x0a\x05ab", b"\x08", b"\x0b", b"\x00\x01", b"\x09\x00"):
        with pytest.raises(protowire.ProtoError):
            list(protowire.fields(bad))


def test_label_groups_encode_exactly_as_encode_batch() -> None:
    from zlog.ingest.streams import encode_groups

    body = {"streams": [
        {"stream": {"app": "a", "level": "warn"}, "values": [[str(NS), "one"], [str(NS + 1), "two", {"z": "1", "a": "2"}]]},
        {"stream": {"job": "j"}, "values": [[str(NS), "ünïcödé \n\"quoted\""], [str(NS), ""], [str(NS), "x" * 70_000],
                                            [str(NS), "m", {f"k{i}": "v" for i in range(70)}]]},
    ]}
    streams = loki.decode_json(json.dumps(body).encode())
    groups, _ = loki.to_groups(streams, loki.PushLimits(), NOW_MS)
    recs, _ = loki.to_records(streams, loki.PushLimits(), NOW_MS)
    kw = {"received_at": NOW_MS, "client_ip": "::1", "node_id": "n"}
    fast, refused = encode_groups(groups, Limits(), **kw)
    assert [(r.index, r.field) for r in refused] == [(3, "message"), (4, "message"), (5, "metadata")]
    good = [r for i, r in enumerate(recs) if i not in (3, 4, 5)]
    exact = encode_batch(good, Limits(), with_metadata=True, **kw)
    assert {k: g.lines for k, g in fast.items()} == {k: g.lines for k, g in exact.items()}
    assert {k: g.max_timestamp for k, g in fast.items()} == {k: g.max_timestamp for k, g in exact.items()}
    for r in refused:
        with pytest.raises(InvalidBatch) as err:
            encode_batch([recs[r.index]], Limits(), with_metadata=True, **kw)
        assert (err.value.errors[0].field, err.value.errors[0].problem) == (r.field, r.problem)
