"""What the router adds per PRODUCE of a native producer key: ``NativeCharges.charge`` + ``settle``
(unpacking the body once, counting its lines, the bucket, the held charge), for a tenant with a
rate limit, one with a rate and a services limit (each line's service decoded too), and one
without limits (which reads no body), on bodies as ``AsyncProducer`` sends them.

    .venv/bin/python tools/bench_charge.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zlog.config import TenantsConfig
from zlog.ingest.records import Limits, encode_batch
from zlog.protocol import bodies
from zlog.router.native import NativeCharges
from zlog.tenants.admission import Admission
from zlog.tenants.quotas import LimitsOf


def body(records: int, partitions: int) -> bytes:
    t = int(time.time() * 1000)
    recs = [{"timestamp": t, "service": f"svc{i % 8}", "level": "INFO",
             "message": f"user {i} logged in from 10.0.0.{i % 250} after {i % 97} ms", "labels": {"env": "prod"}}
            for i in range(records)]
    groups = encode_batch(recs, Limits(), received_at=t, client_ip="", node_id="bench")
    data = b"".join(g.data for g in groups.values())
    if partitions == 1:
        return bodies.produce_body(data, t, b"p" * 12, 7, "acme")
    cut = len(data) // partitions
    pieces, start = [], 0
    for k in range(partitions):
        end = len(data) if k == partitions - 1 else data.index(b"\n", start + cut) + 1
        pieces.append((k, data[start:end], t, b"p" * 12, 7, "acme"))
        start = end
    return bodies.multi_produce_body(pieces)


def per_call_us(c: NativeCharges, tenant: bytes, b: bytes, n: int) -> float:
    keys = [(b"ident", i.to_bytes(8, "big")) for i in range(n)]
    t0 = time.process_time()
    for k in keys:
        c.charge(tenant, k, b, 0.0)
        c.settle(k, False)
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    rate = (("records_per_s", 10**12), ("bytes_per_s", 10**15))
    cfg = TenantsConfig(declared=(("acme", rate), ("svc", (*rate, ("max_services", 1000)))))
    c = NativeCharges(Admission(), LimitsOf(cfg))
    print("| records | partitions | body bytes | rate limit, us/PRODUCE | us/record "
          "| rate + max_services, us/PRODUCE | us/record | no limit, us/PRODUCE |")
    print("|---|---|---|---|---|---|---|---|")
    for records, partitions in ((100, 1), (1000, 1), (1000, 4), (10000, 4)):
        b = body(records, partitions)
        n = max(200, 200_000 // records)
        limited = min(per_call_us(c, b"acme", b, n) for _ in range(5))
        services = min(per_call_us(c, b"svc", b, n) for _ in range(5))
        free = min(per_call_us(c, b"other", b, n) for _ in range(5))
        print(f"| {records} | {partitions} | {len(b):,} | {limited:.1f} | {limited / records:.3f} "
              f"| {services:.1f} | {services / records:.3f} | {free:.2f} |")


if __name__ == "__main__":
    main()
