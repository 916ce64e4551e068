"""Benchmark of the storage engine (zlog.storage.PartitionLog), one process, real files.

Reports, per fsync policy and batch size, appends (append + commit) in records/s, MB/s, fsyncs/s,
p99 latency and CPU-ms per 1000 records; then, on a partition of ``--records`` records: sequential
read by offset, random single-offset reads, a full forward scan with a substring predicate, and the
latency of "newest 100 records" (a backward scan).

    python tools/bench_storage.py                       # about a minute
    python tools/bench_storage.py --records 10000000    # the 10M-record partition (~2 GB of disk)
    python tools/bench_storage.py --json

Sealed segments (compression, the token index, fetch and search against plain segments) have
their own benchmark: tools/bench_sealed.py (and tools/bench_index.py for the index choice).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.loadgen import percentile
from zlog.config import FsyncPolicy, StorageConfig
from zlog.storage import PartitionLog

SERVICES = ["focus_allocator", "event_creator", "auth_service", "notification_service"]
MESSAGES = ["focus session started", "calendar event created", "user login failed - invalid credentials",
            "email sent successfully", "payment failed", "token refreshed", "meeting rescheduled"]


def make_lines(n: int, seed: int = 7) -> list[bytes]:
    """Distinct lines shaped like the stored record (~200 bytes)."""
    rnd = random.Random(seed)
    out = []
    ts = 1_795_675_988_031
    for i in range(n):
        ts += rnd.randint(50, 499)
        svc = SERVICES[i % 4]
        labels = b'{"focus_type":"deep_work","duration_minutes":"25"}' if i % 3 == 0 else b"{}"
        out.append(b'{"timestamp":%d,"service":"%s","level":"%s","message":"%s","labels":%s,'
                   b'"received_at":%d,"ingested_node_id":"zlog-1","client_ip":"127.0.0.1"}' % (
                       ts, svc.encode(), rnd.choice([b"DEBUG", b"INFO", b"INFO", b"WARN", b"ERROR"]),
                       rnd.choice(MESSAGES).encode(), labels, ts + 3))
    return out


POOL = make_lines(10_000)


def bench_append(root: Path, policy: str, batch: int, seconds: float, max_records: int) -> dict[str, Any]:
    d = root / f"append-{policy.replace(':', '')}-{batch}"
    cfg = StorageConfig(fsync=FsyncPolicy.parse(policy))
    lat: list[float] = []
    n = nbytes = 0
    with PartitionLog.open(d, cfg) as log:
        c0, t0 = time.process_time(), time.perf_counter()
        i = 0
        while n < max_records and time.perf_counter() - t0 < seconds:
            lines = POOL[i:i + batch] if i + batch <= len(POOL) else POOL[:batch]
            i = (i + batch) % len(POOL)
            s = time.perf_counter()
            log.append(lines, 1_795_675_988_031 + n)
            log.commit()
            lat.append(time.perf_counter() - s)
            n += len(lines)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        nbytes = int(log.stats["bytes_appended"])
        fsyncs = log.stats["fsyncs"]
    shutil.rmtree(d)
    lat.sort()
    return {"policy": policy, "batch": batch, "records": n, "records_per_s": n / elapsed,
            "mb_per_s": nbytes / elapsed / 1e6, "fsyncs_per_s": fsyncs / elapsed,
            "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "cpu_ms_per_1000": cpu * 1e6 / n}


def build(d: Path, records: int) -> float:
    cfg = StorageConfig(fsync=FsyncPolicy("never"))
    t0 = time.perf_counter()
    with PartitionLog.open(d, cfg) as log:
        done = 0
        while done < records:
            k = min(1000, records - done)
            start = done % (len(POOL) - 1000)
            log.append(POOL[start:start + k], 1_795_675_988_031 + done)
            done += k
            if done % 10_000 == 0 or done == records:
                log.commit()
    return time.perf_counter() - t0


def bench_reads(d: Path, records: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t_open = time.perf_counter()
    log = PartitionLog.open(d, StorageConfig())
    out["open_s"] = time.perf_counter() - t_open
    with log:
        out["segments"] = log.segment_count
        out["size_mb"] = log.size_bytes / 1e6
        # sequential fetches of up to 1000 records / 1 MiB, as consumers do
        n = 0
        off = 0
        c0, t0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - t0 < 3 and off < records:
            got = log.read(off, 1000, 1 << 20)
            n += len(got)
            off = got[-1][0] + 1
        el, cpu = time.perf_counter() - t0, time.process_time() - c0
        out["read_seq_records_per_s"] = n / el
        out["read_seq_cpu_ms_per_1000"] = cpu * 1e6 / n
        # random single-record reads
        rnd = random.Random(1)
        t0 = time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < 1:
            log.read(rnd.randrange(records), 1, 1 << 20)
            k += 1
        out["read_random_per_s"] = k / (time.perf_counter() - t0)
        # full forward scan with a substring predicate, resumed through ``next``
        def pred(line: bytes) -> bool:
            return b"payment failed" in line

        scanned = matched = 0
        start: int | None = None
        c0, t0 = time.process_time(), time.perf_counter()
        while True:
            r = log.scan(backward=False, start=start, predicate=pred, limit=10**9, budget_bytes=64 << 20)
            scanned += r.scanned_records
            matched += len(r.records)
            if r.next is None:
                break
            start = r.next
        el, cpu = time.perf_counter() - t0, time.process_time() - c0
        out["scan_records_per_s"] = scanned / el
        out["scan_cpu_ms_per_1000"] = cpu * 1e6 / scanned
        out["scan_matched"] = matched
        # newest 100 records, backwards from the tail
        lat = []
        for _ in range(300):
            t = time.perf_counter()
            r = log.scan(limit=100)
            lat.append(time.perf_counter() - t)
            assert len(r.records) == 100
        out["newest100_p50_ms"] = percentile(sorted(lat), 50) * 1000
        out["newest100_p99_ms"] = percentile(sorted(lat), 99) * 1000
        lat = []
        for _ in range(300):
            t = time.perf_counter()
            r = log.scan(limit=100, predicate=lambda line: b'"ERROR"' in line)
            lat.append(time.perf_counter() - t)
        out["newest100_errors_p99_ms"] = percentile(sorted(lat), 99) * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000, help="records in the read/scan partition")
    ap.add_argument("--seconds", type=float, default=3.0, help="time limit per append configuration")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zlog-bench-", dir=args.dir))
    try:
        appends = [bench_append(root, policy, batch, args.seconds, {1: 30_000, 100: 1_000_000}.get(batch, 3_000_000))
                   for policy in ("always", "interval:100", "never") for batch in (1, 100, 1000)]
        build_s = build(root / "big", args.records)
        reads = bench_reads(root / "big", args.records)
        reads["build_records_per_s"] = args.records / build_s
        reads["records"] = args.records
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps({"appends": appends, "reads": reads}, indent=2))
        return
    print("| fsync | batch | records/s | MB/s | fsyncs/s | p50 ms | p99 ms | CPU-ms/1000 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for a in appends:
        print(f"| {a['policy']} | {a['batch']} | {a['records_per_s']:,.0f} | {a['mb_per_s']:.1f} | "
              f"{a['fsyncs_per_s']:,.0f} | {a['p50_ms']:.3f} | {a['p99_ms']:.3f} | {a['cpu_ms_per_1000']:.2f} |")
    r = reads
    print()
    print(f"Partition of {r['records']:,} records ({r['size_mb']:,.0f} MB, {r['segments']} segments), "
          f"opened in {r['open_s'] * 1000:.0f} ms")
    print()
    print("| read | result |")
    print("|---|---:|")
    print(f"| sequential read(offset, 1000, 1 MiB) | {r['read_seq_records_per_s']:,.0f} records/s "
          f"({r['read_seq_cpu_ms_per_1000']:.2f} CPU-ms/1000) |")
    print(f"| random read(offset, 1) | {r['read_random_per_s']:,.0f} reads/s |")
    print(f"| full scan, substring predicate | {r['scan_records_per_s']:,.0f} records/s "
          f"({r['scan_cpu_ms_per_1000']:.2f} CPU-ms/1000, {r['scan_matched']:,} matches) |")
    print(f"| newest 100 records | p50 {r['newest100_p50_ms']:.3f} ms, p99 {r['newest100_p99_ms']:.3f} ms |")
    print(f"| newest 100 ERROR records | p99 {r['newest100_errors_p99_ms']:.3f} ms |")


if __name__ == "__main__":
    main()
