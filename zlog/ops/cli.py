"""The ``zlog`` command: argparse subcommands that build a Config and call one ``run``.

Invariants:
- No logic here beyond turning flags into a ``Config`` (``zlog.config.load``) and calling the
  subcommand's entry point with it; every process's behaviour lives in its own module.
- Subcommand modules are imported lazily, so ``zlog --help`` (and every other subcommand) works
  while a module is missing or broken.
- Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (the message is printed,
  never a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zlog import __version__
from zlog.config import Config, ConfigError, load
from zlog.ops.cluster import gateway_url

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_WORKER_ID = 255  # replicated clusters: ports are base + id, so ids stay small

# Flags accepted by every subcommand (and before it), as (flag, section, key, help).
_OVERRIDES: tuple[tuple[str, str, str, str], ...] = (
    ("--data-dir", "cluster", "data_dir", "data directory (cluster.data_dir)"),
    ("--node-id", "cluster", "node_id", "node id stored in records (cluster.node_id)"),
    ("--fsync", "storage", "fsync", "always | never | interval:<ms> (storage.fsync)"),
    ("--http-port", "gateway", "port", "gateway HTTP port (gateway.port)"),
)


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected k=v, got {text!r}")
    return key, value


def _common() -> argparse.ArgumentParser:
    # SUPPRESS keeps a subparser from overwriting a value given before the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH",
                        help="config file (default: $ZLOG_CONFIG or conf/zlog.toml)")
    for flag, section, key, text in _OVERRIDES:
        common.add_argument(flag, dest=f"{section}__{key}", metavar=key.upper(), default=argparse.SUPPRESS, help=text)
    return common


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--service", action="append", default=[], help="only these services (repeatable)")
    p.add_argument("--level", action="append", default=[], help="only these levels (repeatable)")
    p.add_argument("--contains", help="message contains this text")
    p.add_argument("--regex", help="message matches this regular expression")
    p.add_argument("--label", action="append", type=_label, default=[], metavar="K=V",
                   help="label equals value (repeatable)")
    p.add_argument("--since", help="from this time (RFC 3339, unix ms, or a duration such as 15m)")
    p.add_argument("--until", help="up to this time")
    p.add_argument("--limit", type=int, help="at most this many records")
    p.add_argument("--direction", choices=("forward", "backward"), help="read order")
    p.add_argument("--json", action="store_true", help="print raw JSON lines")
    p.add_argument("--url", help="gateway base URL (default http://127.0.0.1:<gateway.port>)")
    p.add_argument("--tenant", help="read this tenant's logs (sent as X-Scope-OrgID; default: the default tenant)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="zlog", parents=[common], description="zlog: a distributed log ingestion cluster."
    )
    parser.add_argument("--version", action="version", version=f"zlog {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("router", parents=[common], help="run the ZeroMQ router")
    p.add_argument("--index", type=int, default=0, help="which of router.front/router.back to bind (default 0)")

    p = sub.add_parser("storage", parents=[common], help="run one storage worker")
    p.add_argument("--worker-id", type=int, required=True, help="0 .. cluster.workers-1 (replicated: up to 255, a worker joining later)")

    p = sub.add_parser("gateway", parents=[common], help="run one HTTP gateway process")
    p.add_argument("--port", type=int, dest="gateway__port", metavar="PORT", default=argparse.SUPPRESS, help="HTTP port")
    p.add_argument("--host", dest="gateway__host", metavar="HOST", default=argparse.SUPPRESS, help="HTTP listen address")
    p.add_argument("--index", type=int, default=0,
                   help="process number when several share the port (metrics port, WAL directory)")

    p = sub.add_parser("produce", parents=[common], help="send stdin lines (or JSON objects) to the cluster")
    p.add_argument("--service", help="service of every line (required unless lines are JSON objects with one)")
    p.add_argument("--level", default="INFO", help="level of every line (default INFO)")
    p.add_argument("--label", action="append", type=_label, default=[], metavar="K=V",
                   help="label added to every record (repeatable)")
    p.add_argument("--router", metavar="ENDPOINT", help="router front endpoint (default: router.front)")
    p.add_argument("--key", metavar="NAME", help="CurveZMQ key under cluster.keys_dir (cluster.curve; default gateway)")
    p.add_argument("--tenant", help="write as this tenant (default: the default tenant; a key bound to a tenant decides)")

    p = sub.add_parser("query", parents=[common], help="search stored logs")
    _filters(p)
    p = sub.add_parser("tail", parents=[common], help="follow logs as they arrive")
    _filters(p)

    p = sub.add_parser("status", parents=[common], help="show the cluster's processes and partitions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tenant", help="partition offsets and high watermarks of this tenant (default: the default tenant)")

    sub.add_parser("up", parents=[common], help="run the whole cluster under supervisord (foreground)")
    sub.add_parser("syslog", parents=[common],
                   help="run the syslog listener (syslog.tcp / syslog.udp; docs/shippers.md)")
    p = sub.add_parser("worker", parents=[common], help="replicated clusters: drain a storage worker")
    p.add_argument("action", choices=["drain", "undrain"],
                   help="drain: move every leadership off the worker and keep it off; undrain: let it lead again")
    p.add_argument("worker_id", type=int, metavar="N")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the drain to finish (default 30)")

    sub.add_parser("etcd", parents=[common],
                   help="run the local etcd a replicated cluster uses (exits at once when none is needed)")
    from zlog.ops.security_cli import add_parsers

    add_parsers(sub, common)

    p = sub.add_parser("verify", parents=[common], help="check every block and index of segment files")
    p.add_argument("paths", nargs="*", help="files or directories (default: cluster.data_dir)")
    p = sub.add_parser("compact", parents=[common],
                       help="seal closed segments and apply retention (the storage workers must be stopped)")
    p.add_argument("paths", nargs="*", help="partition or data directories (default: cluster.data_dir)")
    return parser


def overrides_of(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """(section, key, value) triples for every override flag that was given."""
    out: list[tuple[str, str, Any]] = []
    for name, value in sorted(vars(args).items()):
        if "__" in name:
            section, key = name.split("__", 1)
            out.append((section, key, value))
    return out


def _target(module: str, func: str) -> Callable[..., Any]:
    target: Callable[..., Any] = getattr(importlib.import_module(module), func)
    return target


def dispatch(cfg: Config, args: argparse.Namespace) -> Any:
    cmd = args.command
    if cmd == "router":
        return _target("zlog.router.process", "run")(cfg, args.index)
    if cmd == "storage":
        # A replicated cluster takes workers beyond cluster.workers (the initial placement):
        # they register in etcd and get replicas by reassignment (docs/replication.md).
        most = cfg.cluster.workers if cfg.storage.replication_factor < 2 else MAX_WORKER_ID + 1
        if not 0 <= args.worker_id < most:
            raise ConfigError(f"--worker-id must be 0..{most - 1}"
                              + (" (cluster.workers)" if most == cfg.cluster.workers else ""))
        return _target("zlog.worker.process", "run")(cfg, args.worker_id)
    if cmd == "gateway":
        return _target("zlog.gateway.app", "run")(cfg, args.index)
    if cmd == "produce":
        return _target("zlog.ops.client_cli", "produce")(cfg, args)
    if cmd in ("query", "tail"):
        if args.url is None:
            args.url = gateway_url(cfg)
        return _target("zlog.ops.reader_cli", cmd)(cfg, args)
    if cmd == "status":
        return _target("zlog.ops.status", "run")(cfg, args)
    if cmd in ("verify", "compact"):
        return _target("zlog.ops.storage_cli", cmd)(cfg, args)
    if cmd == "up":
        return _target("zlog.ops.cluster", "up")(cfg, args)
    if cmd == "syslog":
        return _target("zlog.syslog.listener", "run")(cfg)
    if cmd == "worker":
        return _target("zlog.replication.drain", "run")(cfg, args)
    if cmd == "etcd":
        return _target("zlog.replication.etcd_server", "run")(cfg)
    if cmd in ("tenant", "token", "user", "keys"):
        return _target("zlog.ops.security_cli", "run")(cfg, args)
    raise ConfigError(f"unknown command {cmd!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.overrides = overrides_of(args)
    try:
        cfg = load(getattr(args, "config", None), overrides=args.overrides)
        result = dispatch(cfg, args)
    except ConfigError as exc:
        print(f"zlog: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("zlog"):
            print(f"zlog {args.command}: not available in this build ({exc.name} is missing)", file=sys.stderr)
            return EXIT_FAILURE
        raise
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK
