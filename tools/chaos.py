"""Chaos run and the load generator / exactly-once verifier that the fault tests share.

``python tools/chaos.py --minutes 5`` starts a cluster from ``conf/supervisord.conf`` under
supervisord (which restarts what we SIGKILL), drives it with HTTP producers (plain and
Idempotency-Key retrying) and one zmq-native ``Producer``, SIGKILLs and SIGSTOPs random
workers, routers and gateways for N minutes, then lets the cluster settle and prints
acknowledged / stored / lost / duplicated from ``zlog.ops.audit``. The exit status is 0 only when
nothing acknowledged is lost, duplicated, reordered or stored as garbage.

Invariants checked by ``verify`` (the tests assert the same verdict):
- every acknowledged record (HTTP 200, 202 once replayed, a native ``send`` that resolved) is
  stored exactly once; an unacknowledged one may be stored, but at most once;
- per load thread and partition, the records of acknowledged requests that were stored
  directly (not spooled) appear in the order the requests were acknowledged;
- the (partition, offset) an acknowledgement reports holds exactly that request's records;
- every stored line is a JSON object with the 8 record fields, in order, with their types;
- per request and partition, its records are stored all or none (no partial batch).

Every record carries one label, ``zb = "<unit key>:<index>"`` (``zlog.audit.tag``).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from zlog.ops.audit import Audit, AuditReport, tag  # noqa: E402
from zlog.protocol.hashing import Partitioner  # noqa: E402

SERVICES = ("event_creator", "focus_allocator", "notification_service", "auth_service")
FIELDS = ("timestamp", "service", "level", "message", "labels", "received_at", "ingested_node_id", "client_ip")
LABEL = "zb"


# -- what was sent and what came back ------------------------------------------------------


@dataclass(slots=True)
class Unit:
    """One acknowledgeable request: its records' partitions and what the answer said."""

    key: str
    thread: str
    partitions: list[int]  # partition of record i
    acked: bool = False
    status: int = 0
    direct: set[int] = field(default_factory=set)  # partitions stored before the answer
    offsets: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, offset, count) reported


class LoadStats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.max_latency_s = 0.0
        self.retry_after_missing = 0

    def note(self, status: str, latency: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.max_latency_s = max(self.max_latency_s, latency)


def make_records(key: str, n: int, rng: random.Random, services: tuple[str, ...], pad: int = 0
                 ) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return [{"timestamp": now + i, "service": rng.choice(services), "level": rng.choice(("INFO", "WARN", "ERROR")),
             "message": f"chaos {key} {i}" + ("x" * pad), "labels": {LABEL: tag(key, i)}} for i in range(n)]


class HttpLoad:
    """Closed-loop HTTP producers, one request at a time per thread, reconnecting on errors.

    Threads with ``keyed`` retry a failed request with the same ``Idempotency-Key`` (same body)
    until it is acknowledged or ``retry_for_s`` passes; the others never retry.
    """

    def __init__(self, host: str, port: int, partitions: int, *, threads: int = 4, keyed: int = 2,
                 records: int = 20, services: tuple[str, ...] = SERVICES, pad: int = 0,
                 client_timeout_s: float = 15.0, retry_for_s: float = 10.0, prefix: str = "h",
                 pause_s: float = 0.0) -> None:
        self.host, self.port = host, port
        self.part = Partitioner(partitions)
        self.n_threads, self.keyed, self.records = threads, keyed, records
        self.services, self.pad = services, pad
        self.client_timeout_s, self.retry_for_s, self.prefix, self.pause_s = client_timeout_s, retry_for_s, prefix, pause_s
        self.units: dict[str, list[Unit]] = {}
        self.stats = LoadStats()
        self.bodies: Counter[str] = Counter()  # error codes seen in bodies
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> HttpLoad:
        for t in range(self.n_threads):
            name = f"{self.prefix}{t}"
            self.units[name] = []
            th = threading.Thread(target=self._run, args=(name, t < self.keyed, random.Random(t)), daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(self.client_timeout_s + self.retry_for_s + 5)

    def _post(self, conn: http.client.HTTPConnection | None, body: bytes, headers: dict[str, str]
              ) -> tuple[http.client.HTTPConnection | None, int, dict[str, Any], str]:
        """(connection to reuse, status or 0 on a transport error, JSON body, Retry-After)."""
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.client_timeout_s)
            conn.request("POST", "/v1/logs", body, {"Content-Type": "application/json", **headers})
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            retry_after = resp.getheader("Retry-After") or ""
        except (OSError, http.client.HTTPException) as exc:
            self.stats.note(f"conn:{type(exc).__name__}", time.monotonic() - t0)
            if conn is not None:
                conn.close()
            return None, 0, {}, ""
        self.stats.note(str(status), time.monotonic() - t0)
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {}
        if status >= 400 and isinstance(parsed, dict):
            with self.stats.lock:
                self.bodies[str(parsed.get("error"))] += 1
                if status in (429, 503) and not retry_after:
                    self.stats.retry_after_missing += 1
        return conn, status, parsed if isinstance(parsed, dict) else {}, retry_after

    def _run(self, name: str, keyed: bool, rng: random.Random) -> None:
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self._stop.is_set():
            key = f"{name}-{n}"
            n += 1
            records = make_records(key, self.records, rng, self.services, self.pad)
            unit = Unit(key, name, [self.part(r["service"]) for r in records])
            self.units[name].append(unit)
            body = orjson.dumps(records)
            headers = {"Idempotency-Key": key} if keyed else {}
            give_up = time.monotonic() + self.retry_for_s
            while True:
                conn, status, answer, _ = self._post(conn, body, headers)
                unit.status = status
                if status in (200, 202):
                    unit.acked = True
                    unit.offsets = [(s["partition"], s["offset"], s["count"]) for s in answer.get("stored", [])]
                    unit.direct = {p for p, _, _ in unit.offsets}
                    break
                if not keyed or time.monotonic() > give_up or (400 <= status < 500 and status != 429):
                    break
                time.sleep(0.05 + rng.random() * 0.1)
            if self.pause_s:
                time.sleep(self.pause_s)
        if conn is not None:
            conn.close()

    def all_units(self) -> Iterator[Unit]:
        for units in self.units.values():
            yield from units


class NativeLoad:
    """One ``zlog.client.Producer`` sending one unit at a time and waiting for its offsets."""

    def __init__(self, routers: list[str], partitions: int, *, records: int = 10, timeout_s: float = 3.0,
                 prefix: str = "n") -> None:
        self.routers, self.records, self.timeout_s, self.prefix = routers, records, timeout_s, prefix
        self.part = Partitioner(partitions)
        self.units: dict[str, list[Unit]] = {prefix: []}
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> NativeLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s * 3 + 30)

    def _run(self) -> None:
        from zlog.client import Producer

        rng = random.Random(99)
        producer = Producer(self.routers, delivery_timeout_s=self.timeout_s)
        try:
            n = 0
            while not self._stop.is_set():
                key = f"{self.prefix}-{n}"
                n += 1
                records = make_records(key, self.records, rng, SERVICES)
                unit = Unit(key, self.prefix, [self.part(r["service"]) for r in records])
                self.units[self.prefix].append(unit)
                t0 = time.monotonic()
                try:
                    placed = producer.send(records).result(self.timeout_s + 5)
                except Exception as exc:  # a named ZlogError, or the future timing out
                    self.stats.note(getattr(exc, "code", type(exc).__name__), time.monotonic() - t0)
                    time.sleep(0.05)
                    continue
                self.stats.note("ok", time.monotonic() - t0)
                unit.acked, unit.status = True, 200
                unit.direct = set(unit.partitions)
                unit.offsets = [(p, off, 1) for p, off in placed if off >= 0]
        finally:
            producer.close(5)

    def all_units(self) -> Iterator[Unit]:
        yield from self.units[self.prefix]


# -- the verdict ---------------------------------------------------------------------------


@dataclass(slots=True)
class Verdict:
    audit: AuditReport
    lines: int = 0
    garbage: int = 0
    order_violations: int = 0
    offset_mismatches: int = 0
    partial_batches: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.audit.ok and self.garbage == 0 and self.order_violations == 0
                and self.offset_mismatches == 0 and self.partial_batches == 0)

    def summary(self) -> str:
        a = self.audit
        return (f"acknowledged {a.acknowledged} stored {a.stored} lost {a.lost} duplicated {a.duplicated} "
                f"out_of_order {a.out_of_order + self.order_violations} garbage {self.garbage} "
                f"offset_mismatches {self.offset_mismatches} partial_batches {self.partial_batches} "
                f"unacknowledged_stored {a.unacknowledged} lines {self.lines}"
                + (f" examples {self.examples[:5]} {a.examples}" if not self.ok else ""))


def valid_record(obj: Any) -> bool:
    """A stored line is the enriched record: the 8 fields, in order, with their types."""
    if not isinstance(obj, dict) or tuple(obj) != FIELDS:
        return False
    ts, svc, lvl, msg, labels, rcv, node, ip = (obj[f] for f in FIELDS)
    return (isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0 and isinstance(svc, str) and svc != ""
            and isinstance(lvl, str) and isinstance(msg, str) and msg != "" and isinstance(labels, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
            and isinstance(rcv, int) and not isinstance(rcv, bool) and isinstance(node, str) and isinstance(ip, str))


def stored_lines(data_dir: Path, partitions: int) -> Iterator[tuple[int, int, bytes]]:
    """(partition, offset, line) of every stored line, segments in base-offset order."""
    for p in range(partitions):
        for seg in sorted((data_dir / str(p)).glob("*.jsonl")):
            base = int(seg.stem)
            for i, line in enumerate(seg.read_bytes().splitlines()):
                yield p, base + i, line


def verify(data_dir: Path, partitions: int, loads: Iterable[HttpLoad | NativeLoad]) -> Verdict:
    units = [u for load in loads for u in load.all_units()]
    audit = Audit(LABEL)
    for u in units:
        if u.acked:
            audit.acknowledge(u.key, len(u.partitions))
    v = Verdict(AuditReport())
    first: dict[str, tuple[int, int]] = {}  # tag -> (partition, offset) of its first copy
    at: dict[tuple[int, int], str] = {}  # (partition, offset) -> tag
    for p, off, line in stored_lines(data_dir, partitions):
        v.lines += 1
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not valid_record(obj):
            v.garbage += 1
            v.examples.append(f"garbage at {p}/{off}: {line[:120]!r}")
            continue
        t = obj["labels"].get(LABEL)
        if t is None:
            continue
        audit.observe(p, t)
        first.setdefault(t, (p, off))
        at[(p, off)] = t
    v.audit = audit.report()
    last: dict[tuple[str, int], int] = {}  # (thread, partition) -> last offset of an acked unit
    for u in units:
        by_part: dict[int, list[int]] = {}
        for i, p in enumerate(u.partitions):
            pos = first.get(tag(u.key, i))
            by_part.setdefault(p, []).append(-1 if pos is None else pos[1])
        for p, offs in by_part.items():
            present = sum(1 for o in offs if o >= 0)
            if present not in (0, len(offs)):
                v.partial_batches += 1
                v.examples.append(f"partial: {u.key} partition {p}: {present}/{len(offs)}")
        if not u.acked:
            continue
        for p in sorted(u.direct):
            offs = by_part.get(p, [])
            if not offs or min(offs) < 0:
                continue  # counted as lost by the audit
            prev = last.get((u.thread, p), -1)
            if min(offs) <= prev:
                v.order_violations += 1
                v.examples.append(f"order: {u.key} partition {p} at {min(offs)} after {prev}")
            last[(u.thread, p)] = max(offs)
        for p, off, count in u.offsets:
            if off < 0:
                continue
            for o in range(off, off + count):
                t = at.get((p, o), "")
                if t.rpartition(":")[0] != u.key:
                    v.offset_mismatches += 1
                    v.examples.append(f"offset: {u.key} told {p}/{o}, holds {t!r}")
                    break
    return v


def settle(data_dir: Path, partitions: int, loads: list[HttpLoad | NativeLoad], timeout_s: float = 30.0) -> Verdict:
    """Verify until nothing acknowledged is missing (spooled batches being replayed) or time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = verify(data_dir, partitions, loads)
        if v.audit.lost == 0 or time.monotonic() > deadline:
            return v
        time.sleep(0.5)


# -- the chaos run under supervisord ---------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Supervised:
    """A cluster run by supervisord from conf/supervisord.conf, as ``zlog up`` runs it."""

    def __init__(self, root: Path, *, workers: int = 2, gateways: int = 2, timeout_ms: int = 2000) -> None:
        from zlog.config import load
        from zlog.ops.cluster import find_program, find_supervisord_conf, supervisor_env

        self.root = root
        self.data_dir = root / "data"
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.port, self.front, self.back = _free_port(), _free_port(), _free_port()
        self.config_path = root / "zlog.toml"
        self.config_path.write_text(f"""
[cluster]
data_dir = "{self.data_dir}"
partitions = 4
workers = {workers}
node_id = "chaos"
[router]
front = ["tcp://127.0.0.1:{self.front}"]
back = ["tcp://127.0.0.1:{self.back}"]
metrics_port = {_free_port()}
heartbeat_ms = 200
[storage]
metrics_port_base = {_free_port()}
[gateway]
port = {self.port}
processes = {gateways}
metrics_port_base = {_free_port()}
request_timeout_ms = {timeout_ms}
[log]
level = "warning"
""")
        cfg = load(self.config_path, env={})
        self.cfg = cfg
        self.conf = find_supervisord_conf()
        zlog_bin = find_program("zlog") or f"{sys.executable} -m zlog"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZLOG_")}
        self.env = supervisor_env(cfg, [], environ=env, config_path=self.config_path, home=root, zlog_bin=zlog_bin)
        self.programs = ([f"router:router-{i}" for i in range(len(cfg.router.front))]
                         + [f"storage:storage-{i}" for i in range(workers)]
                         + [f"gateway:gateway-{i}" for i in range(gateways)])
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped: set[int] = set()

    def ctl(self, *args: str) -> str:
        out = subprocess.run([str(Path(sys.executable).parent / "supervisorctl"), "-c", str(self.conf), *args],
                             env=self.env, capture_output=True, timeout=30)
        return out.stdout.decode()

    def start(self) -> None:
        supervisord = str(Path(sys.executable).parent / "supervisord")
        self.proc = subprocess.Popen([supervisord, "-c", str(self.conf)], env=self.env, cwd=self.root,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.wait_ready()

    def pid(self, program: str) -> int:
        try:
            return int(self.ctl("pid", program).strip())
        except ValueError:
            return 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        from zlog.ops.cluster import wait_ready

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.ctl("status")
            for line in status.splitlines():
                if "FATAL" in line or "BACKOFF" in line:
                    self.ctl("start", line.split()[0])
            if status.count("RUNNING") == len(self.programs) and wait_ready(
                    f"http://127.0.0.1:{self.port}", 2.0):
                return
            time.sleep(0.3)
        raise TimeoutError(f"cluster not ready:\n{self.ctl('status')}")

    def stop(self) -> None:
        for pid in self.stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.stopped.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def chaos(minutes: float, root: Path, seed: int, out: Callable[[str], None] = print) -> Verdict:
    rng = random.Random(seed)
    cluster = Supervised(root)
    cluster.start()
    out(f"cluster under supervisord: {len(cluster.programs)} programs, data in {cluster.data_dir}")
    http_load = HttpLoad("127.0.0.1", cluster.port, 4, threads=4, keyed=2, records=20, client_timeout_s=20)
    native = NativeLoad([f"tcp://127.0.0.1:{cluster.front}"], 4, records=10, timeout_s=3.0)
    loads: list[HttpLoad | NativeLoad] = [http_load, native]
    faults: Counter[str] = Counter()
    try:
        http_load.start()
        native.start()
        end = time.monotonic() + minutes * 60
        last_report = time.monotonic()
        while time.monotonic() < end:
            time.sleep(rng.uniform(1.0, 3.0))
            program = rng.choice(cluster.programs)
            pid = cluster.pid(program)
            if pid <= 0:
                continue
            kind = program.split(":")[0]
            if rng.random() < 0.7:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # supervisord restarts it
                faults[f"SIGKILL {kind}"] += 1
            else:
                pause = rng.uniform(0.3, 4.0)  # shorter and longer than the deadline
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                cluster.stopped.add(pid)
                time.sleep(pause)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                cluster.stopped.discard(pid)
                faults[f"SIGSTOP {kind}"] += 1
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                out(f"  t+{minutes * 60 - (end - time.monotonic()):.0f}s faults {sum(faults.values())} "
                    f"http {dict(http_load.stats.statuses)} native {dict(native.stats.statuses)}")
        http_load.stop()
        native.stop()
        for pid in list(cluster.stopped):
            os.kill(pid, signal.SIGCONT)
        cluster.wait_ready()
        verdict = settle(cluster.data_dir, 4, loads, timeout_s=60)
    finally:
        http_load.stop()
        native.stop()
        cluster.stop()
    out(f"faults injected: {dict(sorted(faults.items()))}")
    out(f"http answers: {dict(sorted(http_load.stats.statuses.items()))}; error codes {dict(http_load.bodies)}; "
        f"max latency {http_load.stats.max_latency_s:.2f}s")
    out(f"native sends: {dict(sorted(native.stats.statuses.items()))}; max latency {native.stats.max_latency_s:.2f}s")
    a = verdict.audit
    out(f"acknowledged {a.acknowledged}")
    out(f"stored       {a.stored} (of which unacknowledged requests: {a.unacknowledged})")
    out(f"lost         {a.lost}")
    out(f"duplicated   {a.duplicated}")
    out(f"out of order {a.out_of_order + verdict.order_violations}; offset mismatches {verdict.offset_mismatches}; "
        f"partial batches {verdict.partial_batches}; garbage lines {verdict.garbage}")
    out("OK" if verdict.ok else f"FAILED: {verdict.summary()}")
    return verdict


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None, help="work dir (default: a new temp dir)")
    args = ap.parse_args(argv)
    import tempfile

    root = args.dir or Path(tempfile.mkdtemp(prefix="zlog-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    verdict = chaos(args.minutes, root.resolve(), args.seed)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
