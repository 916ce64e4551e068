"""A real etcd for tests: the system's binary on free loopback ports, its data in tmp_path.

Invariants:
- The same command line ``zlog etcd`` runs (``zlog.replication.etcd_server.command``).
- Readiness is polled with a deadline; ``stop()`` always runs (SIGTERM, bounded wait, SIGKILL).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests._cluster import free_port, wait_until
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
