"""OTLP failure answers: what a client retries (429/503 + Retry-After) and what it must not (400)."""

from __future__ import annotations

import json

from zlog.gateway.intake import RateLimited
from zlog.gateway.otlp import _failure
from zlog.protocol.errors import Backpressure, ZlogError


def test_our_trouble_is_retryable_with_retry_after() -> None:
    for exc in (ZlogError("NO_OWNER"), ZlogError("TIMEOUT"), Backpressure("busy"), ZlogError("DISK_FULL")):
        r = _failure(exc, 3, as_json=True)
        assert r.status == 503 and r.headers["Retry-After"] == "3", exc.code
        assert r.body is not None and json.loads(bytes(r.body))["code"] == 14  # UNAVAILABLE
    r = _failure(RateLimited("slow down", 2), 2, as_json=False)
    assert r.status == 429 and r.headers["Retry-After"] == "2"
    assert r.body is not None and bytes(r.body)[:2] == b"\x08\x08"  # RESOURCE_EXHAUSTED


def test_the_callers_fault_is_not_retryable() -> None:
    for code, status in (("INVALID_RECORD", 400), ("PAYLOAD_TOO_LARGE", 413), ("UNSUPPORTED_MEDIA_TYPE", 415)):
        r = _failure(ZlogError(code, "why"), 1, as_json=True)
        assert r.status == status and "Retry-After" not in r.headers
        assert r.body is not None and json.loads(bytes(r.body)) == {"code": 3, "message": f"{code}: why"}
