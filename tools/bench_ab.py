"""Before/after in one invocation: ``tools/bench.py`` cells of two trees, alternating.

    python tools/bench_ab.py --base main --cells http-100-c32,http-1000-c32 --rounds 3 --seconds 4
    python tools/bench_ab.py --base main --cells r3-http-1000-c8,r3-native-1000-c8 --rounds 2

A cell named ``r3-CELL`` is ``tools/bench.py --replicated --only CELL``: CELL on an R = 1 cluster,
then on an R = 3 one (3 workers, acks=all, a real etcd) in the same run; the R = 3 figure is
compared between the trees, and each run's R=3/R=1 ratio is reported beside it.

The base tree is a detached ``git worktree`` of ``--base`` in a temporary directory (removed
afterwards); the other is ``--after`` likewise, or this checkout as it is. For every cell and round,
each tree runs ``tools/bench.py --only CELL --json`` in a fresh cluster of its own code (its own
gateway, router, workers and, for native cells, its own producer), base first on even rounds and
after on odd ones, so a minute of contention falls on both alike. Every run is audited
exactly-once by bench.py itself; a run that fails its audit fails this tool.

Invariants:
- Figures are CPU-ms per 1000 logs (utime+stime of every cluster process over the measured
  window), the only unit that survives a shared machine; logs/s is printed but not compared.
- Noise is reported, not hidden: each cell shows every round's figure and the spread
  (max/min - 1) of each side, so a difference smaller than the spread reads as none.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


R3 = "r3-"


def run_cell(tree: Path, cell: str, seconds: float, warmup: float, gateways: int) -> dict[str, Any]:
    replicated = cell.startswith(R3)
    cell = cell.removeprefix(R3)
    cmd = [sys.executable, str(tree / "tools" / "bench.py"), "--only", cell, "--seconds", str(seconds),
           "--warmup", str(warmup), "--gateways", str(gateways), "--json", *(["--replicated"] if replicated else [])]
    for attempt in range(2):  # once more after a failed start: ports are picked at run time and may race
        out = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=600)
        if out.returncode == 0 or "waiting for the cluster to be ready" not in out.stderr or attempt:
            break
        print(f"{cell}: the cluster did not start ({tree}); once more", file=sys.stderr, flush=True)
    if out.returncode != 0:
        raise SystemExit(f"{tree}: {cell} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout)
    by_target = {c["target"]: c for c in result["cells"] if f"{c['kind']}-{c['batch']}-c{c['concurrency']}" == cell}
    want = ["zlog-r3", "zlog"] if replicated else ["zlog"]
    if sorted(by_target) != sorted(want):
        raise SystemExit(f"{tree}: expected results of {want} for {cell}, got {sorted(by_target)}")
    c = by_target[want[0]]
    floor = result.get("json_floor_ms_per_1k", {}).get(str(c["batch"]))
    out_cell = {"cpu": c["cluster_cpu_ms_per_1k"], "split": c["cpu_split_ms_per_1k"], "logs_per_s": c["logs_per_s"],
                "p99": c["p99_ms"], "floor": floor}
    if replicated:  # the R = 1 cluster of the same run
        r1 = by_target["zlog"]
        out_cell.update(r1_cpu=r1["cluster_cpu_ms_per_1k"], r1_p99=r1["p99_ms"],
                        ratio=c["cluster_cpu_ms_per_1k"] / r1["cluster_cpu_ms_per_1k"])
    return out_cell


def roles(split: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, v in split.items():
        role = name.split("-", 1)[0] if name.startswith(("gateway", "storage")) else name
        out[role] = out.get(role, 0.0) + v
    return out


def spread(xs: list[float]) -> float:
    return max(xs) / min(xs) - 1 if xs and min(xs) > 0 else float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--base", default="main", help="git revision to compare against (default main)")
    p.add_argument("--after", help="git revision to measure (default: this checkout as it is)")
    p.add_argument("--cells", default="http-100-c32,http-1000-c32", help="comma-separated bench.py cells")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--gateways", default="1", help="gateway processes; 'A,B' gives base A and after B")
    args = p.parse_args()
    gws = [int(g) for g in args.gateways.split(",")]
    gw_base, gw_after = gws[0], gws[-1]
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="zlog-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base],
                       check=True, capture_output=True)
        after = REPO
        if args.after:
            after = Path(tmp) / "after"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(after), args.after],
                           check=True, capture_output=True)
        try:
            for cell in args.cells.split(","):
                results[cell] = {"base": [], "after": []}
                for r in range(args.rounds):
                    order = [("base", base, gw_base), ("after", after, gw_after)]
                    for side, tree, gw in order if r % 2 == 0 else order[::-1]:
                        res = run_cell(tree, cell, args.seconds, args.warmup, gw)
                        results[cell][side].append(res)
                        r1 = (f"  R=1 {res['r1_cpu']:.2f} (R=3/R=1 {res['ratio']:.2f}x, p99 {res['r1_p99']:.0f} ms)"
                              if "ratio" in res else "")
                        print(f"{cell} round {r} {side:5s} {res['cpu']:6.2f} CPU-ms/1k  "
                              f"{res['logs_per_s']:>9,.0f} logs/s  p99 {res['p99']:.0f} ms  "
                              + " ".join(f"{k} {v:.2f}" for k, v in sorted(roles(res["split"]).items())) + r1,
                              file=sys.stderr, flush=True)
        finally:
            for tree in {base, after} - {REPO}:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"\nbase {args.base} (gateways {gw_base}) vs {args.after or 'this tree'} (gateways {gw_after}), "
          f"{args.rounds} rounds x {args.seconds:g} s, alternating; CPU-ms per 1000 logs, median of rounds\n")
    print("| cell | base | after | after/base | base rounds | after rounds | base per role | after per role "
          "| p99 ms base / after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cell, sides in results.items():
        b = [x["cpu"] for x in sides["base"]]
        a = [x["cpu"] for x in sides["after"]]
        mb, ma = statistics.median(b), statistics.median(a)

        def per_role(xs: list[dict[str, Any]]) -> str:
            rs = [roles(x["split"]) for x in xs]
            keys = sorted({k for r in rs for k in r})
            return ", ".join(f"{k} {statistics.median([r.get(k, 0.0) for r in rs]):.2f}" for k in keys)

        print(f"| {cell} | {mb:.2f} | {ma:.2f} | {ma / mb:.2f}x | {' '.join(f'{x:.2f}' for x in b)} "
              f"(spread {spread(b):.0%}) | {' '.join(f'{x:.2f}' for x in a)} (spread {spread(a):.0%}) "
              f"| {per_role(sides['base'])} | {per_role(sides['after'])} "
              f"| {statistics.median([x['p99'] for x in sides['base']]):.0f} / "
              f"{statistics.median([x['p99'] for x in sides['after']]):.0f} |")
    replicated = {cell: sides for cell, sides in results.items() if cell.startswith(R3)}
    if replicated:
        print("\nR = 3 (acks=all) against R = 1 of the same run: CPU-ms per 1000 logs, median of rounds\n")
        print("| cell | side | R=1 | R=3 | R=3/R=1 | rounds' ratios | p99 ms R=1 | p99 ms R=3 |")
        print("|---|---|---|---|---|---|---|---|")
        for cell, sides in replicated.items():
            for side, xs in sides.items():
                med = {k: statistics.median([x[k] for x in xs]) for k in ("r1_cpu", "cpu", "ratio", "r1_p99", "p99")}
                ratios = " ".join(f"{x['ratio']:.2f}" for x in xs)
                print(f"| {cell} | {side} | {med['r1_cpu']:.2f} | {med['cpu']:.2f} | {med['ratio']:.2f}x "
                      f"| {ratios} | {med['r1_p99']:.0f} | {med['p99']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
