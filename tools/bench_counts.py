"""Counting-engine and LogQL benchmark: the worker's answers on a real PartitionLog (no sockets).

Seeds (or reuses, with ``--dir``) one partition as ``tools/bench_reads.py`` does (``--services``
services interleaved, one record in ``--match-every`` mentioning "token", 10 ms apart), then times:

- volume by level, one day at 1-minute steps      STATS {count: by level, 1440 buckets} from rollups
- values of service, all time                      STATS {count: by service, one bucket} from rollups
- volume by label with a text filter               STATS {count: by label:pod, contains "token"}, scan
- LogQL {service="x"} |= "token", newest 100       SEARCH with logql
- LogQL sum by (level) (count_over_time(...[1m])) over an hour, 1-minute steps (the counting scan)

Each count request is resumed (``start``/``next``) until done, as the gateway does. The first
rollup answer after seeding counts the records once (timed apart: ``catch-up``). Usage:

    .venv/bin/python tools/bench_counts.py [--records 1000000] [--dir PATH] [--runs 10] [--e2e]

With ``--e2e`` the same questions are also asked over HTTP (``/v1/stats/*``, ``/loki/api/v1/*``) of
a real local cluster (router, 2 workers, 1 gateway) whose 4 partitions hold ``--records`` in all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.bench_reads import seed
from tools.loadgen import percentile
from zlog.config import FsyncPolicy, StorageConfig
from zlog.loki.logql import parse
from zlog.loki.metrics import window_spec
from zlog.protocol import wire
from zlog.protocol.wire import Command
from zlog.read.counting import Counts
from zlog.storage import PartitionLog
from zlog.worker.reads import answer

BASE_TS = 1_790_000_000_000  # tools/bench_reads.py's first timestamp


def ask(plog: PartitionLog, cfg: StorageConfig, command: Command, body: dict[str, Any]) -> dict[str, Any]:
    msg = wire.decode(wire.encode(command, 1, partition=0, body=body))
    return answer(msg, 0, plog, cfg)


def proc_cpu(pids: list[int]) -> float:
    """utime + stime of the given processes, in seconds (from /proc/<pid>/stat)."""
    import os

    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def timed(label: str, runs: int, fn: Any, pids: list[int] | None = None) -> None:
    """Wall and CPU time per run: of this process, or of ``pids`` (a cluster) when given. The
    machine is shared, so CPU says what a request costs."""
    def cpu() -> float:
        return proc_cpu(pids) if pids else time.process_time()

    fn()
    walls, cpus = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), cpu()
        fn()
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((cpu() - c0) * 1000)
    walls.sort()
    cpus.sort()
    print(f"{label:<56} wall p50 {percentile(walls, 50):8.2f} ms p99 {percentile(walls, 99):8.2f} ms   "
          f"CPU p50 {percentile(cpus, 50):8.2f} ms   (runs {runs})", flush=True)


def count(plog: PartitionLog, cfg: StorageConfig, spec: dict[str, Any]) -> Counts:
    total = Counts()
    start: int | None = None
    while True:
        body: dict[str, Any] = {"count": spec} if start is None else {"count": spec, "start": start}
        r = ask(plog, cfg, Command.STATS, body)
        total.merge(Counts.from_body(r["counts"]))
        if r["next"] is None:
            return total
        start = r["next"]


def e2e(records: int, runs: int) -> None:
    import http.client
    import urllib.parse

    import orjson

    from tests._cluster import Cluster

    cfg = StorageConfig(fsync=FsyncPolicy("never"))
    with tempfile.TemporaryDirectory(prefix="zlog-bench-counts-e2e-") as tmp:
        c = Cluster(Path(tmp))
        for p in range(4):  # the same 8 services in every partition (see tools/bench_reads.py)
            seed(c.data_dir / str(p), records // 4, 8, 10, cfg).close()
        c.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=60)

            def get(path: str, params: dict[str, str]) -> dict[str, Any]:
                conn.request("GET", path + "?" + urllib.parse.urlencode(params))
                resp = conn.getresponse()
                body: dict[str, Any] = orjson.loads(resp.read())
                assert resp.status == 200, body
                return body

            hi = BASE_TS + records // 4 * 10
            day = {"since": str(hi - 86_400_000), "until": str(hi)}
            # The first volume query counts what the rollups have not seen yet: until then, partial.
            t0 = time.perf_counter()
            while get("/v1/stats/volume", {**day, "step": "1m", "by": "level"})["partial"]:
                pass
            print(f"{'HTTP rollup catch-up, ' + format(records, ',') + ' records':<56} wall "
                  f"{time.perf_counter() - t0:8.2f} s", flush=True)
            print(f"-- end to end: a 4-partition cluster holding {records:,} records (CPU: the cluster's)", flush=True)
            pids = [p.pid for p in c.procs.values() if p.alive()]
            timed("HTTP /v1/stats/volume by level, 1 day at 1m", runs,
                  lambda: get("/v1/stats/volume", {**day, "step": "1m", "by": "level"}), pids)
            timed("HTTP /v1/stats/values field=service", runs, lambda: get("/v1/stats/values", {"field": "service"}), pids)
            timed("HTTP /v1/stats/volume by pod, contains=token, 1 day at 1m", max(3, runs // 3),
                  lambda: get("/v1/stats/volume", {**day, "step": "1m", "by": "pod", "contains": "token"}), pids)
            ns = {"start": str((hi - 86_400_000) * 10**6), "end": str(hi * 10**6)}
            timed('HTTP query_range {service="service-02"} |= "token", limit 100', runs,
                  lambda: get("/loki/api/v1/query_range", {**ns, "query": '{service="service-02"} |= "token"',
                                                           "limit": "100"}), pids)
            hour = {"start": str((hi - 3_600_000) * 10**6), "end": str(hi * 10**6), "step": "60"}
            timed("HTTP query_range sum by (level) count_over_time[1m], 1 h", max(3, runs // 3),
                  lambda: get("/loki/api/v1/query_range", {**hour, "query":
                              'sum by (level) (count_over_time({service="service-02"}[1m]))'}), pids)
            conn.close()
        finally:
            c.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--services", type=int, default=8)
    ap.add_argument("--match-every", type=int, default=10)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--dir", type=Path, help="partition directory to seed and keep (default: a temp dir)")
    ap.add_argument("--e2e", action="store_true", help="also ask over HTTP, of a real local cluster")
    ap.add_argument("--e2e-only", action="store_true", help="only the HTTP part")
    args = ap.parse_args(argv)
    if args.e2e_only:
        e2e(args.records, args.runs)
        return 0
    cfg = StorageConfig(fsync=FsyncPolicy("never"))
    with tempfile.TemporaryDirectory(prefix="zlog-bench-counts-") as tmp:
        plog = seed(args.dir or Path(tmp) / "0", args.records, args.services, args.match_every, cfg)
        try:
            n = plog.next_offset
            day0 = BASE_TS // 60_000 * 60_000
            by_level = {"filter": {}, "start": day0, "width": 60_000, "n": 1440, "by": "level"}
            t0, c0 = time.perf_counter(), time.process_time()
            c = count(plog, cfg, by_level)
            print(f"{'rollup catch-up over ' + format(n, ',') + ' records (once)':<56} wall {time.perf_counter() - t0:8.2f}"
                  f" s   CPU {time.process_time() - c0:8.2f} s", flush=True)
            assert min(n, 8_640_000) - 6_100 <= c.total <= min(n, 8_640_000), c.total  # a day, 10 ms apart
            timed(f"volume by level, 1 day at 1m, {n:,} records", args.runs, lambda: count(plog, cfg, by_level))
            values = {"filter": {}, "start": 0, "width": BASE_TS * 2 // 10_000 * 10_000, "n": 1, "by": "service"}
            timed(f"values of service, {n:,} records", args.runs, lambda: count(plog, cfg, values))
            span = min(n, 1_000_000) * 10  # the newest 1M records' time span
            hi = BASE_TS + n * 10
            lo = (hi - span) // 60_000 * 60_000
            by_pod = {"filter": {"contains": "token"}, "start": lo, "width": 60_000, "n": (hi - lo) // 60_000 + 1,
                      "by": "label:pod"}
            timed("volume by label, contains 'token', newest 1M records", max(3, args.runs // 3),
                  lambda: count(plog, cfg, by_pod))
            search = {"filter": {"services": ["service-02"]}, "limit": 100,
                      "logql": '{service="service-02"} |= "token"'}
            r = ask(plog, cfg, Command.SEARCH, search)
            assert len(r["records"]) == 100, len(r["records"])
            timed('LogQL {service="service-02"} |= "token", newest 100', args.runs,
                  lambda: ask(plog, cfg, Command.SEARCH, search))
            q = parse('sum by (level) (count_over_time({service="service-02"}[1m]))')
            end = hi
            times = [end - 3_600_000 + i * 60_000 for i in range(61)]
            start, width, nb = window_spec(times, 60_000)
            inner = q.expr  # type: ignore[union-attr]
            metric = {"filter": {"services": ["service-02"]}, "start": start, "width": width, "n": nb, "by": "stream",
                      "logql": inner.query.text()}
            timed("LogQL sum by (level) count_over_time[1m], last hour", max(3, args.runs // 3),
                  lambda: count(plog, cfg, metric))
        finally:
            plog.close()
    if args.e2e:
        e2e(args.records, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
