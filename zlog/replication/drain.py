"""``zlog worker drain N`` / ``zlog worker undrain N``: move replicas and leadership off a worker.

Draining writes ``drain/<N>`` in etcd. Each leader on worker N then stops acknowledging and
hands its partition to the first live in-sync replica that is not drained (``control.
handoff_target``), and no election picks N while another in-sync replica can be picked. The
controller also reassigns every replica N holds to another worker (``zlog.replication.moves``):
the new replica catches up and joins the ISR before N's is dropped. The command prints each
partition's replicas until worker N holds none (exit 0: it may be stopped with nothing lost)
or ``--wait`` passes (exit 1); when no other live worker could take them, once N leads
nothing (exit 0, saying which partitions stay one replica short if N stops). Undraining
deletes the key: N may lead and receive replicas again (balancing moves some back).

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
from zlog.replication.moves import nowhere_to_go


def run(cfg: Config, args: argparse.Namespace) -> int:
    if cfg.storage.replication_factor < 2:
        print("zlog worker: only a replicated cluster (storage.replication_factor > 1) can drain a worker",
              file=sys.stderr)
        return 2
    n = args.worker_id
    coord = Coordinator(local_endpoints(cfg), cfg.cluster.etcd_prefix)
    try:
        known = coord.snapshot()
        if n not in known.workers and not any(n in s.replicas for s, _ in known.partitions.values()):
            print(f"zlog worker: no worker {n} is registered or holds a replica", file=sys.stderr)
            return 2
        coord.set_drain(n, args.action == "drain")
        if args.action == "undrain":
            print(f"worker {n} may lead again; preferred leaders return once every replica is in sync")
            return 0
        deadline = time.monotonic() + args.wait
        while True:
            snap = coord.snapshot()
            held = sorted(name for name, (s, _) in snap.partitions.items() if n in s.replicas)
            led = sorted(name for name, (s, _) in snap.partitions.items() if s.leader == n)
            print(f"worker {n} draining: leads {', '.join(led) or 'nothing'}, holds {', '.join(held) or 'nothing'}; "
                  + "; ".join(f"{name}: leader {s.leader} replicas {list(s.replicas)} isr {list(s.isr)}"
                              + (f" adding {list(s.adding)} removing {list(s.removing)}" if s.target else "")
                              for name, (s, _) in sorted(snap.partitions.items())), flush=True)
            if not held:
                print(f"worker {n} is drained: it holds no replica and may be stopped")
                return 0
            stuck = nowhere_to_go(snap, n)
            if not led and stuck == held:
                print(f"worker {n} leads nothing; its replicas of {', '.join(stuck)} have no other live worker to "
                      f"go to, so stopping it leaves those partitions with one replica fewer")
                return 0
            if time.monotonic() >= deadline:
                print(f"worker {n} still holds {', '.join(held)} (leads {', '.join(led) or 'nothing'}) after "
                      f"{args.wait:g} s (no other live worker to move them to?)", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except CoordinationError as exc:
        print(f"zlog worker: etcd: {exc}", file=sys.stderr)
        return 1
