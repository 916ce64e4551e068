"""A real local zlog cluster for tests: router, storage workers and gateways as subprocesses.

Invariants:
- Every process is a real ``python -m zlog ...`` subprocess on loopback ports chosen by the OS at
  run time, with its data under the test's ``tmp_path``; nothing is mocked.
- Readiness is polled with a deadline (``wait_until``), never a bare sleep.
- ``stop()`` always runs (context manager / fixture finaliser): SIGTERM, a bounded wait, then
  SIGKILL; each process's stderr is kept in a file and printed when a test fails.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


_taken: set[int] = set()


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int = 1) -> int:
    """The first of ``n`` consecutive free ports (a worker's metrics port is base + id).

    Ports come from below the kernel's ephemeral range, so that outgoing connections made while
    the cluster starts cannot take them, and never twice in one test session.
    """
    rng = random.Random()
    for _ in range(1000):
        base = rng.randrange(20_000, 32_000 - n)
        ports = range(base, base + n)
        if not _taken.intersection(ports) and all(bindable(p) for p in ports):
            _taken.update(ports)
            return base
    raise RuntimeError("no free port range found")


def free_port() -> int:
    return free_ports(1)


def wait_until(cond: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # the condition may fail until the thing is up
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@dataclass
class Proc:
    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def _segment_bytes(pdir: Path, base: str) -> bytes:
    """A segment's lines, plain or sealed (a worker may seal it meanwhile: both forms are whole)."""
    from zlog.storage.sealed import iter_blocks

    for _ in range(3):
        try:
            return b"".join(iter_blocks(pdir / f"{base}.jsonl.zst"))
        except FileNotFoundError:
            pass
        try:
            return (pdir / f"{base}.jsonl").read_bytes()
        except FileNotFoundError:
            pass
    return b""


@dataclass
class Cluster:
    root: Path
    partitions: int = 4
    workers: int = 2
    gateways: int = 1
    routers: int = 1
    fsync: str = "always"
    heartbeat_ms: int = 200
    toml_extra: str = ""
    env_extra: dict[str, str] = field(default_factory=dict)
    procs: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.root / "data"
        # Router 0's endpoints are ``front``/``back``; every router has its own pair.
        self.fronts = [free_port() for _ in range(self.routers)]
        self.backs = [free_port() for _ in range(self.routers)]
        self.front, self.back = self.fronts[0], self.backs[0]
        self.http_port = free_port()
        self.router_metrics = free_ports(self.routers)
        self.worker_metrics_base = free_ports(self.workers)
        self.gateway_metrics_base = free_ports(self.gateways)
        self.config_path = self.root / "zlog.toml"
        self.config_path.write_text(
            f"""
[cluster]
data_dir = "{self.data_dir}"
partitions = {self.partitions}
workers = {self.workers}
node_id = "test-node"

[router]
front = [{", ".join(f'"tcp://127.0.0.1:{p}"' for p in self.fronts)}]
back = [{", ".join(f'"tcp://127.0.0.1:{p}"' for p in self.backs)}]
metrics_port = {self.router_metrics}
heartbeat_ms = {self.heartbeat_ms}

[storage]
fsync = "{self.fsync}"
metrics_port_base = {self.worker_metrics_base}

[gateway]
port = {self.http_port}
metrics_port_base = {self.gateway_metrics_base}
request_timeout_ms = 3000

[log]
level = "info"
{self.toml_extra}
"""
        )
        # A worker's metrics port is base + id: keep the others clear of that range.
        for i in range(self.workers):
            self.procs[f"storage-{i}"] = self._proc(f"storage-{i}", ["storage", "--worker-id", str(i)])
        self.procs["router"] = self._proc("router", ["router"])
        for i in range(1, self.routers):
            self.procs[f"router-{i}"] = self._proc(f"router-{i}", ["router", "--index", str(i)])
        for i in range(self.gateways):
            self.procs[f"gateway-{i}"] = self._proc(f"gateway-{i}", ["gateway", "--index", str(i)])

    def _proc(self, name: str, args: list[str]) -> Proc:
        return Proc(name, [sys.executable, "-m", "zlog", *args], self.root / f"{name}.stderr")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, ZLOG_CONFIG=str(self.config_path), PYTHONPATH=str(REPO))
        env.update(self.env_extra)
        return env

    # -- process control ------------------------------------------------------------------

    def start(self, *names: str, wait: bool = True) -> Cluster:
        for name in names or list(self.procs):
            p = self.procs[name]
            if p.alive():
                continue
            log = p.log_path.open("ab")
            p.popen = subprocess.Popen(p.args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                                       cwd=self.root)
            log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            for p in self.procs.values():
                if p.popen is not None and p.popen.poll() is not None:
                    raise RuntimeError(f"{p.name} exited with {p.popen.returncode}:\n{self.logs(p.name)}")
            status, _, data = http("GET", self.url + "/ready", timeout=2)
            if status != 200:
                return False
            # Every running worker process, not an earlier incarnation, must be the registered owner.
            registered = {w["pid"] for w in json.loads(data)["workers"]}
            running = {p.pid for n, p in self.procs.items() if n.startswith("storage-") and p.alive()}
            return running <= registered

        wait_until(ready, timeout, what="the cluster to be ready")

    def signal(self, name: str, sig: int) -> None:
        p = self.procs[name]
        if p.alive():
            assert p.popen is not None
            p.popen.send_signal(sig)

    def kill(self, name: str) -> None:
        p = self.procs[name]
        if p.popen is not None and p.alive():
            p.popen.kill()
            p.popen.wait(10)

    def terminate(self, name: str, timeout: float = 15.0) -> int:
        p = self.procs[name]
        assert p.popen is not None
        if p.alive():
            p.popen.send_signal(signal.SIGTERM)
            try:
                return p.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(5)
                raise
        return p.popen.returncode

    def stop(self) -> None:
        for p in self.procs.values():
            if p.alive():
                assert p.popen is not None
                if p.popen.poll() is None:
                    os.kill(p.popen.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs.values():
            if p.popen is None:
                continue
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(5)

    def logs(self, name: str | None = None) -> str:
        names = [name] if name else list(self.procs)
        out = []
        for n in names:
            path = self.procs[n].log_path
            text = path.read_text(errors="replace") if path.exists() else ""
            out.append(f"----- {n} -----\n{text[-6000:]}")
        return "\n".join(out)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            # __exit__ does not run when __enter__ fails: stop what did start, then fail.
            print(self.logs())
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and not issubclass(exc_type, GeneratorExit):
            print(self.logs())  # what the processes said, next to the failure
        self.stop()

    # -- client helpers -------------------------------------------------------------------

    def post(self, records: Any, headers: dict[str, str] | None = None, raw: bytes | None = None,
             path: str = "/v1/logs") -> tuple[int, dict[str, Any]]:
        body = raw if raw is not None else json.dumps(records).encode()
        h = {"Content-Type": "application/json", **(headers or {})}
        status, _, data = http("POST", self.url + path, body, h)
        return status, json.loads(data) if data else {}

    def get(self, path: str) -> tuple[int, Any]:
        status, _, data = http("GET", self.url + path)
        return status, json.loads(data) if data else None

    def store(self, records: Any, key: str, timeout: float = 60) -> None:
        """POST until stored: a 503 (a worker that missed its heartbeats on a loaded machine) is
        retried as a client should, and the Idempotency-Key keeps a retried batch from being
        stored twice."""
        wait_until(lambda: self.post(records, headers={"Idempotency-Key": key})[0] == 200, timeout, 0.2,
                   f"batch {key} stored")

    def stored_lines(self, partition: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(partition, line) for every line in every segment on disk, in offset order."""
        parts = [partition] if partition is not None else range(self.partitions)
        for p in parts:
            pdir = self.data_dir / str(p)
            if not pdir.exists():
                continue
            for base in sorted({seg.name[:20] for seg in pdir.glob("*.jsonl*") if seg.name[:20].isdigit()}):
                for line in _segment_bytes(pdir, base).splitlines():
                    yield p, line

    def stored_records(self, partition: int | None = None) -> list[dict[str, Any]]:
        return [json.loads(line) for _, line in self.stored_lines(partition)]


@dataclass(frozen=True)
class UpConfig:
    """A config for ``zlog up`` (the whole local cluster under supervisord) on free ports."""

    path: Path
    data_dir: Path
    http_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def up_config(root: Path, gateway_processes: int = 1) -> UpConfig:
    data, http_port, path = root / "data", free_port(), root / "zlog.toml"
    path.write_text(
        f'[cluster]\ndata_dir = "{data}"\n'
        f'[router]\nfront = ["tcp://127.0.0.1:{free_port()}"]\nback = ["tcp://127.0.0.1:{free_port()}"]\n'
        f"metrics_port = {free_port()}\n"
        f"[storage]\nmetrics_port_base = {free_ports(2)}\n"
        f"[gateway]\nport = {http_port}\nprocesses = {gateway_processes}\n"
        f"metrics_port_base = {free_ports(gateway_processes)}\n"
    )
    return UpConfig(path, data, http_port)

