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

    .venv/bin/python tools/bench_metrics.py --batch 1000 --cluster-cpu-ms 3.7
    .venv/bin/python tools/bench_metrics.py --batch 100 --cluster-cpu-ms 9
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zlog.metrics import GatewayMetrics, RouterMetrics, WorkerMetrics
from zlog.router import Router


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
    requests = 1000 / batch
    messages = requests * args.partitions
    total_ns = (requests * costs["gateway per request"]
                + messages * (costs["router per message"] + costs["worker per batch"] + costs["worker per commit"]))
    for name, ns in costs.items():
        print(f"{name:22s} {ns:8.0f} ns")
    print(f"per 1000 logs at batch {batch}: {requests:g} requests, <= {messages:g} produce messages")
    share = total_ns / 1e6 / args.cluster_cpu_ms
    print(f"metrics cost {total_ns / 1000:.1f} us per 1000 logs = {share:.2%} of {args.cluster_cpu_ms} cluster CPU-ms")


if __name__ == "__main__":
    main()
