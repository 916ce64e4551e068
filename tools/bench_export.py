"""Export benchmark: ``GET /v1/logs/export`` against paging ``GET /v1/logs`` for the same rows.

Seeds ``--records`` records into the 4 partitions of a real local cluster (router, 2 workers, 1
gateway as subprocesses; data as ``tools/bench_reads.py`` seeds it), then reads ``--rows`` of the
newest records both ways, ``--runs`` times each, alternating:

- export:  one ``GET /v1/logs/export?limit=<rows>`` read to the end (NDJSON, chunked)
- paging:  ``GET /v1/logs?limit=5000`` following ``cursor`` until ``rows`` records (the baseline:
           what a client downloading a result had to do before)

Measured, not estimated: cluster CPU is utime+stime from /proc/<pid>/stat of every cluster
process, as CPU-ms per 1000 rows, with wall time and the gateway's peak RSS (VmHWM). Usage:

    .venv/bin/python tools/bench_export.py [--records 400000] [--rows 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from tools.bench_reads import seed
from zlog.config import FsyncPolicy, StorageConfig

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total * 1000 / TICK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def export(conn: http.client.HTTPConnection, rows: int) -> int:
    conn.request("GET", f"/v1/logs/export?limit={rows}")
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    n = 0
    while chunk := resp.read(1 << 20):
        n += chunk.count(b"\n")
    return n


def paging(conn: http.client.HTTPConnection, rows: int) -> int:
    params = {"limit": "5000"}
    n = 0
    while n < rows:
        conn.request("GET", "/v1/logs?" + urllib.parse.urlencode(params))
        resp = conn.getresponse()
        body = orjson.loads(resp.read())
        assert resp.status == 200, body
        n += len(body["records"])
        if not body["more"]:
            break
        params["cursor"] = body["cursor"]
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)

    from tests._cluster import Cluster

    cfg = StorageConfig(fsync=FsyncPolicy("never"))
    with tempfile.TemporaryDirectory(prefix="zlog-bench-export-") as tmp:
        c = Cluster(Path(tmp))
        for p in range(4):
            seed(c.data_dir / str(p), args.records // 4, 8, 10, cfg).close()
        c.start()
        try:
            pids = [proc.pid for proc in c.procs.values()]
            gateway = c.procs["gateway-0"].pid
            conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=120)
            paging(conn, 1)  # warm: imports, connections
            rss0 = peak_rss_mib(gateway)
            results: dict[str, list[tuple[float, float, int]]] = {"export": [], "paging": []}
            for _ in range(args.runs):
                for name, fn in (("export", export), ("paging", paging)):
                    c0, t0 = cpu_ms(pids), time.perf_counter()
                    n = fn(conn, args.rows)
                    results[name].append((cpu_ms(pids) - c0, time.perf_counter() - t0, n))
            conn.close()
            print(f"{args.rows:,} newest of {args.records:,} records, 4 partitions, {args.runs} runs each (median)")
            for name, runs in results.items():
                runs.sort()
                cpu, wall, n = runs[len(runs) // 2]
                print(f"  {name:7s} rows={n:,}  cluster CPU {cpu * 1000 / n:6.1f} ms per 1000 rows  wall {wall:5.2f} s")
            print(f"  gateway peak RSS {rss0:.0f} MiB before the runs, {peak_rss_mib(gateway):.0f} MiB after")
        finally:
            c.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
