"""Per-client rate limits and client addresses behind trusted proxies."""

from __future__ import annotations

import json
from pathlib import Path

from tests._cluster import Cluster
from zlog.gateway.ratelimit import RateLimiter


def test_token_bucket_with_a_fake_clock() -> None:
    rl = RateLimiter(rate=100, burst_s=2.0)
    assert rl.admit("a", 150, now=0.0) == 0.0  # within the 200-record burst
    assert rl.admit("a", 100, now=0.0) == 0.5  # 50 left: 50 more take half a second
    assert rl.admit("b", 200, now=0.0) == 0.0  # buckets are per client
    assert rl.admit("a", 100, now=0.5) == 0.0  # refilled by then
    assert rl.admit("a", 1000, now=0.5) > 0  # larger than the bucket: waits for a full bucket
    assert rl.admit("a", 1000, now=100.0) == 0.0  # ... and is then admitted once


def test_bounded_number_of_clients() -> None:
    rl = RateLimiter(rate=1, max_clients=3)
    for i in range(10):
        rl.admit(f"c{i}", 1, now=0.0)
    assert len(rl._buckets) == 3


def test_429_with_retry_after_and_forwarded_client_ip(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.env_extra.update(ZLOG_GATEWAY_RATE_LIMIT_PER_CLIENT="10", ZLOG_GATEWAY_TRUSTED_PROXIES="127.0.0.1")
    records = [{"timestamp": 1, "service": "auth_service", "message": f"m{i}"} for i in range(15)]
    with c:
        status, body = c.post(records, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
        assert status == 200, body
        status, body = c.post(records, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
        assert (status, body["error"]) == (429, "RATE_LIMITED")
        # Another client behind the same proxy has its own budget.
        status, _ = c.post(records[:5], headers={"X-Forwarded-For": "198.51.100.8"})
        assert status == 200
    stored = [json.loads(line) for _, line in c.stored_lines(3)]
    assert {r["client_ip"] for r in stored} == {"198.51.100.7", "198.51.100.8"}
