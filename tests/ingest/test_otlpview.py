"""The OTLP schema view against the mapping of the parsed message: the same records, or no answer."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from zlog.ingest import otlp, otlpview

RECEIVED = 1_796_000_000_123_456_789


def _same(data: bytes) -> bool:
    """Whether the view answered; when it did, its result is to_records' exactly."""
    try:
        req = otlp.decode_proto(data)
    except otlp.OtlpError:
        return False
    walked = otlpview.view(data, RECEIVED)
    if walked is None:
        return False
    exact = otlp.to_records(req, RECEIVED)
    assert [(g.labels, g.entries) for g in walked.groups] == [(g.labels, g.entries) for g in exact.groups]
    assert (walked.rejected, walked.reasons) == (exact.rejected, exact.reasons)
    return True


def _value(kv: Any, value: object) -> None:
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif value is not None:
        kv.value.string_value = str(value)


def build(resources: list[tuple[dict[str, object], str, list[dict[str, Any]]]]) -> bytes:
    req = ExportLogsServiceRequest()
    for attrs, scope, records in resources:
        rl = req.resource_logs.add()
        for k, v in attrs.items():
            _value(rl.resource.attributes.add(key=k), v)
        sl = rl.scope_logs.add()
        if scope:
            sl.scope.name, sl.scope.version = scope, scope[:2]
        for r in records:
            lr = sl.log_records.add()
            for k, v in r.items():
                if k == "body":
                    lr.body.string_value = v
                elif k == "attributes":
                    for ak, av in v.items():
                        _value(lr.attributes.add(key=ak), av)
                else:
                    setattr(lr, k, v)
    data: bytes = req.SerializeToString()
    return data


def test_common_requests_are_viewed() -> None:
    data = build([({"service.name": "api", "host": "h1" * 80}, "lib", [
        {"body": "one ü" * 40, "time_unix_nano": 1_796_000_000_123_456_789, "severity_text": "warning",
         "attributes": {"zb": "k:0", "i": "x" * 200}, "trace_id": bytes(range(16)), "span_id": b"\x01" * 8,
         "event_name": "ev", "flags": 1},
        {"body": "two", "observed_time_unix_nano": 5_000_000, "severity_number": 17},
        {"body": "three"},
    ]), ({}, "", [{"body": "x", "dropped_attributes_count": 2}])])
    assert _same(data)


def test_unusual_requests_take_the_exact_way() -> None:
    for records in ([{"severity_number": 30, "body": "x"}], [{"time_unix_nano": 1}], [{"body": ""}]):
        data = build([({"service.name": "s"}, "", records)])
        assert not _same(data)
        assert otlpview.view(data, RECEIVED) is None
    req = ExportLogsServiceRequest()
    req.resource_logs.add().scope_logs.add().log_records.add().body.int_value = 5
    assert otlpview.view(req.SerializeToString(), RECEIVED) is None
    for value in (3, True, 1.5, None):  # attribute values other than strings: the exact way
        assert not _same(build([({"service.name": "s", "k": value}, "", [{"body": "x"}])]))
    one = build([({"a": "1"}, "", [{"body": "x"}])])
    assert _same(one + one)  # resource_logs repeat: concatenated requests are one request


_scalar = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=6)
_record = st.fixed_dictionaries({}, optional={
    "body": st.text(max_size=8), "time_unix_nano": st.integers(0, 2**64 - 1),
    "observed_time_unix_nano": st.integers(0, 2**64 - 1), "severity_number": st.integers(0, 26),
    "severity_text": st.sampled_from(["", "INFO", "warning", "Err", "x"]),
    "attributes": st.dictionaries(st.text(max_size=4), _scalar, max_size=3),
    "trace_id": st.binary(max_size=16), "span_id": st.binary(max_size=8), "event_name": st.text(max_size=3)})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(["service.name", "host", "k"]), _scalar, max_size=3),
                          st.text(max_size=3), st.lists(_record, max_size=4)), max_size=3))
def test_generated_requests_agree_with_the_exact_mapping(resources: list[Any]) -> None:
    _same(build(resources))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_agree_or_go_the_exact_way(data: bytes) -> None:
    _same(data)
