"""What the Prometheus metrics cost per 1000 ingested logs, as a share of the cluster's CPU.

Times, on real metric objects, exactly the updates each process makes on the ingest path:
- gateway, per request: ``requests{status}.inc``, ``request_seconds.observe``, ``bytes.inc``,
  ``records.inc`` and the two clock reads around the request;
- router, per produce message: two ``Router._count`` calls (the PRODUCE in, the ACK back), which
  batch the counts that ``housekeeping`` flushes once per heartbeat;
- worker, per batch: ``WorkerMetrics.appended`` (``records{partition}`` and ``batches{partition}``
  through cached children); per commit: the two clock reads and ``fsync_seconds.observe``.

Then prices 1000 logs posted in requests of ``--batch`` records, each request split over
``--partitions`` produce messages (the worst case: the producer's linger usually merges more),
and compares with the measured cluster CPU per 1000 logs (``--cluster-cpu-ms``; see tools/bench.py).

With ``--e2e`` it measures both instead of assuming them: it starts a real local cluster (router,
2 workers, 2 gateways), posts ``--requests`` requests of ``--batch`` records spread over the 4
partitions at concurrency 8, and reads from the processes' own /metrics how many metric events
happened (requests, produce batches, commits, router frames) and how much CPU every process
used (``process_cpu_seconds_total``), per 1000 logs.

    .venv/bin/python tools/bench_metrics.py --batch 1000 --cluster-cpu-ms 3.7
    .venv/bin/python tools/bench_metrics.py --batch 100 --cluster-cpu-ms 9
    .venv/bin/python tools/bench_metrics.py --e2e --batch 100 --requests 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zlog.ops.metrics import GatewayMetrics, RouterMetrics, WorkerMetrics
from zlog.router.process import Router


def per_call_ns(fn: Callable[[], None], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1000, help="records per HTTP request")
    ap.add_argument("--partitions", type=int, default=4, help="produce messages per request (worst case)")
    ap.add_argument("--cluster-cpu-ms", type=float, default=3.7, help="cluster CPU-ms per 1000 logs")
    ap.add_argument("-n", type=int, default=200_000, help="iterations per timing")
    ap.add_argument("--e2e", action="store_true", help="measure events and CPU on a real local cluster")
    ap.add_argument("--requests", type=int, default=1000, help="requests posted in --e2e mode")
    args = ap.parse_args()

    gm, wm = GatewayMetrics(), WorkerMetrics()
    router = SimpleNamespace(_counts={}, metrics=RouterMetrics())
    batch = args.batch

    def gateway_request() -> None:
        t0 = time.perf_counter()
        gm.bytes.inc(150 * batch)
        gm.records.inc(batch)
        gm.requests.labels(status="200").inc()
        gm.request_seconds.observe(time.perf_counter() - t0)

    def router_message() -> None:
        Router._count(router, "frames", "PRODUCE")  # type: ignore[arg-type]
        Router._count(router, "frames", "ACK")  # type: ignore[arg-type]

    def worker_batch() -> None:
        wm.appended(2, batch)

    def worker_commit() -> None:
        t0 = time.perf_counter()
        wm.fsync_seconds.observe(time.perf_counter() - t0)

    costs = {name: per_call_ns(fn, args.n) for name, fn in
             (("gateway per request", gateway_request), ("router per message", router_message),
              ("worker per batch", worker_batch), ("worker per commit", worker_commit))}
    for name, ns in costs.items():
        print(f"{name:22s} {ns:8.0f} ns")
    if args.e2e:
        events, cpu_ms = measure_cluster(batch, args.requests)
        requests, messages, commits = events["requests"], events["batches"], events["commits"]
        # Router._count runs once per frame; costs["router per message"] covers two of them.
        router_ns = events["frames"] * costs["router per message"] / 2
        print(f"measured per 1000 logs at batch {batch}: " + ", ".join(f"{k} {v:.2f}" for k, v in events.items())
              + f"; cluster CPU {cpu_ms:.2f} ms")
    else:
        requests = 1000 / batch
        messages = commits = requests * args.partitions
        router_ns = messages * costs["router per message"]
        cpu_ms = args.cluster_cpu_ms
        print(f"per 1000 logs at batch {batch}: {requests:g} requests, <= {messages:g} produce messages")
    total_ns = (requests * costs["gateway per request"] + router_ns + messages * costs["worker per batch"]
                + commits * costs["worker per commit"])
    share = total_ns / 1e6 / cpu_ms
    print(f"metrics cost {total_ns / 1000:.1f} us per 1000 logs = {share:.2%} of {cpu_ms:.2f} cluster CPU-ms")


def measure_cluster(batch: int, n_requests: int) -> tuple[dict[str, float], float]:
    """Metric events and cluster CPU-ms per 1000 logs, read from a real cluster's /metrics."""
    import asyncio
    import json
    import tempfile
    import urllib.request

    import aiohttp

    from tests._cluster import Cluster
    from zlog.ops.status import parse_metrics

    services = ("event_creator", "focus_allocator", "notification_service", "auth_service")
    body = json.dumps([{"timestamp": 1_700_000_000_000 + i, "service": services[i % 4], "level": "INFO",
                        "message": "user signed in from a new device", "labels": {"region": "eu"}}
                       for i in range(batch)]).encode()

    async def post(url: str, count: int) -> None:
        left = [count]
        async with aiohttp.ClientSession() as session:
            async def one() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        if r.status != 200:
                            raise RuntimeError(f"HTTP {r.status}: {await r.text()}")
            await asyncio.gather(*(one() for _ in range(8)))

    def totals(c: Cluster) -> dict[str, float]:
        ports = [c.router_metrics, *(c.worker_metrics_base + i for i in range(c.workers)),
                 *(c.gateway_metrics_base + i for i in range(c.gateways))]
        out: dict[str, float] = {}
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                samples = parse_metrics(resp.read().decode())
            for name, series in samples.items():
                out[name] = out.get(name, 0.0) + sum(series.values())
        return out

    with tempfile.TemporaryDirectory(prefix="zlog-bench-metrics-") as tmp, Cluster(Path(tmp), gateways=2) as c:
        asyncio.run(post(c.url + "/v1/logs", 20))  # warm-up
        time.sleep(1.5)  # the router adds its frame counts once per heartbeat
        before = totals(c)
        asyncio.run(post(c.url + "/v1/logs", n_requests))
        time.sleep(1.5)
        after = totals(c)
    per_k = 1000 / (batch * n_requests)

    def delta(name: str) -> float:
        return (after.get(name, 0.0) - before.get(name, 0.0)) * per_k

    events = {"requests": delta("zlog_ingest_requests_total"), "batches": delta("zlog_storage_batches_total"),
              "commits": delta("zlog_storage_fsync_seconds_count"), "frames": delta("zlog_router_frames_total")}
    return events, delta("process_cpu_seconds_total") * 1000


if __name__ == "__main__":
    main()
