"""Read-path benchmark: the worker's answers (``zlog.reads.answer``) on a real PartitionLog.

Seeds ``--records`` records straight through the storage engine into one partition directory
(stored lines exactly as the gateway encodes them, ``--services`` services interleaved, one
message in ``--match-every`` mentioning "token"), then times, over repeated runs:

- newest 100 of one service           SEARCH {services: [s]}, backward, limit 100
- no-match ``contains`` full scan      SEARCH {contains: <absent text>} with an unlimited budget
                                       (and the same scan in the worker's default 8 MiB rounds)
- first page of a frequent ``contains`` SEARCH {contains: "token"}, backward, limit 100

Gateway- and socket-free on purpose: this is the cost a worker pays per request. With ``--e2e``
the same three reads are also timed end to end, as ``GET /v1/logs`` on a real local cluster
(router, 2 workers, 1 gateway as subprocesses) over data seeded into its 4 partitions. Usage:

    .venv/bin/python tools/bench_reads.py [--records 1000000] [--dir PATH] [--runs 30] [--e2e]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.loadgen import percentile
from zlog.config import FsyncPolicy, StorageConfig
from zlog.ingest.records import Limits, encode_batch
from zlog.protocol import wire
from zlog.protocol.wire import Command
from zlog.storage import PartitionLog
from zlog.worker.reads import answer

WORDS = ["user", "login", "request", "completed", "cache", "miss", "order", "payment", "queue", "retry"]


def seed(directory: Path, n: int, services: int, match_every: int, cfg: StorageConfig) -> PartitionLog:
    plog = PartitionLog.open(directory, cfg)
    if plog.next_offset >= n:
        return plog
    limits = Limits()
    t0 = time.perf_counter()
    base_ts = 1_790_000_000_000
    batch = 5000
    for start in range(plog.next_offset, n, batch):
        recs: list[dict[str, Any]] = []
        for i in range(start, min(start + batch, n)):
            words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7))
            msg = f"{words} id={i} " + ("token expired for session" if i % match_every == 0 else "ok")
            recs.append({"timestamp": base_ts + i * 10 - (i % 13) * 7, "service": f"service-{i % services:02d}",
                         "level": ("INFO", "WARN", "ERROR", "DEBUG")[i % 4], "message": msg,
                         "labels": {"region": "eu-west-1", "pod": f"api-{i % 17}"}})
        groups = encode_batch(recs, limits, received_at=base_ts, client_ip="10.1.2.3", node_id="bench")
        # Keep offset order = generation order: interleave the groups back into input order.
        by_service = {svc: iter(g.lines) for svc, g in groups.items()}
        lines = [next(by_service[r["service"]]) for r in recs]
        plog.append(lines, max(r["timestamp"] for r in recs))
        plog.commit()
    plog.sync()
    print(f"seeded {n:,} records ({plog.size_bytes / 2**20:,.0f} MiB, {plog.segment_count} segments) "
          f"in {time.perf_counter() - t0:.1f}s", flush=True)
    return plog


def ask(plog: PartitionLog, cfg: StorageConfig, body: dict[str, Any]) -> dict[str, Any]:
    msg = wire.decode(wire.encode(Command.SEARCH, 1, partition=0, body=body))
    return answer(msg, 0, plog, cfg)


def timed(label: str, runs: int, fn: Any) -> dict[str, float]:
    fn()  # warm the page cache and the code paths once
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(f"{label:<52} p50 {p50:9.2f} ms   p99 {p99:9.2f} ms   (runs {runs})", flush=True)
    return {"p50": p50, "p99": p99}


def e2e(records: int, runs: int, scan_runs: int) -> None:
    import http.client
    import urllib.parse

    import orjson

    from tests._cluster import Cluster

    cfg = StorageConfig(fsync=FsyncPolicy("never"))
    with tempfile.TemporaryDirectory(prefix="zlog-bench-e2e-") as tmp:
        c = Cluster(Path(tmp))
        # Every partition gets the same 8 service names: placement does not follow the hash, which
        # does not matter here (a service filter still reads exactly one partition).
        for p in range(4):
            seed(c.data_dir / str(p), records // 4, 8, 10, cfg).close()
        c.start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=60)

            def get(params: dict[str, str]) -> dict[str, Any]:
                conn.request("GET", "/v1/logs?" + urllib.parse.urlencode(params))
                resp = conn.getresponse()
                body: dict[str, Any] = orjson.loads(resp.read())
                assert resp.status == 200, body
                return body

            def scan_all() -> None:
                params = {"contains": "no such text", "limit": "100"}
                while True:
                    body = get(params)
                    if not body["more"]:
                        return
                    params["cursor"] = body["cursor"]

            print(f"-- end to end: GET /v1/logs on a 4-partition cluster holding {records:,} records", flush=True)
            timed("HTTP newest 100 of one service", runs, lambda: get({"service": "service-01", "limit": "100"}))
            timed(f"HTTP no-match contains, full scan of {records:,} (all pages)", scan_runs, scan_all)
            timed("HTTP first page (100) of a frequent contains", runs, lambda: get({"contains": "token", "limit": "100"}))
            conn.close()
        finally:
            c.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--services", type=int, default=8, help="services sharing the partition")
    ap.add_argument("--match-every", type=int, default=10, help="one record in N mentions 'token'")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--scan-runs", type=int, default=10)
    ap.add_argument("--no-full-scan", action="store_true", help="skip the full-scan timings (big seeds)")
    ap.add_argument("--dir", type=Path, help="partition directory to seed and keep (default: a temp dir)")
    ap.add_argument("--e2e", action="store_true", help="also time GET /v1/logs on a real local cluster")
    args = ap.parse_args(argv)
    seed_cfg = StorageConfig(fsync=FsyncPolicy("never"))
    unlimited = StorageConfig(fsync=FsyncPolicy("never"), scan_budget_bytes=1 << 40)
    with tempfile.TemporaryDirectory(prefix="zlog-bench-") as tmp:
        directory = args.dir or Path(tmp) / "0"
        plog = seed(directory, args.records, args.services, args.match_every, seed_cfg)
        try:
            n = plog.next_offset
            timed("newest 100 of one service", args.runs,
                  lambda: ask(plog, seed_cfg, {"filter": {"services": ["service-03"]}, "limit": 100}))
            timed("newest 100 of one service, level ERROR", args.runs,
                  lambda: ask(plog, seed_cfg, {"filter": {"services": ["service-02"], "levels": ["error"]},
                                              "limit": 100}))

            def full_scan() -> None:
                r = ask(plog, unlimited, {"filter": {"contains": "no such text"}, "limit": 100})
                assert r["records"] == [] and r["next"] is None and r["scanned_records"] == n, r["scanned_records"]

            if not args.no_full_scan:
                timed(f"no-match contains, full scan of {n:,} (one request)", args.scan_runs, full_scan)

            def full_scan_rounds() -> None:
                start: int | None = None
                while True:
                    body: dict[str, Any] = {"filter": {"contains": "no such text"}, "limit": 100}
                    if start is not None:
                        body["start"] = start
                    r = ask(plog, seed_cfg, body)
                    if r["next"] is None:
                        return
                    start = r["next"]

            if not args.no_full_scan:
                timed(f"no-match contains, full scan of {n:,} (8 MiB rounds)", args.scan_runs, full_scan_rounds)
            timed("first page (100) of a frequent contains", args.runs,
                  lambda: ask(plog, seed_cfg, {"filter": {"contains": "token"}, "limit": 100}))
            timed("first page (100) of a regex", args.runs,
                  lambda: ask(plog, seed_cfg, {"filter": {"regex": r"expired for \w+"}, "limit": 100}))
        finally:
            plog.close()
    if args.e2e:
        e2e(args.records, args.runs, args.scan_runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
