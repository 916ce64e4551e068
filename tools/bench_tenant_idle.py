"""What declared tenants cost an idle replicated cluster: storage workers' CPU per second.

    python tools/bench_tenant_idle.py                      # 0 and 8 declared tenants, alternated
    python tools/bench_tenant_idle.py --tenants 0 2 8 --rounds 2 --seconds 15

Each round starts a fresh cluster (R = 3, 3 storage workers, a real etcd, ``--partitions``
partitions) with that many ``[tenants.<id>]`` tables, waits until every partition's ISR is
full, lets it settle, then samples utime+stime of the three storage workers over ``--seconds``
with nothing written. A follower keeps one long poll in flight per log (each tenant's partition
is a log of its own), so the idle cost grows with declared tenants x partitions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._cluster import Cluster, free_ports
from tests._etcd import EtcdServer
from tools.bench import proc_cpu_s
from zlog.replication.coordination import Coordinator


def idle_cpu_ms_per_s(tenants: int, partitions: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory(prefix="zlog-idle-") as tmp:
        root = Path(tmp)
        with EtcdServer(root / "etcd") as etcd:
            env = {"ZLOG_STORAGE_REPLICATION_FACTOR": "3", "ZLOG_CLUSTER_ETCD": etcd.endpoint,
                   "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(3))}
            declared = "\n".join(f"[tenants.t{i}]" for i in range(tenants))
            with Cluster(root, partitions=partitions, workers=3, env_extra=env, toml_extra=declared) as c:
                coord = Coordinator((etcd.endpoint,), "/zlog")
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    parts = coord.snapshot().partitions
                    if len(parts) == partitions and all(len(s.isr) == 3 for s, _ in parts.values()):
                        break
                    time.sleep(0.2)
                else:
                    raise SystemExit("the cluster never got every ISR full")
                time.sleep(3.0)  # preferred-leader handoffs, first fetch rounds
                pids = [c.procs[f"storage-{w}"].pid for w in range(3)]
                t0, cpu0 = time.monotonic(), sum(proc_cpu_s(p) for p in pids)
                time.sleep(seconds)
                return (sum(proc_cpu_s(p) for p in pids) - cpu0) * 1000 / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tenants", type=int, nargs="+", default=[0, 8])
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    runs: dict[int, list[float]] = {t: [] for t in args.tenants}
    for r in range(args.rounds):
        for t in args.tenants:  # alternated: every configuration sees the same machine load
            ms = idle_cpu_ms_per_s(t, args.partitions, args.seconds)
            runs[t].append(ms)
            print(f"round {r + 1}: {t} declared tenants: {ms:.1f} CPU-ms/s (3 storage workers)", flush=True)
    base = statistics.median(runs[args.tenants[0]])
    for t, values in runs.items():
        med = statistics.median(values)
        print(f"{t:>3} declared tenants x {args.partitions} partitions: median {med:.1f} CPU-ms/s "
              f"({(med - base):+.1f} vs {args.tenants[0]}); runs {[round(v, 1) for v in values]}")


if __name__ == "__main__":
    main()
