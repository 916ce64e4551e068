"""Backpressure: ~10x more concurrent load than the gateway admits is refused, not queued.

Invariants proved:
- With ``gateway.max_inflight_requests = 4`` and 48 closed-loop clients posting ~0.5 MB bodies,
  every answer is 200 or 503 + Retry-After (504 would be the deadline speaking; none expected),
  no answer takes longer than the deadline plus slack, and no process dies.
- Memory stays bounded while overloaded: the peak RSS (``/proc/<pid>/status`` VmRSS, sampled
  every 50 ms) of each process stays under ``RSS_BOUND_MB`` (derivation in docs/reliability.md).
- With ``gateway.rate_limit_per_client`` set, a client over its rate gets 429 + Retry-After and
  the records it was refused are not stored.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests._cluster import Cluster

CLIENTS = 48
RECORDS = 2000  # ~0.5 MB per body
LOAD_S = 8.0
TIMEOUT_MS = 2000
# Peak RSS per process, MB. Measured here: idle 30-47 MB; under this overload with the bound of
# 4 requests in flight, gateway ~95 MB, router and workers ~40 MB. The same load with 512 in
# flight drives the gateway to ~240 MB, so the gateway bound below fails without backpressure.
RSS_BOUND_MB = {"gateway": 160, "router": 100, "storage": 120}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    def __init__(self, c: Cluster) -> None:
        super().__init__(daemon=True)
        self.c = c
        self.peak: dict[str, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for name, p in self.c.procs.items():
                if p.alive():
                    try:
                        self.peak[name] = max(self.peak.get(name, 0.0), rss_mb(p.pid))
                    except OSError:
                        pass
            time.sleep(0.05)


def body(i: int) -> bytes:
    services = ("event_creator", "focus_allocator", "notification_service", "auth_service")
    return json.dumps([{"timestamp": 1_700_000_000_000 + j, "service": services[j % 4], "level": "INFO",
                        "message": f"overload {i} {j} " + "z" * 200} for j in range(RECORDS)]).encode()


async def overload(url: str, seconds: float) -> tuple[Counter[str], float, int]:
    statuses: Counter[str] = Counter()
    worst = 0.0
    missing_retry_after = 0
    payload = body(0)
    stop = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal worst, missing_retry_after
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                async with session.post(url + "/v1/logs", data=payload,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    statuses[str(resp.status)] += 1
                    if resp.status in (429, 503) and not resp.headers.get("Retry-After"):
                        missing_retry_after += 1
            except (TimeoutError, aiohttp.ClientError) as exc:
                statuses[type(exc).__name__] += 1
            worst = max(worst, time.monotonic() - t0)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    return statuses, worst, missing_retry_after


@pytest.mark.parametrize(
    "bound",
    [
        {"ZLOG_GATEWAY_MAX_INFLIGHT_REQUESTS": "4"},
        # The byte budget alone: ~0.5 MB bodies, 2 MiB in flight at most.
        {"ZLOG_GATEWAY_MAX_INFLIGHT_BYTES": str(2 << 20), "ZLOG_GATEWAY_MAX_BODY_BYTES": str(1 << 20)},
    ],
    ids=["requests", "bytes"],
)
def test_ten_times_overload_is_503_with_retry_after_and_memory_stays_bounded(tmp_path: Path,
                                                                             bound: dict[str, str]) -> None:
    c = Cluster(tmp_path)
    c.env_extra.update({**bound, "ZLOG_GATEWAY_REQUEST_TIMEOUT_MS": str(TIMEOUT_MS),
                        "ZLOG_LOG_LEVEL": "warning", "ZLOG_FSYNC": "never"})
    with c:
        sampler = RssSampler(c)
        sampler.start()
        idle = {name: rss_mb(p.pid) for name, p in c.procs.items()}
        try:
            statuses, worst, missing = asyncio.run(overload(c.url, LOAD_S))
        finally:
            sampler.stop_event.set()
            sampler.join()
        print(f"\n{CLIENTS} clients x {RECORDS} records: answers {dict(statuses)}, slowest {worst:.2f}s")
        print("RSS MB idle -> peak: " + ", ".join(f"{n} {idle[n]:.0f} -> {sampler.peak.get(n, 0):.0f}" for n in c.procs))
        for name, p in c.procs.items():
            assert p.alive(), f"{name} died under overload:\n{c.logs(name)}"
        assert set(statuses) <= {"200", "503"}, statuses
        assert statuses["503"] > statuses["200"], "not overloaded: the bound was never reached"
        assert statuses["200"] > 0, "nothing got through"
        assert missing == 0, "a 503 without Retry-After"
        assert worst < TIMEOUT_MS / 1000 + 5, f"an answer took {worst:.1f}s"
        for name, peak in sampler.peak.items():
            bound = RSS_BOUND_MB[name.split("-")[0]]
            assert peak < bound, f"{name} peaked at {peak:.0f} MB (bound {bound} MB)"
        status, _ = c.post([{"service": "auth_service", "message": "after the storm"}])
        assert status == 200


def test_per_client_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    c.env_extra.update({"ZLOG_GATEWAY_RATE_LIMIT_PER_CLIENT": "100", "ZLOG_LOG_LEVEL": "warning"})
    with c:
        records = [{"service": "auth_service", "message": f"rate {i}"} for i in range(60)]
        answers = []
        for i in range(6):
            status, headers, data = _post(c, [{**r, "message": f"{r['message']} {i}"} for r in records])
            answers.append((status, headers.get("Retry-After"), json.loads(data).get("error")))
        print(f"\nanswers at 100 records/s: {answers}")
        assert answers[0][0] == 200
        limited = [a for a in answers if a[0] == 429]
        assert limited, answers
        assert all(ra is not None and int(ra) >= 1 and err == "RATE_LIMITED" for _, ra, err in limited)
        stored = len(c.stored_records(3))
        assert stored == 60 * sum(1 for a in answers if a[0] == 200)  # a refused request stored nothing
        time.sleep(1.3)  # the bucket refills at 100 records/s
        status, _, _ = _post(c, records[:50])
        assert status == 200


def _post(c: Cluster, records: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
    from tests._cluster import http

    return http("POST", c.url + "/v1/logs", json.dumps(records).encode(), {"Content-Type": "application/json"})
