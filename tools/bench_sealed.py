"""Sealed segments against plain ones, on the load generator's records (tools/loadgen.generate).

Builds the same ``--records`` records (stored lines as the gateway encodes them, batches of 500,
one record carrying a token that occurs nowhere else, in the middle) into two partitions: one
left plain, one whose closed segments are sealed (``PartitionLog.seal_closed``, the code the
worker's seal process runs). Then reports:

- bytes per record: plain JSONL; sealed files (block index and token filter included); the
  ``.batches`` files (producer state, kept as is in both forms);
- seal CPU per record;
- the rare token searched with ``q=`` and ``contains=`` over the whole log, no service filter,
  paged to the end like the worker does (p50/p99), plain vs sealed, and what the active
  (always plain) segment costs of it;
- newest 100 of one service, sequential fetch by offset (1000 at a time) over sealed segments,
  and random single-record fetches, plain vs sealed.

    .venv/bin/python tools/bench_sealed.py --records 1000000 --segment-mb 32
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.loadgen import generate, percentile
from zlog.config import FsyncPolicy, SealConfig, StorageConfig
from zlog.ingest.records import Limits, encode_batch
from zlog.read.query import Filter, compile_filter, needles_of
from zlog.storage import PartitionLog

TOKEN = "zq7xk2vr"


def build(directory: Path, n: int, cfg: StorageConfig) -> PartitionLog:
    log = PartitionLog.open(directory, cfg)
    rng = random.Random(42)
    limits = Limits()
    ts = 1_795_675_988_031
    for start in range(0, n, 500):
        recs = generate(rng, ts, min(500, n - start))
        ts = recs[-1]["timestamp"] + 100
        if start <= n // 2 < start + len(recs):
            recs[n // 2 - start]["message"] = f"payment gateway {TOKEN} timed out"
        groups = encode_batch(recs, limits, received_at=ts + 7, client_ip="127.0.0.1", node_id="zlog-1")
        by_service = {svc: iter(g.lines) for svc, g in groups.items()}
        lines = [next(by_service[r["service"]]) for r in recs]
        log.append(lines, ts)
        log.commit()
    return log


def paged(log: PartitionLog, flt: Filter, use_needles: bool) -> list[tuple[int, bytes]]:
    """The whole-range search as the worker pages it (8 MiB scan budget per request); without
    needles exactly as before sealed segments (every line through the predicate)."""
    pred = compile_filter(flt)
    needles = needles_of(flt) if use_needles else None
    out: list[tuple[int, bytes]] = []
    start = None
    while True:
        r = log.scan(start=start, predicate=pred, limit=100, needles=needles)
        out += r.records
        if r.next is None:
            return out
        start = r.next


def timed(runs: int, fn: Callable[[], object]) -> tuple[float, float]:
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return percentile(samples, 50), percentile(samples, 99)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--segment-mb", type=int, default=32)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--block-kb", type=int, default=SealConfig().block_bytes >> 10)
    ap.add_argument("--level", type=int, default=SealConfig().level)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args(argv)
    seal = SealConfig(block_bytes=args.block_kb << 10, level=args.level)
    cfg = StorageConfig(fsync=FsyncPolicy("never"), segment_bytes=args.segment_mb << 20)
    root = Path(tempfile.mkdtemp(prefix="zlog-bench-sealed-", dir=args.dir))
    out: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        plain = build(root / "plain", args.records, cfg)
        shutil.copytree(root / "plain", root / "sealed")
        sealed = PartitionLog.open(root / "sealed", cfg)
        print(f"built {args.records:,} records twice in {time.perf_counter() - t0:.0f} s; "
              f"{plain.segment_count} segments of {args.segment_mb} MiB", flush=True)
        c0 = time.process_time()
        n_sealed = sealed.seal_closed(seal.block_bytes, seal.level)
        seal_cpu = time.process_time() - c0
        closed = sealed.segments[:-1]
        closed_records = sum(s.count for s in closed)
        raw = sum(s.size for s in closed)
        stored = sum(s.stored_bytes for s in sealed.segments[:-1])  # type: ignore[union-attr]
        index = sealed.index_bytes
        batches = sum((root / "sealed" / f"{s.base:020d}.batches").stat().st_size for s in closed)
        out.update(records=args.records, sealed_segments=n_sealed, sealed_records=closed_records,
                   plain_b=raw / closed_records, sealed_b=stored / closed_records, index_b=index / closed_records,
                   batches_b=batches / closed_records, seal_cpu_us=seal_cpu * 1e6 / closed_records,
                   active_records=sealed.active.count, active_mb=sealed.active.size / 2**20)
        print(f"per record over the {closed_records:,} sealed records: plain {out['plain_b']:.1f} B, sealed "
              f"{out['sealed_b']:.2f} B (index {out['index_b']:.2f} B), ratio {raw / stored:.1f}x; .batches "
              f"{out['batches_b']:.2f} B; seal CPU {out['seal_cpu_us']:.2f} us/record", flush=True)
        for name, flt in (("q=", Filter(words=(TOKEN,))), ("contains=", Filter(contains=TOKEN))):
            want = paged(plain, flt, False)
            assert len(want) == 1 and paged(sealed, flt, True) == want
            p = timed(max(3, args.runs // 3), lambda f=flt: paged(plain, f, False))
            pp = timed(max(3, args.runs // 3), lambda f=flt: paged(plain, f, True))
            s = timed(args.runs, lambda f=flt: paged(sealed, f, True))
            tail = timed(args.runs, lambda f=flt: _active_only(sealed, f))
            out[name] = {"plain": p, "plain_probe": pp, "sealed": s, "active": tail}
            print(f"rare token {name:<10} whole range: plain p50 {p[0]:8.1f} ms p99 {p[1]:8.1f} | plain, chunks "
                  f"probed p50 {pp[0]:7.1f} ms | sealed p50 {s[0]:6.1f} ms p99 {s[1]:6.1f} ({p[0] / s[0]:.0f}x); "
                  f"of which the plain active segment ({out['active_mb']:.1f} MiB) p50 {tail[0]:.1f} ms",
                  flush=True)
        svc = Filter(services=("auth_service",))
        for label, fn in (
            ("newest 100 of a service", lambda log: log.scan(predicate=compile_filter(svc), limit=100,
                                                             needles=needles_of(svc))),
            ("newest 100 of a service in sealed data", lambda log: log.scan(
                start=closed_records - 1, predicate=compile_filter(svc), limit=100, needles=needles_of(svc))),
        ):
            p, s = timed(args.runs, lambda f=fn: f(plain)), timed(args.runs, lambda f=fn: f(sealed))
            out[label] = {"plain": p, "sealed": s}
            print(f"{label:<40} plain p50 {p[0]:6.2f} ms p99 {p[1]:6.2f} | sealed p50 {s[0]:6.2f} ms "
                  f"p99 {s[1]:6.2f}", flush=True)
        for log_name, log in (("plain", plain), ("sealed", sealed)):
            n = 0
            c0, t0 = time.process_time(), time.perf_counter()
            off = 0
            while off < closed_records and time.perf_counter() - t0 < 3:
                got = log.read(off, 1000, 1 << 20)
                n += len(got)
                off = got[-1][0] + 1
            cpu = time.process_time() - c0
            rnd = random.Random(3)
            k, t1 = 0, time.perf_counter()
            while time.perf_counter() - t1 < 1:
                log.read(rnd.randrange(closed_records), 1, 1 << 20)
                k += 1
            out[f"fetch_{log_name}"] = {"seq_cpu_ms_per_1000": cpu * 1e6 / n,
                                        "random_per_s": k / (time.perf_counter() - t1)}
            print(f"fetch by offset, {log_name}: sequential {cpu * 1e6 / n:.2f} CPU-ms per 1000 records; "
                  f"random single records {out[f'fetch_{log_name}']['random_per_s']:,.0f}/s", flush=True)
        plain.close()
        sealed.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _active_only(log: PartitionLog, flt: Filter) -> object:
    """The search over the active (always plain) segment alone, as the whole-range search does it."""
    pred, needles = compile_filter(flt), needles_of(flt)
    start: int | None = log.active.base
    while start is not None and start < log.next_offset:
        start = log.scan(backward=False, start=start, predicate=pred, limit=100, needles=needles).next
    return None


if __name__ == "__main__":
    sys.exit(main())
