"""``zlog tenant|token|user|keys``: manage the credentials file and the CurveZMQ keys.

Invariants:
- A secret is shown once, on stdout, when it is made (a token) and never again; a password is
  read from stdin or a prompt, never from the command line (other users can read argv).
- Every change rewrites the credentials file atomically; running gateways pick it up on SIGHUP.
- Refusals print one line naming the problem and exit 2.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zlog.config import Config
    from zlog.security.credentials import Credentials

ROLES = ("write", "read", "admin")  # zlog.security.ROLES, named here to keep --help light
RELOAD_HINT = "running gateways use it after SIGHUP (kill -HUP <gateway pid>)"


def _now_ms() -> int:
    return int(time.time() * 1000)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("tenant", parents=[common], help="declare, list or remove tenants")
    t = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = t.add_parser("add", parents=[common], help="declare a tenant")
    q.add_argument("name")
    t.add_parser("list", parents=[common], help="list declared tenants with their tokens and users")
    q = t.add_parser("remove", parents=[common], help="forget a tenant and revoke its tokens and users")
    q.add_argument("name")

    p = sub.add_parser("token", parents=[common], help="create, list or revoke bearer tokens")
    t = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = t.add_parser("create", parents=[common], help="make a token (printed once)")
    q.add_argument("--tenant", required=True)
    q.add_argument("--role", choices=ROLES, required=True)
    q.add_argument("--note", default="", help="what it is for (shown by token list)")
    t.add_parser("list", parents=[common], help="list token ids, tenants and roles")
    q = t.add_parser("revoke", parents=[common], help="revoke a token (by id or the token itself)")
    q.add_argument("token")

    p = sub.add_parser("user", parents=[common], help="add, list or remove basic-auth users")
    t = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = t.add_parser("add", parents=[common], help="add or change a user (password from stdin or a prompt)")
    q.add_argument("name")
    q.add_argument("--tenant", required=True)
    q.add_argument("--role", choices=ROLES, required=True)
    q.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    t.add_parser("list", parents=[common], help="list users")
    q = t.add_parser("remove", parents=[common], help="remove a user")
    q.add_argument("name")

    p = sub.add_parser("keys", parents=[common], help="CurveZMQ keypairs (cluster.curve)")
    t = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = t.add_parser("generate", parents=[common], help="write a keypair under cluster.keys_dir")
    q.add_argument("name", nargs="?", help="a producer's name (with --tenant), or server, gateway, worker; "
                                           "none: every internal keypair still missing")
    q.add_argument("--tenant", help="the tenant a producer's key writes as (clients only)")
    q.add_argument("--force", action="store_true", help="replace an existing keypair")


def _password(args: argparse.Namespace) -> str:
    from zlog.security.credentials import CredentialsError

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise CredentialsError("the passwords differ")
    return first


def run(cfg: Config, args: argparse.Namespace) -> int:
    from zlog.security import credentials
    from zlog.security.credentials import CredentialsError
    from zlog.tenants import ids

    if args.command == "keys":
        from zlog.security import curve

        try:
            print(curve.generate_cli(cfg, args.name, args.tenant, args.force))
        except (CredentialsError, ValueError, OSError) as exc:
            print(f"zlog keys: {exc}", file=sys.stderr)
            return 2
        return 0
    path = credentials.path_of(cfg)
    try:
        creds = credentials.load(path)
        new, out = _change(creds, args)
    except (CredentialsError, ids.InvalidTenant) as exc:
        print(f"zlog {args.command} {args.action}: {exc}", file=sys.stderr)
        return 2
    if new is not creds:
        credentials.save(path, new)
        print(f"{path}: {RELOAD_HINT}", file=sys.stderr)
    if out:
        print(out)
    if args.command == "tenant" and args.action == "add" and not cfg.tenants.auto_create \
            and args.name not in cfg.tenants.names():
        # Storage decides which tenants exist from the config; the credentials file only says who may act.
        print(f"note: tenants.auto_create is false: declare [tenants.{args.name}] in the config too, or its "
              "writes are refused (UNKNOWN_TENANT)", file=sys.stderr)
    return 0


def _change(creds: Credentials, args: argparse.Namespace) -> tuple[Credentials, str]:
    from zlog.security import credentials

    cmd, action = args.command, args.action
    if cmd == "tenant":
        if action == "add":
            return credentials.add_tenant(creds, args.name, _now_ms()), f"tenant {args.name} added"
        if action == "remove":
            return credentials.remove_tenant(creds, args.name), f"tenant {args.name} removed (its data is kept)"
        rows = []
        for t in sorted(creds.tenants):
            tokens = sum(1 for e in creds.tokens.values() if e.tenant == t)
            users = sum(1 for e in creds.users.values() if e.tenant == t)
            rows.append(f"{t}\ttokens={tokens}\tusers={users}")
        return creds, "\n".join(rows)
    if cmd == "token":
        if action == "create":
            new, token = credentials.create_token(creds, args.tenant, args.role, _now_ms(), args.note)
            return new, token
        if action == "revoke":
            return credentials.revoke_token(creds, args.token), "token revoked"
        return creds, "\n".join(f"{tid}\t{e.tenant}\t{e.role}\t{e.note}" for tid, e in sorted(creds.tokens.items()))
    if action == "add":
        return credentials.set_user(creds, args.name, args.tenant, args.role, _password(args), _now_ms()), \
            f"user {args.name} set"
    if action == "remove":
        return credentials.remove_user(creds, args.name), f"user {args.name} removed"
    return creds, "\n".join(f"{n}\t{e.tenant}\t{e.role}" for n, e in sorted(creds.users.items()))
