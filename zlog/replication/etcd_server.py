"""The local etcd that ``zlog up`` runs under supervisord when R > 1 and no endpoints are given.

``zlog etcd`` execs the system's etcd (Debian's ``etcd-server``, 3.4) as a one-member cluster on
loopback, its data under ``<data_dir>/etcd``; with R = 1, or with ``cluster.etcd`` endpoints
configured, it has nothing to run and exits 0 at once (supervisord then shows it EXITED).

Invariants:
- The command line is a pure function of the configuration (``command``), so tests and the
  supervised program start the same server.
- Only loopback URLs unless ``cluster.etcd_listen`` says otherwise.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from zlog.config import Config

ETCD_BINARY = "/usr/bin/etcd"


def needed(cfg: Config) -> bool:
    return cfg.storage.replication_factor > 1 and not cfg.cluster.etcd


def local_endpoints(cfg: Config) -> tuple[str, ...]:
    """The endpoints workers use: the configured ones, else the local server's."""
    if cfg.cluster.etcd:
        return cfg.cluster.etcd
    return (f"http://{cfg.cluster.etcd_listen}:{cfg.cluster.etcd_client_port}",)


def discovery_endpoints(cfg: Config) -> tuple[str, ...]:
    """Where producers and gateways learn routers and leaders: etcd when R > 1, else nowhere."""
    return local_endpoints(cfg) if cfg.storage.replication_factor > 1 else ()


def binary() -> str:
    return shutil.which("etcd") or ETCD_BINARY


def command(name: str, data_dir: Path, host: str, client_port: int, peer_port: int) -> list[str]:
    client = f"http://{host}:{client_port}"
    peer = f"http://{host}:{peer_port}"
    return [
        binary(), "--name", name, "--data-dir", str(data_dir),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{name}={peer}", "--initial-cluster-state", "new",
        # Pre-vote (off by default in 3.4): a member returning from a network partition with a
        # higher term asks before it campaigns, instead of deposing the leader the others kept,
        # which made every worker miss a lease renewal just after a cut host came back.
        "--pre-vote",
        # Watches that ask for progress hear from etcd every second even on a quiet cluster, so
        # a watcher tells a silent stream (a cut-off member) from a quiet one within seconds.
        "--experimental-watch-progress-notify-interval", "1s",
        "--log-level", "warn", "--logger", "zap",
    ]


def run(cfg: Config) -> int:
    if not needed(cfg):
        print("zlog etcd: not needed (replication_factor 1 or cluster.etcd set)", file=sys.stderr, flush=True)
        return 0
    data = Path(cfg.cluster.data_dir).resolve() / "etcd"
    data.mkdir(parents=True, exist_ok=True)
    argv = command(cfg.cluster.node_id, data, cfg.cluster.etcd_listen, cfg.cluster.etcd_client_port,
                   cfg.cluster.etcd_peer_port)
    os.execv(argv[0], argv)  # supervisord signals etcd itself: it stops cleanly on SIGTERM
