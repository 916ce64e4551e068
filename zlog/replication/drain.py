"""``zlog worker drain N`` / ``zlog worker undrain N``: move leadership off a worker, and back.

Draining writes ``drain/<N>`` in etcd. Each leader on worker N then stops acknowledging and
hands its partition to the first live in-sync replica that is not drained (``control.
handoff_target``), and no election picks N while another in-sync replica can be picked, so
worker N can be stopped without a failover pause. The command prints who leads what until
worker N leads nothing (exit 0) or ``--wait`` passes (exit 1). Undraining deletes the key; the
preferred leaders then take their partitions back once every replica is in sync.

Invariants:
- Only etcd is written; the workers do the moving, each with its own transactions.
- Bounded: every etcd call has a timeout, the wait has a deadline.
"""

from __future__ import annotations

import argparse
import sys
import time

from zlog.config import Config
from zlog.replication.coordination import CoordinationError, Coordinator
from zlog.replication.etcd_server import local_endpoints


def run(cfg: Config, args: argparse.Namespace) -> int:
    if cfg.storage.replication_factor < 2:
        print("zlog worker: only a replicated cluster (storage.replication_factor > 1) can drain a worker",
              file=sys.stderr)
        return 2
    n = args.worker_id
    if not 0 <= n < cfg.cluster.workers:
        print(f"zlog worker: no worker {n} (cluster.workers = {cfg.cluster.workers})", file=sys.stderr)
        return 2
    coord = Coordinator(local_endpoints(cfg), cfg.cluster.etcd_prefix)
    try:
        coord.set_drain(n, args.action == "drain")
        if args.action == "undrain":
            print(f"worker {n} may lead again; preferred leaders return once every replica is in sync")
            return 0
        deadline = time.monotonic() + args.wait
        while True:
            snap = coord.snapshot()
            led = sorted(name for name, (s, _) in snap.partitions.items() if s.leader == n)
            print(f"worker {n} draining: leads {', '.join(led) or 'nothing'}; "
                  + "; ".join(f"{name}: leader {s.leader} isr {list(s.isr)}"
                              for name, (s, _) in sorted(snap.partitions.items())), flush=True)
            if not led:
                print(f"worker {n} is drained: it leads no partition and may be stopped")
                return 0
            if time.monotonic() >= deadline:
                print(f"worker {n} still leads {', '.join(led)} after {args.wait:g} s "
                      "(no other live in-sync replica?)", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except CoordinationError as exc:
        print(f"zlog worker: etcd: {exc}", file=sys.stderr)
        return 1
