"""The zlog benchmark: a fresh real cluster, a fixed matrix, exactly-once verified, CPU per log.

    python tools/bench.py                    # full matrix, ~10 s per cell, writes docs/benchmarks.md
    python tools/bench.py --quick --json     # smoke run, machine-readable
    python tools/bench.py --compare http://127.0.0.1:8080/v1/logs --compare-pids 123,456
    python tools/bench.py --curve --only http-1000-c8 --only native-1000-c8   # CURVE on vs off, same run
    python tools/bench.py --replicated       # also R=3 acks=all cells (3 workers, a real etcd)

Each run starts router, 2 storage workers and 2 gateway processes (one port, SO_REUSEPORT) in a
temporary directory with fsync ``always``, then runs, one after the other, HTTP batches of 100
and 1000 records at concurrency 1, 8 and 32, and the native producer (``AsyncProducer`` straight
to the router). Every record carries a unique label ``zb: <unit>:<index>``; after the run every
acknowledged record must be on disk exactly once (``zlog.ops.audit``), or the run fails.

Invariants:
- Measured, not estimated: cluster CPU is utime+stime from /proc/<pid>/stat of every cluster
  process, sampled at the start and end of each cell's measured window; logs/s and latency count
  only requests that completed inside that window (a warm-up before it is excluded).
- The load generator stays cheap: one pre-built HTTP request per batch size, a unit key spliced
  in with one ``bytes.replace`` per request, raw asyncio streams with keep-alive. Its own CPU is
  measured and reported beside the cluster's.
- Nothing is retried by the load generator: a non-200 answer is counted as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from tests._cluster import Cluster, free_ports  # noqa: E402
from tests._etcd import EtcdServer  # noqa: E402
from tools import bench_intake  # noqa: E402
from tools.loadgen import generate, percentile  # noqa: E402
from zlog.client import AsyncProducer  # noqa: E402
from zlog.ingest.records import Group, Limits, encode_batch  # noqa: E402
from zlog.ops.audit import Audit  # noqa: E402
from zlog.ops.runtime import tune_malloc  # noqa: E402
from zlog.security import curve as curve_keys  # noqa: E402
from zlog.security.curve import ClientCurve  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
KEY_PH = b"@@@@@@@@@@@@"  # replaced by a fixed-width unit key: 2 digits of cell, 10 of counter
LABEL = "zb"


def make_records(n: int, seed: int) -> list[dict[str, Any]]:
    """The original load generator's records (tools/loadgen.py), each tagged ``zb: KEY:<i>``."""
    out = generate(random.Random(seed), int(time.time() * 1000), n)
    for i, r in enumerate(out):
        r["labels"] = {**r.get("labels", {}), LABEL: f"{KEY_PH.decode()}:{i}"}
    return out


def json_floor_ms_per_1k(batch: int, seconds: float = 1.0) -> float:
    """CPU-ms per 1000 logs of the least a Python pipeline that reads JSON must do: parse a body,
    add the three enrichment fields, serialise each record (the floor of a Python pipeline that reads JSON), measured here and
    now, so that every cell can be read as a multiple of it whatever the machine is doing."""
    body = orjson.dumps(make_records(batch, 7))
    loads, dumps = orjson.loads, orjson.dumps
    n = 0
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        lines = []
        for r in loads(body):
            r["received_at"] = 1
            r["ingested_node_id"] = "bench"
            r["client_ip"] = "127.0.0.1"
            lines.append(dumps(r))
        b"\n".join(lines)
        n += batch
    return (time.process_time() - t0) * 1000 / (n / 1000)


# -- measurement ----------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process, all threads, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0.0
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Cell:
    target: str  # "zlog" / "zlog-untuned" / "compare"
    kind: str  # "http" or "native"
    batch: int
    concurrency: int
    seconds: float = 0.0
    requests: int = 0
    logs: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    logs_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cluster_cpu_ms_per_1k: float | None = None
    cpu_split_ms_per_1k: dict[str, float] = field(default_factory=dict)
    loadgen_cpu_ms_per_1k: float = 0.0
    cluster_cores: float | None = None

    @property
    def name(self) -> str:
        return f"{self.target} {self.kind} b{self.batch} c{self.concurrency}"


class Window:
    """The measured window of one cell: wall clock, latencies and CPU of the processes given."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.open = False
        self.latencies: list[float] = []
        self.logs = 0
        self.requests = 0

    def start(self) -> None:
        self.cpu0 = {n: proc_cpu_s(p) for n, p in self.pids.items()}
        self.own0 = time.process_time()
        self.t0 = time.perf_counter()
        self.open = True

    def stop(self) -> None:
        self.open = False
        self.t1 = time.perf_counter()
        self.own1 = time.process_time()
        self.cpu1 = {n: proc_cpu_s(p) for n, p in self.pids.items()}

    def done(self, latency: float, records: int) -> None:
        if self.open:
            self.latencies.append(latency)
            self.logs += records
            self.requests += 1

    def fill(self, cell: Cell) -> None:
        cell.seconds = self.t1 - self.t0
        cell.requests, cell.logs = self.requests, self.logs
        lat = sorted(self.latencies)
        cell.logs_per_s = self.logs / cell.seconds if cell.seconds else 0.0
        cell.p50_ms, cell.p99_ms = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
        cell.max_ms = (lat[-1] if lat else float("nan")) * 1000
        per_k = 1_000_000 / self.logs if self.logs else float("nan")  # s -> ms, per 1000 logs
        cell.loadgen_cpu_ms_per_1k = (self.own1 - self.own0) * per_k
        if self.pids:
            split = {n: (self.cpu1[n] - self.cpu0[n]) * per_k for n in self.pids}
            cell.cpu_split_ms_per_1k = split
            cell.cluster_cpu_ms_per_1k = sum(split.values())
            cell.cluster_cores = sum(self.cpu1[n] - self.cpu0[n] for n in self.pids) / cell.seconds


async def timed(window: Window, warmup: float, seconds: float, workers: list[asyncio.Task[None]],
                stop: asyncio.Event) -> None:
    await asyncio.sleep(warmup)
    window.start()
    await asyncio.sleep(seconds)
    window.stop()
    stop.set()
    await asyncio.gather(*workers)


# -- HTTP load ------------------------------------------------------------------------------


def http_request_template(url: str, batch: int, seed: int) -> bytes:
    u = urlsplit(url)
    body = orjson.dumps(make_records(batch, seed))
    head = (f"POST {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


async def http_cell(url: str, cell: Cell, cell_no: int, audit: Audit | None, pids: dict[str, int],
                    warmup: float, seconds: float, render: Callable[[bytes], bytes] | None = None,
                    accept: Callable[[int, bytes], bool] | None = None) -> None:
    """``render``/``accept``: another API's request for a unit key and its success test (the
    intake cells, tools/bench_intake.py); by default /v1/logs and 200."""
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    template = http_request_template(url, cell.batch, seed=cell.batch)
    if render is None:
        def render(key: bytes) -> bytes:
            return template.replace(KEY_PH, key)
    if accept is None:
        def accept(status: int, body: bytes) -> bool:
            return status == 200
    window = Window(pids)
    stop = asyncio.Event()
    counter = 0
    prefix = b"%02d" % cell_no

    async def one_connection() -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while not stop.is_set():
                counter += 1
                key = prefix + b"%010d" % counter
                t0 = time.perf_counter()
                writer.write(render(key))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                body = await reader.readexactly(int(m.group(1))) if m else b""
                dt = time.perf_counter() - t0
                if accept(status, body):
                    if audit is not None:
                        audit.acknowledge(key.decode(), cell.batch)
                    window.done(dt, cell.batch)
                else:
                    cell.failed += 1
                    try:
                        code = str(orjson.loads(body).get("error", status))
                    except Exception:
                        code = str(status)
                    cell.errors[code] = cell.errors.get(code, 0) + 1
                    await asyncio.sleep(0.01)
        finally:
            writer.close()

    conns = [asyncio.ensure_future(one_connection()) for _ in range(cell.concurrency)]
    await timed(window, warmup, seconds, conns, stop)
    window.fill(cell)


# -- native producer ------------------------------------------------------------------------


async def native_cell(routers: list[str], cell: Cell, cell_no: int, audit: Audit, pids: dict[str, int],
                      warmup: float, seconds: float, curve: ClientCurve | None = None) -> None:
    producer = AsyncProducer(routers, node_id="bench", linger_ms=1.0, max_inflight=4, curve=curve)
    await producer.start()
    groups = encode_batch(make_records(cell.batch, seed=cell.batch + 7), Limits(), received_at=int(time.time() * 1000),
                          client_ip="127.0.0.1", node_id="bench")
    templates = [(svc, g.data, g.count, g.max_timestamp) for svc, g in groups.items()]
    window = Window(pids)
    stop = asyncio.Event()
    counter = 0
    prefix = b"%02d" % cell_no

    async def one_sender() -> None:
        nonlocal counter
        while not stop.is_set():
            counter += 1
            key = prefix + b"%010d" % counter
            t0 = time.perf_counter()
            gs = {svc: Group(data.replace(KEY_PH, key), n, ts) for svc, data, n, ts in templates}
            results = await producer.send_groups_settled(gs)
            dt = time.perf_counter() - t0
            errs = [r for r in results if isinstance(r, Exception)]
            if not errs:
                audit.acknowledge(key.decode(), cell.batch)
                window.done(dt, cell.batch)
            else:
                cell.failed += 1
                for e in errs:
                    code = getattr(e, "code", type(e).__name__)
                    cell.errors[code] = cell.errors.get(code, 0) + 1

    senders = [asyncio.ensure_future(one_sender()) for _ in range(cell.concurrency)]
    try:
        await timed(window, warmup, seconds, senders, stop)
    finally:
        await producer.close()
    window.fill(cell)


# -- profiling ------------------------------------------------------------------------------


def start_profilers(pids: dict[str, int], out_dir: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    spy = Path(sys.executable).parent / "py-spy"
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, pid in pids.items():
        procs.append(subprocess.Popen(
            [str(spy), "record", "-p", str(pid), "-r", "200", "-f", "raw", "--nonblocking", "-d", str(int(seconds)),
             "-o", str(out_dir / f"{name}.folded")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def summarize_folded(path: Path, top: int = 12) -> dict[str, Any]:
    """Self time by function (last frame) and inclusive time, from py-spy's folded output."""
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [re.sub(r" \((?:.*/)?([^/]+\.py):\d+\)", r" (\1)", f) for f in stack.split(";")]
        self_t[frames[-1]] = self_t.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    def pct(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]
    return {"samples": total, "self": pct(self_t), "inclusive": pct(incl)}


# -- orchestration --------------------------------------------------------------------------


def matrix(quick: bool) -> list[tuple[str, int, int]]:
    http = [("http", b, c) for b in (100, 1000) for c in (1, 8, 32)]
    # The other intake APIs, against http b1000 c8 of the same run (their target: 1.5x its CPU per log).
    intake = [(kind, 1000, 8) for kind in bench_intake.KINDS]
    return [*http, ("native", 1000, 8), ("native", 1000, 32), *intake]


def cluster_pids(cluster: Cluster) -> dict[str, int]:
    return {name: p.pid for name, p in cluster.procs.items() if p.alive()}


def replica_sizes(data_dir: Path, workers: int) -> list[dict[str, int]]:
    return [{p.name: sum(f.stat().st_size for f in p.glob("*.jsonl"))
             for p in (data_dir / f"replica-{w}").glob("[0-9]*")} for w in range(workers)]


def replica_digests(data_dir: Path, workers: int) -> list[dict[str, str]]:
    import hashlib

    out = []
    for w in range(workers):
        digests = {}
        for p in sorted((data_dir / f"replica-{w}").glob("[0-9]*")):
            h = hashlib.sha256()
            for seg in sorted(p.glob("*.jsonl")):
                h.update(seg.name.encode() + seg.read_bytes())
            digests[p.name] = h.hexdigest()
        out.append(digests)
    return out


async def wait_in_sync(etcd: EtcdServer, replicas: int, timeout: float = 30.0) -> None:
    """Every partition led and its whole replica set in the ISR (before the first cell)."""
    from zlog.replication.coordination import Coordinator

    coord = Coordinator((etcd.endpoint,), "/zlog")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parts = coord.snapshot().partitions
        if len(parts) == 4 and all(len(s.isr) == replicas for s, _ in parts.values()):
            return
        await asyncio.sleep(0.2)


async def run_zlog(args: argparse.Namespace, target: str, env: dict[str, str], cells: list[Cell],
                   profiles: dict[str, Any], curve: bool = False, workers: int = 2,
                   replicas: int = 1, idles: dict[str, Any] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zlog-bench-") as tmp:
        producer_keys: ClientCurve | None = None
        if curve:  # CurveZMQ on every zmq socket: the router, workers, gateways and the native producer
            keys = Path(tmp) / "keys"
            for name in ("server", "gateway", "worker"):
                curve_keys.generate(keys, name)
            curve_keys.generate(keys, "bench", tenant="default")
            env = {**env, "ZLOG_CLUSTER_CURVE": "true", "ZLOG_CLUSTER_KEYS_DIR": str(keys)}
            server = curve_keys.parse_cert((keys / "server.key").read_text())["public-key"].encode()
            producer_keys = ClientCurve(curve_keys.load_keypair(keys / "bench.key_secret"), server)
        etcd = None
        if replicas > 1:  # R copies on R workers, leaders through a real etcd, acks=all (the default)
            etcd = EtcdServer(Path(tmp) / "etcd").start()
            env = {**env, "ZLOG_STORAGE_REPLICATION_FACTOR": str(replicas), "ZLOG_CLUSTER_ETCD": etcd.endpoint,
                   "ZLOG_CLUSTER_REPLICATION_PORT_BASE": str(free_ports(workers))}
        cluster = Cluster(Path(tmp), gateways=args.gateways, workers=workers, fsync="always", env_extra=env)
        try:
            cluster.start()
            if etcd is not None:
                await wait_in_sync(etcd, replicas)
        except BaseException:
            cluster.stop()
            if etcd is not None:
                etcd.stop()
            raise
        try:
            pids = cluster_pids(cluster)
            if etcd is not None and etcd.popen is not None:
                pids["etcd"] = etcd.popen.pid
            if args.idle and idles is not None:  # the cluster's fixed cost: CPU per second of each process, nothing written
                await asyncio.sleep(2)
                cpu0, t0 = {n: proc_cpu_s(p) for n, p in pids.items()}, time.monotonic()
                await asyncio.sleep(args.idle)
                dt = time.monotonic() - t0
                idle = {n: round((proc_cpu_s(p) - cpu0[n]) * 1000 / dt, 1) for n, p in pids.items()}
                idles[target] = idle
                log(f"{target}: idle CPU-ms per second {idle} (total {sum(idle.values()):.0f})")
            url = cluster.url + "/v1/logs"
            audit = Audit(LABEL)
            for n, (kind, batch, conc) in enumerate(matrix(args.quick)):
                if args.only and not any(o in f"{kind}-{batch}-c{conc}" for o in args.only):
                    continue
                cell = Cell(target, kind, batch, conc)
                profilers: list[subprocess.Popen[bytes]] = []
                pdir = Path(tmp) / "profile"
                if args.profile and f"{kind}-{batch}-c{conc}" == args.profile:
                    profilers = start_profilers(pids, pdir, args.seconds)
                if kind == "http":
                    await http_cell(url, cell, n, audit, pids, args.warmup, args.seconds)
                elif kind in bench_intake.KINDS:
                    render = bench_intake.renderer(kind, url, make_records(batch, seed=batch), KEY_PH)
                    await http_cell(url, cell, n, audit, pids, args.warmup, args.seconds, render,
                                    bench_intake.accept(kind))
                else:
                    routers = [f"tcp://127.0.0.1:{cluster.front}"]
                    await native_cell(routers, cell, n, audit, pids, args.warmup, args.seconds, producer_keys)
                for pr in profilers:
                    pr.wait(args.seconds + 30)
                if profilers:
                    profiles[cell.name] = {name: summarize_folded(pdir / f"{name}.folded")
                                           for name in pids if (pdir / f"{name}.folded").exists()}
                cells.append(cell)
                log(format_cell(cell))
            dead = [n for n, p in cluster.procs.items() if not p.alive()]
            if replicas > 1:  # followers finish fetching what was acknowledged last
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    sizes = replica_sizes(cluster.data_dir, workers)
                    if all(s == sizes[0] for s in sizes):
                        break
                    await asyncio.sleep(0.2)
        finally:
            cluster.stop()
            if etcd is not None:
                etcd.stop()
        t0 = time.perf_counter()
        identical = None
        if replicas > 1:
            digests = replica_digests(cluster.data_dir, workers)
            identical = all(d == digests[0] for d in digests)
            audit.scan_dir(cluster.data_dir / "replica-0")  # R = workers: every replica holds everything
        else:
            audit.scan_dir(cluster.data_dir)
        report = audit.report()
        log(f"{target}: {report.summary()} [{time.perf_counter() - t0:.1f} s to verify]"
            + ("" if identical is None else f"; replicas byte-identical: {identical}"))
        if dead:
            log(f"{target}: processes died during the run: {dead}\n{cluster.logs()}")
        out = {**report.to_json(), "dead_processes": dead}
        if identical is not None:
            out["replicas_identical"] = identical
            out["ok"] = out["ok"] and identical
        return out


async def run_compare(args: argparse.Namespace, cells: list[Cell]) -> None:
    pids = {f"pid-{p}": int(p) for p in args.compare_pids.split(",")} if args.compare_pids else {}
    for n, (kind, batch, conc) in enumerate(matrix(args.quick)):
        if kind != "http" or (args.only and not any(o in f"{kind}-{batch}-c{conc}" for o in args.only)):
            continue
        cell = Cell("compare", kind, batch, conc)
        await http_cell(args.compare, cell, 50 + n, None, pids, args.warmup, args.seconds)
        cells.append(cell)
        log(format_cell(cell))


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None or x != x else f"{x:,.{digits}f}"


def format_cell(c: Cell) -> str:
    return (f"{c.name:32s} {c.logs_per_s:>11,.0f} logs/s  p50 {c.p50_ms:7.1f}  p99 {c.p99_ms:7.1f}  "
            f"max {c.max_ms:7.1f} ms  cluster {fmt(c.cluster_cpu_ms_per_1k, 2)} CPU-ms/1k  "
            f"loadgen {c.loadgen_cpu_ms_per_1k:.2f}  failed {c.failed}")


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(), "kernel": platform.release()}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [f"Generated by `tools/bench.py` on {result['date']}.", "",
           f"- Machine: {m['nproc']} vCPU ({m['cpu']}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}, "
           f"Python {m['python']}",
           f"- Command: `{result['command']}`",
           ("- Cluster: 1 router, 2 storage workers, 1 gateway process, " if result["gateways"] == 1 else
            f"- Cluster: 1 router, 2 storage workers, {result['gateways']} gateway processes on one port "
            "(SO_REUSEPORT), ") + "4 partitions, fsync `always`; "
           f"{result['seconds']:g} s measured per cell after {result['warmup']:g} s of warm-up."]
    if "zlog-r3" in result["audit"]:
        out.append("- `zlog-r3`: the same with `storage.replication_factor = 3` on 3 storage workers, "
                   "`acks=all` (every in-sync replica fsynced before the 200), leaders through a one-member "
                   "etcd whose CPU is counted with the cluster's.")
    out.append("")
    for target, audit in result["audit"].items():
        verdict = "**exactly once: OK**" if audit["ok"] else "**FAILED**"
        out.append(f"- Audit `{target}`: {verdict} — acknowledged {audit['acknowledged']:,}, "
                   f"stored {audit['stored']:,}, lost {audit['lost']}, duplicated {audit['duplicated']}, "
                   f"out of order {audit['out_of_order']}, stored but unacknowledged {audit['unacknowledged']}"
                   + ("" if "replicas_identical" not in audit else
                      f"; replicas byte-identical: {'yes' if audit['replicas_identical'] else '**NO**'}") + ".")
    floor = {int(k): v for k, v in result.get("json_floor_ms_per_1k", {}).items()}
    if floor:
        out += ["", "Baseline measured in the same run: the Python JSON floor (parse a body, enrich, serialise "
                "each record; no I/O) costs " + ", ".join(f"{v:.2f} CPU-ms per 1000 logs at batch {k}"
                                                          for k, v in sorted(floor.items()))
                + ". The `x floor` column is the cluster's CPU per log as a multiple of it."]
    out += ["", "| target | path | batch | conc | logs/s | p50 ms | p99 ms | max ms | cluster CPU-ms / 1k logs "
            "| x floor | cluster cores | loadgen CPU-ms / 1k | failed |", "|" + "---|" * 13]
    for c in result["cells"]:
        base = floor.get(c["batch"])
        ratio = c["cluster_cpu_ms_per_1k"] / base if base and c["cluster_cpu_ms_per_1k"] else None
        out.append(f"| {c['target']} | {c['kind']} | {c['batch']} | {c['concurrency']} | {c['logs_per_s']:,.0f} | "
                   f"{fmt(c['p50_ms'])} | {fmt(c['p99_ms'])} | {fmt(c['max_ms'])} | "
                   f"{fmt(c['cluster_cpu_ms_per_1k'], 2)} | {fmt(ratio, 1)} | {fmt(c['cluster_cores'], 2)} | "
                   f"{c['loadgen_cpu_ms_per_1k']:.2f} | {c['failed']} |")
    names = sorted({n for c in result["cells"] for n in c["cpu_split_ms_per_1k"]})
    if names:
        out += ["", "Cluster CPU-ms per 1000 logs, per process:", "",
                "| target | path | batch | conc | " + " | ".join(names) + " |", "|" + "---|" * (4 + len(names))]
        for c in result["cells"]:
            split = c["cpu_split_ms_per_1k"]
            if split:
                out.append(f"| {c['target']} | {c['kind']} | {c['batch']} | {c['concurrency']} | "
                           + " | ".join(fmt(split.get(n), 2) for n in names) + " |")
    for cell_name, procs in result.get("profiles", {}).items():
        out += ["", f"py-spy self time during `{cell_name}` (% of each process's non-idle samples):", ""]
        for name, prof in procs.items():
            top = "; ".join(f"{fn} {p}%" for fn, p in prof["self"][:8])
            out.append(f"- **{name}** ({prof['samples']} samples): {top}")
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_doc(path: Path, generated: str) -> None:
    block = f"{BEGIN}\n{generated}{END}"
    if path.exists() and BEGIN in (text := path.read_text()) and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = f"# zlog benchmarks\n\n{block}\n"
    path.write_text(text)


async def main_async(args: argparse.Namespace) -> int:
    cells: list[Cell] = []
    audits: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    tune_malloc()  # as every zlog process does: the floor must not pay the page-fault trap
    floor = {b: json_floor_ms_per_1k(b) for b in (100, 1000)}
    idles: dict[str, Any] = {}
    audits["zlog"] = await run_zlog(args, "zlog", {}, cells, profiles, idles=idles)
    if args.curve:
        audits["zlog-curve"] = await run_zlog(args, "zlog-curve", {}, cells, profiles, curve=True)
    if args.replicated:
        audits["zlog-r3"] = await run_zlog(args, "zlog-r3", {}, cells, profiles, workers=3, replicas=3, idles=idles)
    if args.compare:
        await run_compare(args, cells)
    result = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
              "command": "python tools/bench.py " + shlex.join(sys.argv[1:]), "seconds": args.seconds,
              "warmup": args.warmup, "gateways": args.gateways, "audit": audits,
              "cells": [asdict(c) for c in cells], "profiles": profiles, "json_floor_ms_per_1k": floor,
              "idle_cpu_ms_per_s": idles}
    if args.json:
        print(json.dumps(result, indent=2))
    if args.write:
        write_doc(Path(args.write), markdown(result))
        log(f"wrote {args.write}")
    ok = all(a["ok"] and not a["dead_processes"] for a in audits.values())
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell (default 10)")
    p.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per cell (default 1.5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1.5 s per cell, 0.5 s warm-up, no doc")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--gateways", type=int, default=1, help="gateway processes (default 1, as zlog up)")
    p.add_argument("--only", action="append", default=[], metavar="CELL",
                   help="run only cells whose name (e.g. http-1000-c8, native-1000) contains this")
    p.add_argument("--compare", metavar="URL", help="also run the HTTP matrix against this POST /v1/logs URL")
    p.add_argument("--compare-pids", metavar="PID,...", help="processes of the compared server, for its CPU")
    p.add_argument("--replicated", action="store_true",
                   help="also run the matrix on a replicated cluster: R=3 on 3 workers, acks=all, a real etcd "
                        "(target zlog-r3, after the R=1 cells in the same run; tools/bench_ab.py calls such a "
                        "cell r3-CELL, e.g. r3-http-1000-c8)")
    p.add_argument("--curve", action="store_true",
                   help="run the cells again on a second cluster with cluster.curve = true (target zlog-curve)")
    p.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                   help="before the cells, measure each cluster process's CPU per second while nothing is written")
    p.add_argument("--profile", metavar="CELL", help="py-spy every cluster process during this cell (e.g. http-1000-c8)")
    p.add_argument("--write", metavar="PATH", help="write the report into this markdown file "
                   "(default docs/benchmarks.md for a full run)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup = min(args.seconds, 1.5), min(args.warmup, 0.5)
    elif args.write is None and not args.only:
        args.write = str(REPO / "docs" / "benchmarks.md")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
