"""OTLP/HTTP logs against a real cluster: the OpenTelemetry Python SDK's exporter, unmodified, and
hand-written OTLP/JSON; everything read back through /v1/logs."""

from __future__ import annotations

import gzip
import json
import logging
import time
import uuid
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tests._cluster import Cluster, http
from tests._intake import exactly, records

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(intake_cluster: Cluster) -> Cluster:
    return intake_cluster


def sdk_logger(service: str, exporter: OTLPLogExporter) -> tuple[logging.Logger, LoggerProvider]:
    provider = LoggerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(service)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
    return logger, provider


@pytest.mark.parametrize("route", ["otlp-gzip", "base-url"])
def test_the_python_sdk_exporter(cluster: Cluster, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = f"otel-{route}-{uuid.uuid4().hex[:6]}"
    if route == "base-url":
        # Only a base URL: the exporter posts protobuf to <base>/v1/logs, zlog's own ingest path.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", cluster.url)
        exporter = OTLPLogExporter()
    else:
        exporter = OTLPLogExporter(endpoint=cluster.url + "/otlp/v1/logs", compression=Compression.Gzip)
    logger, provider = sdk_logger(svc, exporter)
    seen: list[logging.LogRecord] = []
    logger.addFilter(lambda r: seen.append(r) or True)
    logger.debug("debugging %d", 1)
    logger.info("hello %s", "otel", extra={"user_id": 42, "path": "/x"})
    logger.warning("careful")
    logger.error("broken")
    logger.critical("on fire")
    provider.shutdown()
    got = exactly(cluster, svc, 5)
    by_msg = {r["message"]: r for r in got}
    assert [by_msg[m]["level"] for m in ("debugging 1", "hello otel", "careful", "broken", "on fire")] == \
        ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
    expect_ts = {r.getMessage(): int(r.created * 1e9) // 1_000_000 for r in seen}
    assert {r["message"]: r["timestamp"] for r in got} == expect_ts
    hello = by_msg["hello otel"]
    assert hello["labels"]["service.name"] == svc
    assert hello["labels"]["deployment.environment"] == "test"
    assert hello["labels"]["source"] == "otlp"
    assert hello["labels"]["telemetry.sdk.language"] == "python"
    assert hello["metadata"]["user_id"] == "42" and hello["metadata"]["path"] == "/x"
    assert hello["metadata"]["scope_name"] == svc


def _json_request(svc: str, now_ns: int) -> dict[str, Any]:
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
        "scopeLogs": [{"scope": {"name": "hand", "version": "1.0"}, "logRecords": [
            {"timeUnixNano": str(now_ns + 123_456_789), "severityNumber": 17, "severityText": "",
             "body": {"stringValue": "json one"}, "traceId": "5b8efff798038103d269b633813fc60c",
             "spanId": "eee19b7ec3c1b174", "attributes": [{"key": "n", "value": {"intValue": "7"}}]},
            {"observedTimeUnixNano": str(now_ns + 5_000_000), "severityNumber": "SEVERITY_NUMBER_WARN",
             "body": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": True}}]}}},
            {"timeUnixNano": str(now_ns), "severityNumber": 99, "body": {"stringValue": "bad severity"}},
            {"timeUnixNano": str(now_ns), "body": {"stringValue": "x" * (70 * 1024)}},
        ]}],
    }]}


def test_otlp_json_with_partial_success(cluster: Cluster) -> None:
    svc = f"otel-json-{uuid.uuid4().hex[:6]}"
    now_ns = time.time_ns()
    body = json.dumps(_json_request(svc, now_ns)).encode()
    for path in ("/otlp/v1/logs", "/v1/logs"):
        status, headers, data = http("POST", cluster.url + path, gzip.compress(body),
                                     {"Content-Type": "application/json", "Content-Encoding": "gzip",
                                      "Idempotency-Key": svc})
        assert status == 200, data
        assert headers["Content-Type"].startswith("application/json")
        answer = json.loads(data)
        assert answer["partialSuccess"]["rejectedLogRecords"] == "2"  # int64 as a string, as OTLP/JSON
        assert "99" in answer["partialSuccess"]["errorMessage"]
    got = exactly(cluster, svc, 2)  # the retry through /v1/logs carried the same Idempotency-Key
    assert got[0]["message"] == '{"k":true}' and got[0]["level"] == "WARN"
    assert got[0]["timestamp"] == (now_ns + 5_000_000) // 1_000_000
    assert got[1]["message"] == "json one" and got[1]["level"] == "ERROR"
    assert got[1]["timestamp"] == (now_ns + 123_456_789) // 1_000_000
    assert got[1]["metadata"] == {"n": "7", "scope_name": "hand", "scope_version": "1.0",
                                  "span_id": "eee19b7ec3c1b174", "trace_id": "5b8efff798038103d269b633813fc60c"}


def test_bad_otlp_bodies_get_otlp_errors_and_store_nothing(cluster: Cluster) -> None:
    svc = f"otel-bad-{uuid.uuid4().hex[:6]}"
    good = ExportLogsServiceRequest()
    rl = good.resource_logs.add()
    kv = rl.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", svc
    lr = rl.scope_logs.add().log_records.add()
    lr.body.string_value = "never stored"
    lr.time_unix_nano = time.time_ns()
    data = good.SerializeToString()
    for body, ctype in ((data[:-3], "application/x-protobuf"), (b"\xff\xff\xff", "application/x-protobuf"),
                        (b'{"resourceLogs": 5}', "application/json"),
                        (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}',
                         "application/json")):
        status, headers, answer = http("POST", cluster.url + "/otlp/v1/logs", body, {"Content-Type": ctype})
        assert status == 400, answer
        assert headers["Content-Type"].startswith(ctype)
        if ctype == "application/json":
            assert json.loads(answer)["code"] == 3
        else:
            assert answer[:2] == b"\x08\x03"  # google.rpc.Status code INVALID_ARGUMENT
    time.sleep(0.2)
    assert records(cluster, svc) == []
    status, _, answer = http("POST", cluster.url + "/otlp/v1/logs", data, {"Content-Type": "application/x-protobuf"})
    assert status == 200
    resp = ExportLogsServiceResponse()
    resp.ParseFromString(answer)
    assert not resp.HasField("partial_success")
    exactly(cluster, svc, 1)
