"""Ingest while sealing runs: the same load with sealing on and off, segments small enough that
several roll (and get sealed) inside the measured window.

A fresh cluster per run (router, 2 storage workers, 1 gateway, fsync always,
``storage.segment_bytes`` = ``--segment-mb``), ``tools/loadgen.py`` for ``--seconds`` (batches
of 1000, 8 senders). Reported per run: acknowledged logs/s, CPU-ms per 1000 logs of the cluster
processes themselves (utime+stime from /proc), CPU-ms per 1000 logs of the seal processes (the
workers' reaped children: cutime+cstime), and how many segments were closed and sealed.
Runs alternate on/off ``--rounds`` times, since this machine's spare CPU changes by the minute.

    .venv/bin/python tools/bench_seal_ingest.py --seconds 10 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests._cluster import Cluster

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's cutime+cstime) in seconds."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0, 0.0
    f = data[data.rindex(b")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK, (int(f[13]) + int(f[14])) / CLK_TCK


def run(seal: bool, seconds: float, segment_mb: int, idle_ms: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="zlog-bench-seal-") as tmp:
        c = Cluster(Path(tmp), workers=2, gateways=1, fsync="always",
                    env_extra={"ZLOG_STORAGE_SEGMENT_BYTES": str(segment_mb << 20),
                               "ZLOG_SEAL_ENABLED": "true" if seal else "false",
                               **({"ZLOG_SEAL_IDLE_MS": str(idle_ms)} if idle_ms is not None else {})})
        c.start()
        try:
            pids = {n: p.pid for n, p in c.procs.items() if p.alive()}
            before = {n: cpu(p) for n, p in pids.items()}
            out = subprocess.run([sys.executable, "tools/loadgen.py", "--url", c.url + "/v1/logs", "--batch", "1000",
                                  "--concurrency", "8", "--delay", "0", "--seconds", str(seconds), "--json",
                                  "--quiet"], capture_output=True, check=True, cwd=Path(__file__).parents[1])
            after = {n: cpu(p) for n, p in pids.items()}
            summary = json.loads(out.stdout)
            acked = summary["acknowledged"]
            names = [p.name for p in c.data_dir.rglob("*") if p.is_file()]
        finally:
            c.stop()
    own = sum(after[n][0] - before[n][0] for n in pids)
    children = sum(after[n][1] - before[n][1] for n in pids)
    closed = sum(n.endswith((".jsonl", ".jsonl.zst")) for n in names) - 4
    return {"seal": seal, "logs_per_s": acked / seconds, "cluster_cpu_ms_per_1k": own * 1e6 / acked,
            "seal_cpu_ms_per_1k": children * 1e6 / acked, "segments_closed": closed,
            "segments_sealed": sum(n.endswith(".jsonl.zst") for n in names)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--segment-mb", type=int, default=8)
    ap.add_argument("--idle-ms", type=int, default=None,
                    help="seal.idle_ms (0: seal beside the load instead of waiting for quiet)")
    args = ap.parse_args()
    print("| sealing | logs/s | cluster CPU-ms / 1000 logs | seal CPU-ms / 1000 logs | segments closed | sealed |")
    print("|---|---:|---:|---:|---:|---:|")
    for _ in range(args.rounds):
        for seal in (True, False):
            r = run(seal, args.seconds, args.segment_mb, args.idle_ms)
            print(f"| {'on' if seal else 'off'} | {r['logs_per_s']:,.0f} | {r['cluster_cpu_ms_per_1k']:.2f} | "
                  f"{r['seal_cpu_ms_per_1k']:.2f} | {r['segments_closed']} | {r['segments_sealed']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
