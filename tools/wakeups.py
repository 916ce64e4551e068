"""Where a request's CPU goes, thread by thread: a fresh cluster idle, then under a closed loop.

    python tools/wakeups.py                                  # 10 s idle, then HTTP batch 100 at one connection
    python tools/wakeups.py --batch 1000 --concurrency 8 --idle 0

The cluster is the one ``tools/bench.py`` measures (router, 2 storage workers, the gateway
processes, fsync ``always`` unless ``--fsync`` says otherwise), and so is the load (``bench.http_cell``: the original's log mix, one
pre-built request per batch size, keep-alive connections). For every thread of every cluster
process (the Python thread, zmq's I/O thread, the metrics server's thread, ...) it prints user and
system CPU, the time spent runnable but waiting for a CPU, and how many times the thread was
scheduled (each wake-up is one), split into voluntary switches (it slept: poll, fsync) and
involuntary ones (it was preempted): per second when idle, per request under load.

Invariants:
- Measured, not estimated: /proc/<pid>/task/<tid>/stat (utime, stime), schedstat (run time, run
  queue wait, timeslices) and status (context switches), read at the start and end of each window.
- Nothing is retried and nothing but a 200 counts (``bench.http_cell``); this tool does not audit
  (``tools/bench.py`` does), it only watches where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests._cluster import Cluster  # noqa: E402
from tools.bench import CLK_TCK, Cell, cluster_pids, http_cell  # noqa: E402

FIELDS = ("user", "sys", "run", "wait", "slices", "vol", "invol")
Threads = dict[str, tuple[float, ...]]  # "process/thread" -> FIELDS (seconds, seconds, s, s, n, n, n)


def threads(pid: int, name: str) -> Threads:
    out: Threads = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    others = 0
    main_comm = ""
    tids.sort(key=lambda t: (int(t) != pid, int(t)))  # the main thread first, then by id
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat", "rb") as f:
                stat = f.read()
            with open(f"{base}/schedstat") as f:
                run_ns, wait_ns, slices = (int(x) for x in f.read().split()[:3])
            with open(f"{base}/status") as f:
                status = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode()
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(tid) == pid:
            label, main_comm = "main", comm
        elif comm == main_comm:  # Python's threads are not named for the kernel: they inherit it
            others += 1
            label = f"thread-{others}"
        else:
            label = comm
        out[f"{name}/{label}"] = (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK, run_ns / 1e9,
                                   wait_ns / 1e9, float(slices), float(status["voluntary_ctxt_switches"]),
                                   float(status["nonvoluntary_ctxt_switches"]))
    return out


def snapshot(pids: dict[str, int]) -> Threads:
    out: Threads = {}
    for name, pid in pids.items():
        out.update(threads(pid, name))
    return out


def table(before: Threads, after: Threads, per: float, unit: str) -> str:
    rows = [f"| thread (per {unit}) | user µs | sys µs | run µs | waiting for a CPU µs | wake-ups | voluntary "
            "| involuntary |", "|---|---|---|---|---|---|---|---|"]
    total = [0.0] * len(FIELDS)
    for key in sorted(after):
        if key not in before:
            continue
        d = [(a - b) / per for a, b in zip(after[key], before[key], strict=True)]
        if d[4] < 0.05 and d[2] < 1e-6:
            continue  # a thread that did nothing in this window (zmq's reaper, idle pools)
        total = [t + x for t, x in zip(total, d, strict=True)]
        rows.append(f"| {key} | " + " | ".join(f"{x * 1e6:.0f}" if i < 4 else f"{x:.1f}" for i, x in enumerate(d))
                    + " |")
    rows.append("| **all** | " + " | ".join(f"{x * 1e6:.0f}" if i < 4 else f"{x:.1f}" for i, x in enumerate(total))
                + " |")
    return "\n".join(rows)


async def measure(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="zlog-wakeups-") as tmp:
        cluster = Cluster(Path(tmp), gateways=args.gateways, workers=2, fsync=args.fsync,
                          heartbeat_ms=args.heartbeat_ms)
        with cluster:
            pids = cluster_pids(cluster)
            url = cluster.url + "/v1/logs"
            if args.idle > 0:
                await asyncio.sleep(1.0)  # past start-up
                t0, before = time.monotonic(), snapshot(pids)
                await asyncio.sleep(args.idle)
                after, dt = snapshot(pids), time.monotonic() - t0
                print(f"Idle, {dt:.0f} s:\n\n{table(before, after, dt, 'second')}\n")
            warm = Cell("zlog", "http", args.batch, args.concurrency)
            await http_cell(url, warm, 0, None, pids, 0.0, args.warmup)
            cell = Cell("zlog", "http", args.batch, args.concurrency)
            before = snapshot(pids)
            await http_cell(url, cell, 1, None, pids, 0.0, args.seconds)
            after = snapshot(pids)
            if cell.failed or not cell.requests:
                raise SystemExit(f"{cell.failed} requests failed ({cell.errors}), {cell.requests} succeeded")
            print(f"HTTP batch {args.batch}, {args.concurrency} connection(s), {cell.seconds:.0f} s: "
                  f"{cell.logs_per_s:,.0f} logs/s, p50 {cell.p50_ms:.1f} ms, p99 {cell.p99_ms:.1f} ms, "
                  f"cluster {cell.cluster_cpu_ms_per_1k:.2f} CPU-ms per 1000 logs:\n\n"
                  f"{table(before, after, cell.requests, 'request')}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--idle", type=float, default=10.0, help="idle seconds measured first (0: none)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds under load")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--gateways", type=int, default=1)
    p.add_argument("--heartbeat-ms", type=int, default=200,
                   help="router.heartbeat_ms (default 200, as bench.py's cluster; zlog's own default is 1000)")
    p.add_argument("--fsync", default="always", help="storage.fsync of the cluster (default always, as bench.py)")
    args = p.parse_args(argv)
    asyncio.run(measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
