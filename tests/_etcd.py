"""A real etcd for tests: the system's binary on free loopback ports, its data in tmp_path.

Invariants:
- The same command line ``zlog etcd`` runs (``zlog.replication.etcd_server.command``).
- Readiness is polled with a deadline; ``stop()`` always runs (SIGTERM, bounded wait, SIGKILL).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests._cluster import Cluster, free_port, wait_until
from zlog.replication.coordination import Coordinator
from zlog.replication.etcd_server import command


class EtcdServer:
    def __init__(self, root: Path, name: str = "test") -> None:
        self.root = root
        self.client_port = free_port()
        self.peer_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.client_port}"
        self.log_path = root / "etcd.log"
        self.argv = command(name, root / "etcd-data", "127.0.0.1", self.client_port, self.peer_port)
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> EtcdServer:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, stdout=log, stderr=log)
        probe = Coordinator((self.endpoint,), "/probe", timeout_s=0.5)
        wait_until(probe.healthy, timeout=20, interval=0.1, what="etcd to answer")
        return self

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fault_leader(c: Cluster, coord: Coordinator, partition: str, how: str, pause: float) -> tuple[int, float]:
    """SIGKILL (``how = "kill"``, restarted after ``pause`` s without waiting for it) or SIGSTOP
    (continued after ``pause`` s) the worker etcd names leader of ``partition``: (its id, when)."""
    leader = coord.snapshot().partitions[partition][0].leader
    assert leader is not None, f"partition {partition} has no leader"
    name = f"storage-{leader}"
    if how == "kill":
        c.kill(name)
    else:
        c.signal(name, signal.SIGSTOP)
    at = time.monotonic()
    time.sleep(pause)
    if how == "kill":
        c.start(name, wait=False)
    else:
        c.signal(name, signal.SIGCONT)
    return leader, at
