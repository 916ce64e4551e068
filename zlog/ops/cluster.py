"""``zlog up``: run the whole local cluster under supervisord in the foreground (``make run``).

Invariants:
- Every program runs from ``conf/supervisord.conf`` with the same configuration as ``up``
  itself: the config file, the resolved data dir and every CLI override travel as ``ZLOG_*``
  environment variables, and the process counts (routers, storage workers, gateways) come from
  the config, so supervisord's numprocs always match ``cluster.workers``.
- Nothing outlives ``up``: supervisord runs in its own session (a terminal's Ctrl-C reaches only
  ``up``), every SIGINT/SIGTERM to ``up`` is forwarded to it as SIGTERM, supervisord stops each
  program with SIGTERM, and on Linux supervisord is also told to stop if ``up`` dies.
- The summary is printed once the gateway answers ``GET /ready`` (or, failing that, after a
  deadline, saying where the logs are).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from zlog.config import DEFAULT_CONFIG_PATH, Config, assign_partitions

READY_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1
_MAX_UNIX_PATH = 107  # sun_path is 108 bytes with its terminating NUL
# Short environment names config.load() also reads: an override must replace them, not lose to them.
_ALIASES = {
    ("cluster", "data_dir"): "ZLOG_DATA_DIR",
    ("gateway", "port"): "ZLOG_HTTP_PORT",
    ("cluster", "node_id"): "ZLOG_NODE_ID",
    ("storage", "fsync"): "ZLOG_FSYNC",
    ("log", "level"): "ZLOG_LOG_LEVEL",
}


def gateway_url(cfg: Config) -> str:
    host = cfg.gateway.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.gateway.port}"


def wait_ready(
    url: str, timeout: float, *, interval: float = 0.2, keep_going: Callable[[], bool] | None = None
) -> bool:
    """Poll ``GET <url>/ready`` until it answers 200 (True) or ``timeout`` passes (False).

    ``keep_going`` is checked between attempts; returning False ends the wait early (for example
    when the supervised processes have exited).
    """
    deadline = time.monotonic() + timeout
    target = url.rstrip("/") + "/ready"
    while True:
        try:
            with urllib.request.urlopen(target, timeout=max(0.2, min(2.0, timeout))) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError, ValueError):
            pass  # not up yet
        if time.monotonic() >= deadline or (keep_going is not None and not keep_going()):
            return False
        time.sleep(interval)


def find_config_path(args: argparse.Namespace, environ: Mapping[str, str]) -> Path | None:
    given = getattr(args, "config", None)
    if given is not None:
        return Path(given).resolve()
    if environ.get("ZLOG_CONFIG"):
        return Path(environ["ZLOG_CONFIG"]).resolve()
    return DEFAULT_CONFIG_PATH.resolve() if DEFAULT_CONFIG_PATH.exists() else None


def find_supervisord_conf() -> Path:
    local = Path("conf/supervisord.conf")
    if local.exists():
        return local.resolve()
    return Path(__file__).resolve().parents[2] / "conf" / "supervisord.conf"


def find_program(name: str) -> str | None:
    """The venv's script beside this interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / name
        if directory and candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def supervisor_env(
    cfg: Config,
    overrides: list[tuple[str, str, Any]],
    *,
    environ: Mapping[str, str],
    config_path: Path | None,
    home: Path,
    zlog_bin: str,
) -> dict[str, str]:
    """The environment of supervisord and so of every program it runs."""
    env = dict(environ)
    for section, key, value in overrides:
        alias = _ALIASES.get((section, key))
        if alias:
            env.pop(alias, None)
        env[f"ZLOG_{section}_{key}".upper()] = str(value)
    env.pop("ZLOG_CLUSTER_DATA_DIR", None)
    env["ZLOG_DATA_DIR"] = str(Path(cfg.cluster.data_dir).resolve())
    if config_path is not None:
        env["ZLOG_CONFIG"] = str(config_path)
    else:
        env.pop("ZLOG_CONFIG", None)
    env["ZLOG_HOME"] = str(home)
    env["ZLOG_BIN"] = zlog_bin
    env["ZLOG_NUM_ROUTERS"] = str(len(cfg.router.front))
    env["ZLOG_NUM_WORKERS"] = str(cfg.cluster.workers)
    env["ZLOG_NUM_GATEWAYS"] = str(cfg.gateway.processes)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def replication_line(cfg: Config) -> list[str]:
    r = cfg.storage.replication_factor
    if r == 1:
        return []
    from zlog.replication.etcd_server import local_endpoints, needed

    where = "local, data in <data>/etcd" if needed(cfg) else "external"
    return [f"  replicas  R={r}, leaders chosen through etcd {', '.join(local_endpoints(cfg))} ({where}); "
            f"acks={cfg.gateway.acks} needs {cfg.min_isr} in sync; the layout above is the preferred leaders"]


def summary(cfg: Config, *, data_dir: Path, conf: Path, ready: bool, now_ms: int) -> str:
    url = gateway_url(cfg)
    layout = "; ".join(
        f"worker {w} -> {','.join(map(str, parts)) or '(none)'}"
        for w, parts in enumerate(assign_partitions(cfg.cluster.partitions, cfg.cluster.workers))
    )
    record = (
        f'[{{"timestamp":{now_ms},"service":"auth_service","level":"INFO",'
        f'"message":"user login successful","labels":{{"auth_method":"password"}}}}]'
    )
    ctl = find_program("supervisorctl") or "supervisorctl"
    state = "ready" if ready else f"NOT ready after {READY_TIMEOUT_S:.0f}s: see the logs below"
    lines = [
        f"zlog is up ({state})",
        f"  gateway   {url}   ({cfg.gateway.processes} process{'es' if cfg.gateway.processes != 1 else ''})",
        f"  routers   front {', '.join(cfg.router.front)}   back {', '.join(cfg.router.back)}",
        f"  storage   {cfg.cluster.partitions} partitions over {cfg.cluster.workers} workers: {layout}",
        f"  data      {data_dir}   (fsync: {cfg.storage.fsync})",
        *replication_line(cfg),
        f"  logs      {data_dir / 'logs'}/{{router-N,storage-N,gateway-N,supervisord}}.log",
        f"  control   ZLOG_DATA_DIR={shlex.quote(str(data_dir))} {ctl} -c {conf} status",
        "",
        "Try it:",
        f"  curl -s -X POST {url}/v1/logs -H 'Content-Type: application/json' \\",
        f"       -d '{record}'",
        f"  curl -s '{url}/v1/query?service=auth_service&limit=10'",
        "",
        "Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def place_extra_programs(cfg: Config, data_dir: Path, conf: Path) -> None:
    """Put the programs only this configuration runs where supervisord.conf includes them
    (``<data>/supervisord.d/``), and take away those it does not run."""
    from zlog.replication.etcd_server import needed

    extra = data_dir / "supervisord.d"
    extra.mkdir(parents=True, exist_ok=True)
    target = extra / "etcd.conf"
    if needed(cfg):
        target.write_bytes((conf.parent / "supervisord-etcd.conf").read_bytes())
    else:
        target.unlink(missing_ok=True)
    target = extra / "syslog.conf"
    if cfg.syslog.tcp or cfg.syslog.udp:
        target.write_bytes((conf.parent / "supervisord-syslog.conf").read_bytes())
    else:
        target.unlink(missing_ok=True)


def _port_free(host: str, port: int) -> bool:
    """Whether nothing is listening on (host, port).

    The bind sets SO_REUSEADDR, as the gateway's own listener does: connections of a cluster that
    just stopped linger in TIME_WAIT on that port, and only a listener may make ``up`` refuse."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError:
        return True  # let the gateway report it
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: supervisord gets SIGTERM if `up` dies abruptly.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def up(cfg: Config, args: argparse.Namespace) -> int:
    data_dir = Path(cfg.cluster.data_dir).resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    conf = find_supervisord_conf()
    supervisord = find_program("supervisord")
    if supervisord is None:
        print("zlog up: supervisord not found (pip install supervisor)", file=sys.stderr)
        return 1
    from zlog.security.preflight import refusals

    problems = refusals(cfg)  # what would make a process exit 2 at start: say it once, start nothing
    for why in problems:
        print(f"zlog up: {why}", file=sys.stderr)
    if problems:
        return 2
    if not _port_free(cfg.gateway.host, cfg.gateway.port):
        print(f"zlog up: {cfg.gateway.host}:{cfg.gateway.port} is in use (another cluster running?)",
              file=sys.stderr)
        return 1
    sock = data_dir / "supervisor.sock"
    if len(str(sock).encode()) > _MAX_UNIX_PATH:
        print(f"zlog up: the control socket path {sock} is too long for a unix socket; use a shorter --data-dir",
              file=sys.stderr)
        return 1
    place_extra_programs(cfg, data_dir, conf)
    zlog_script = find_program("zlog")
    zlog_bin = shlex.quote(zlog_script) if zlog_script else f"{shlex.quote(sys.executable)} -m zlog"
    env = supervisor_env(
        cfg,
        list(getattr(args, "overrides", [])),
        environ=os.environ,
        config_path=find_config_path(args, os.environ),
        home=Path.cwd(),
        zlog_bin=zlog_bin,
    )
    print(f"zlog: starting the cluster under supervisord ({conf}); logs in {data_dir / 'logs'}", flush=True)
    proc = subprocess.Popen(
        [supervisord, "-n", "-c", str(conf)],
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            print("zlog: still stopping (programs get up to 15 s to flush)", file=sys.stderr, flush=True)
        stopping = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        ready = wait_ready(
            gateway_url(cfg), READY_TIMEOUT_S, keep_going=lambda: proc.poll() is None and not stopping
        )
        if proc.poll() is None and not stopping:
            print(summary(cfg, data_dir=data_dir, conf=conf, ready=ready, now_ms=int(time.time() * 1000)),
                  flush=True)
        code = proc.wait()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    if stopping:
        print("zlog: stopped", flush=True)
        return 0
    print(f"zlog: supervisord exited with status {code}; see {data_dir / 'logs' / 'supervisord.log'}",
          file=sys.stderr, flush=True)
    return code if code >= 0 else 1
