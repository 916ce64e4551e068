"""The credentials file: declared tenants, bearer tokens and basic-auth users, each with a role.

One JSON file (``auth.credentials_file``, default ``<data_dir>/credentials.json``)::

    {"version": 1,
     "tenants": {"acme": {"created_ms": 1795675988031}},
     "tokens": {"k3J9...": {"tenant": "acme", "role": "write", "hash": "scrypt$14$8$1$...",
                            "created_ms": ..., "note": "fluent-bit on web-1"}},
     "users":  {"alice": {"tenant": "acme", "role": "read", "hash": "scrypt$15$8$1$...",
                          "created_ms": ...}}}

A token is ``zlog_<id>_<secret>``: the id (public, shown by ``zlog token list``) finds the
entry, the secret is checked against its salted hash. Neither a secret nor a password is ever
stored, logged or echoed.

Invariants:
- ``parse`` accepts only well-formed files: every tenant is a tenant id, every role one of
  ``ROLES``, every id and user name of the allowed alphabet; anything else is a
  ``CredentialsError`` naming the entry (and the file is not used at all).
- ``save`` replaces the file atomically (write, fsync, rename) with mode 0600, so a reader
  (a gateway reloading on SIGHUP) sees the old file or the new one, never half of one.
- Pure functions over ``Credentials`` apart from ``load`` and ``save``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zlog.config import Config
from zlog.security import hashes
from zlog.tenants import ids

ROLES = ("write", "read", "admin")
TOKEN_PREFIX = "zlog_"
MAX_TOKEN_CHARS = 128  # anything longer is refused before any hashing
_TOKEN = re.compile(r"zlog_([A-Za-z0-9]{12})_([A-Za-z0-9_-]{20,86})")
_USER = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_ID_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


class CredentialsError(ValueError):
    """The credentials file or a request to change it is not valid; the message names why."""


@dataclass(frozen=True, slots=True)
class Entry:
    tenant: str
    role: str
    hash: str
    created_ms: int = 0
    note: str = ""


@dataclass(frozen=True, slots=True)
class Credentials:
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, Entry] = field(default_factory=dict)
    users: dict[str, Entry] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified credential speaks for."""

    tenant: str
    role: str
    name: str  # "token:<id>" or "user:<name>", safe to log


def path_of(cfg: Config) -> Path:
    return cfg.auth.credentials_file or cfg.cluster.data_dir / "credentials.json"


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    if len(token) > MAX_TOKEN_CHARS:
        return None
    m = _TOKEN.fullmatch(token)
    return (m.group(1), m.group(2)) if m else None


def valid_user(name: str) -> bool:
    return _USER.fullmatch(name) is not None


def _check_role(role: object, where: str) -> str:
    if role not in ROLES:
        raise CredentialsError(f"{where}: role must be one of {', '.join(ROLES)}")
    return str(role)


def _entry(obj: object, where: str) -> Entry:
    if not isinstance(obj, dict):
        raise CredentialsError(f"{where}: must be an object")
    tenant = obj.get("tenant")
    if not ids.is_valid(tenant):
        raise CredentialsError(f"{where}: tenant is not a tenant id")
    h = obj.get("hash")
    if not isinstance(h, str) or not h.startswith("scrypt$"):
        raise CredentialsError(f"{where}: hash must be an scrypt hash")
    created, note = obj.get("created_ms", 0), obj.get("note", "")
    if not isinstance(created, int) or not isinstance(note, str):
        raise CredentialsError(f"{where}: created_ms must be an integer and note a string")
    return Entry(str(tenant), _check_role(obj.get("role"), where), h, created, note)


def parse(data: object) -> Credentials:
    if not isinstance(data, dict) or data.get("version", 1) != 1:
        raise CredentialsError("the credentials file must be an object with version 1")
    tenants_obj = data.get("tenants", {})
    tokens_obj = data.get("tokens", {})
    users_obj = data.get("users", {})
    if not all(isinstance(x, dict) for x in (tenants_obj, tokens_obj, users_obj)):
        raise CredentialsError("tenants, tokens and users must be objects")
    tenants: dict[str, dict[str, Any]] = {}
    for t, meta in tenants_obj.items():
        if not ids.is_valid(t) or not isinstance(meta, dict):
            raise CredentialsError(f"tenant {t[:40]!a}: not a tenant id, or its entry is not an object")
        tenants[t] = dict(meta)
    tokens: dict[str, Entry] = {}
    for tid, obj in tokens_obj.items():
        if not re.fullmatch(r"[A-Za-z0-9]{12}", tid):
            raise CredentialsError(f"token {tid[:40]!a}: not a token id")
        tokens[tid] = _entry(obj, f"token {tid}")
    users: dict[str, Entry] = {}
    for name, obj in users_obj.items():
        if not valid_user(name):
            raise CredentialsError(f"user {name[:40]!a}: user names are 1..64 of A-Z a-z 0-9 . _ @ -")
        users[name] = _entry(obj, f"user {name}")
    return Credentials(tenants, tokens, users)


def to_json(creds: Credentials) -> dict[str, Any]:
    return {
        "version": 1,
        "tenants": creds.tenants,
        "tokens": {k: dataclasses.asdict(v) for k, v in sorted(creds.tokens.items())},
        "users": {k: dataclasses.asdict(v) for k, v in sorted(creds.users.items())},
    }


def load(path: Path) -> Credentials:
    """The file's credentials; a missing file is an empty set (nobody can sign in)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Credentials()
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return parse(json.loads(text))
    except json.JSONDecodeError as exc:
        raise CredentialsError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None


def save(path: Path, creds: Credentials) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(to_json(creds), indent=1).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# -- changes (pure: old credentials in, new credentials out) ------------------------------

def add_tenant(creds: Credentials, tenant: str, now_ms: int) -> Credentials:
    ids.validate(tenant)
    if tenant in creds.tenants:
        raise CredentialsError(f"tenant {tenant} already exists")
    return dataclasses.replace(creds, tenants={**creds.tenants, tenant: {"created_ms": now_ms}})


def remove_tenant(creds: Credentials, tenant: str) -> Credentials:
    """Forget a tenant and revoke every token and user of it (its stored data is not touched)."""
    if tenant not in creds.tenants:
        raise CredentialsError(f"no tenant {tenant}")
    return Credentials({t: m for t, m in creds.tenants.items() if t != tenant},
                       {k: e for k, e in creds.tokens.items() if e.tenant != tenant},
                       {k: e for k, e in creds.users.items() if e.tenant != tenant})


def _known_tenant(creds: Credentials, tenant: str) -> None:
    ids.validate(tenant)
    if tenant not in creds.tenants:
        raise CredentialsError(f"no tenant {tenant} (add it first: zlog tenant add {tenant})")


def create_token(creds: Credentials, tenant: str, role: str, now_ms: int, note: str = "") -> tuple[Credentials, str]:
    """Add a token; returns the new credentials and the token, which is shown once and never stored."""
    _known_tenant(creds, tenant)
    _check_role(role, "token")
    rand = os.urandom(12)
    tid = "".join(_ID_ALPHABET[b % len(_ID_ALPHABET)] for b in rand)
    secret = hashes.new_secret()
    token = f"{TOKEN_PREFIX}{tid}_{secret}"
    entry = Entry(tenant, role, hashes.hash_secret(secret, hashes.TOKEN_LOG2_N), now_ms, note)
    return dataclasses.replace(creds, tokens={**creds.tokens, tid: entry}), token


def revoke_token(creds: Credentials, token_or_id: str) -> Credentials:
    parts = split_token(token_or_id)
    tid = parts[0] if parts else token_or_id
    if tid not in creds.tokens:
        raise CredentialsError("no such token")
    return dataclasses.replace(creds, tokens={k: e for k, e in creds.tokens.items() if k != tid})


def set_user(creds: Credentials, name: str, tenant: str, role: str, password: str, now_ms: int) -> Credentials:
    if not valid_user(name):
        raise CredentialsError("user names are 1..64 of A-Z a-z 0-9 . _ @ -")
    _known_tenant(creds, tenant)
    _check_role(role, "user")
    if len(password) < 12 or len(password) > 1024:
        raise CredentialsError("a password is 12..1024 characters")
    entry = Entry(tenant, role, hashes.hash_secret(password, hashes.PASSWORD_LOG2_N), now_ms)
    return dataclasses.replace(creds, users={**creds.users, name: entry})


def remove_user(creds: Credentials, name: str) -> Credentials:
    if name not in creds.users:
        raise CredentialsError(f"no user {name}")
    return dataclasses.replace(creds, users={k: e for k, e in creds.users.items() if k != name})
