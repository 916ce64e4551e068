"""OTLP mapping without I/O: levels, bodies, ids, timestamps, rejections, answers; fuzzed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from zlog.ingest import otlp

RECEIVED = 1_796_000_000_123_456_789


def recs(m: otlp.Mapped) -> list[dict[str, object]]:
    return [{"timestamp": e[0], "service": e[1], "level": e[2], "message": e[3], "metadata": e[4],
             "labels": g.labels} for g in m.groups for e in g.entries]


def request(**record: object) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "svc"
    lr = rl.scope_logs.add().log_records.add()
    for k, v in record.items():
        if k == "body":
            lr.body.string_value = str(v)
        else:
            setattr(lr, k, v)
    return req


@pytest.mark.parametrize(("number", "text", "level"), [
    (13, "WARN", "WARN"), (21, "FATAL", "FATAL"), (9, "", "INFO"), (1, "", "TRACE"), (24, "", "FATAL"),
    (0, "", ""), (0, "Warning", "WARN"), (17, "error", "ERROR"),
])
def test_levels(number: int, text: str, level: str) -> None:
    m = otlp.to_records(request(body="x", severity_number=number, severity_text=text), RECEIVED)
    assert [r["level"] for r in recs(m)] == [level]


def test_timestamps_fall_back_and_divide_exactly() -> None:
    # 1796000000123999999 ns as a float is 1796000000124000000: integer division keeps ...123 ms
    m = otlp.to_records(request(body="x", time_unix_nano=1796000000123999999), RECEIVED)
    assert recs(m)[0]["timestamp"] == 1796000000123
    m = otlp.to_records(request(body="x", observed_time_unix_nano=1796000000001000000), RECEIVED)
    assert recs(m)[0]["timestamp"] == 1796000000001
    m = otlp.to_records(request(body="x"), RECEIVED)
    assert recs(m)[0]["timestamp"] == RECEIVED // 1_000_000


def test_bad_records_are_rejected_alone_with_reasons() -> None:
    req = request(body="fine")
    lrs = req.resource_logs[0].scope_logs[0].log_records
    lrs.add().severity_number = 30  # type: ignore[assignment]
    lrs[-1].body.string_value = "bad severity"
    lrs.add()  # no body
    m = otlp.to_records(req, RECEIVED)
    assert [r["message"] for r in recs(m)] == ["fine"]
    assert m.rejected == 2
    assert any("30" in r for r in m.reasons) and any("body" in r for r in m.reasons)


def test_unknown_service_and_structured_bodies() -> None:
    req = ExportLogsServiceRequest()
    lr = req.resource_logs.add().scope_logs.add().log_records.add()
    lr.body.array_value.values.add().int_value = 5
    lr.body.array_value.values.add().string_value = "s"
    m = otlp.to_records(req, RECEIVED)
    assert recs(m)[0]["service"] == "unknown_service"
    assert recs(m)[0]["message"] == '[5,"s"]'


def test_answers_in_both_encodings() -> None:
    resp = ExportLogsServiceResponse()
    resp.ParseFromString(otlp.response(3, "why", as_json=False))
    assert (resp.partial_success.rejected_log_records, resp.partial_success.error_message) == (3, "why")
    assert json.loads(otlp.response(0, "", as_json=True)) == {}
    assert otlp.status(3, "bad", as_json=False) == b"\x08\x03\x12\x03bad"
    assert json.loads(otlp.status(14, "later", as_json=True)) == {"code": 14, "message": "later"}


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_protobuf_fuzz_never_crashes(data: bytes) -> None:
    try:
        m = otlp.to_records(otlp.decode_proto(data), RECEIVED)
    except otlp.OtlpError:
        return
    assert all(r["message"] for r in recs(m))


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["resourceLogs", "scopeLogs", "logRecords", "body", "stringValue",
                                         "traceId", "severityNumber", "timeUnixNano", "x"]), c, max_size=4),
                    max_leaves=25))
def test_json_fuzz_never_crashes(value: object) -> None:
    try:
        otlp.to_records(otlp.decode_json(json.dumps(value).encode()), RECEIVED)
    except otlp.OtlpError:
        pass
