"""CurveZMQ keys and the ZAP check of which key may connect where (``cluster.curve``).

``cluster.keys_dir`` (default ``<data_dir>/keys``) holds::

    server.key, server.key_secret      the routers' keypair (every router serves with it)
    gateway.key_secret, worker.key_secret  the internal clients' keypairs
    <name>.key_secret                  a native producer's keypair (give it to that producer)
    clients/<name>.key                 the public keys the routers accept, with their kind and tenant

Invariants:
- Pure parsing and formatting of key files apart from ``generate`` and ``load_clients``.
- A router's front socket accepts gateway and producer keys, its back socket only worker keys
  (ZAP domains ``front`` and ``back``): a producer key cannot pose as a storage worker.
- A producer key is bound to one tenant; the ZAP User-Id of its connection is ``tenant:<id>``,
  an internal key's is ``internal:<name>``. Unknown keys are refused during the handshake, so
  nothing they send ever reaches the router's code.
- Without curve, every zmq bind must be on loopback (or ipc/inproc): ``check_bind`` says why not.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from zlog.config import Config
from zlog.tenants import ids

log = logging.getLogger("zlog.security.curve")

INTERNAL = ("gateway", "worker")
SERVER = "server"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FIELD = re.compile(r'^\s*([a-z-]+)\s*=\s*"([^"]*)"\s*$', re.M)


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str
    kind: str  # gateway | worker | producer
    tenant: str | None
    public: bytes  # z85

    @property
    def user_id(self) -> str:
        return f"tenant:{self.tenant}" if self.kind == "producer" else f"internal:{self.name}"


@dataclass(frozen=True, slots=True)
class Keypair:
    public: bytes  # z85
    secret: bytes  # z85


@dataclass(frozen=True, slots=True)
class ClientCurve:
    """What a client socket needs: its keypair and the routers' public key."""

    keys: Keypair
    server_public: bytes

    def apply(self, sock: zmq.Socket[Any]) -> None:
        sock.curve_secretkey = self.keys.secret
        sock.curve_publickey = self.keys.public
        sock.curve_serverkey = self.server_public


def keys_dir(cfg: Config) -> Path:
    return cfg.cluster.keys_dir or cfg.cluster.data_dir / "keys"


def parse_cert(text: str) -> dict[str, str]:
    """The fields of a ZPL certificate (public-key, secret-key, kind, tenant)."""
    return {k: v for k, v in _FIELD.findall(text)}


def format_cert(public: bytes, secret: bytes | None, meta: dict[str, str]) -> str:
    lines = ["#   zlog CurveZMQ certificate; a secret key file must stay private", "metadata"]
    lines += [f'    {k} = "{v}"' for k, v in sorted(meta.items())]
    lines += ["curve", f'    public-key = "{public.decode()}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def generate(root: Path, name: str, tenant: str | None = None, force: bool = False) -> Path:
    """Write the keypair ``name`` (and, for a client, its public key under clients/)."""
    if not _NAME.fullmatch(name):
        raise ValueError("a key name is 1..64 of A-Z a-z 0-9 . _ -")
    kind = "server" if name == SERVER else name if name in INTERNAL else "producer"
    if kind == "producer":
        if tenant is None:
            raise ValueError(f"a producer key writes as one tenant: zlog keys generate {name} --tenant <id>")
        ids.validate(tenant)
    elif tenant is not None:
        raise ValueError(f"{name} is an internal key; --tenant is only for producers")
    secret_path = root / f"{name}.key_secret"
    if secret_path.exists() and not force:
        raise ValueError(f"{secret_path} exists (use --force to replace it)")
    (root / "clients").mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    public, secret = zmq.curve_keypair()
    meta = {"kind": kind, **({"tenant": tenant} if tenant else {})}
    _write(secret_path, format_cert(public, secret, meta), 0o600)
    if kind == "server":
        _write(root / f"{name}.key", format_cert(public, None, meta), 0o644)
    else:
        _write(root / "clients" / f"{name}.key", format_cert(public, None, meta), 0o644)
    return secret_path


def generate_cli(cfg: Config, name: str | None, tenant: str | None, force: bool) -> str:
    root = keys_dir(cfg)
    if name is None or name == "all":
        made = [str(generate(root, n, None, force)) for n in (SERVER, *INTERNAL)
                if force or not (root / f"{n}.key_secret").exists()]
        return "\n".join(made) or f"{root}: server, gateway and worker keys exist already"
    return str(generate(root, name, tenant, force))


def load_keypair(path: Path) -> Keypair:
    try:
        fields = parse_cert(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror} (make keys with: zlog keys generate)") from None
    if "public-key" not in fields or "secret-key" not in fields:
        raise ValueError(f"{path} is not a secret key file")
    return Keypair(fields["public-key"].encode(), fields["secret-key"].encode())


def server_public(cfg: Config) -> bytes:
    path = keys_dir(cfg) / f"{SERVER}.key"
    try:
        return parse_cert(path.read_text())["public-key"].encode()
    except (OSError, KeyError):
        raise ValueError(f"cannot read the routers' public key {path} (zlog keys generate)") from None


def client_curve(cfg: Config, name: str) -> ClientCurve | None:
    """The curve settings of client ``name`` (gateway, worker, or a producer's), None without curve."""
    if not cfg.cluster.curve:
        return None
    return ClientCurve(load_keypair(keys_dir(cfg) / f"{name}.key_secret"), server_public(cfg))


def load_clients(root: Path) -> dict[bytes, ClientKey]:
    """Every accepted client key by its z85 public key; malformed files are logged and skipped."""
    out: dict[bytes, ClientKey] = {}
    for path in sorted((root / "clients").glob("*.key")):
        fields = parse_cert(path.read_text(errors="replace"))
        kind, tenant, public = fields.get("kind"), fields.get("tenant"), fields.get("public-key", "")
        if kind not in ("gateway", "worker", "producer") or len(public) != 40 or (
                kind == "producer" and not ids.is_valid(tenant)):
            log.warning("ignoring a malformed client key file", extra={"path": str(path)})
            continue
        out[public.encode()] = ClientKey(path.stem, kind, tenant if kind == "producer" else None, public.encode())
    return out


class KeyCheck:
    """The ZAP decision: which client keys may connect to which router socket."""

    ALLOWED = {"front": ("gateway", "producer"), "back": ("worker",), "replica": ("worker",)}

    def __init__(self, clients: dict[bytes, ClientKey]) -> None:
        self.clients = clients

    def callback(self, domain: str, key: bytes) -> bool:
        client = self.clients.get(key)
        return client is not None and client.kind in self.ALLOWED.get(domain, ())


class Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, with our key check and User-Ids that name the key's tenant."""

    def __init__(self, ctx: zmq.Context[Any], root: Path) -> None:
        super().__init__(ctx)
        self.root = root
        self.check = KeyCheck(load_clients(root))

    def start(self) -> None:
        super().start()
        for domain in KeyCheck.ALLOWED:
            self.configure_curve_callback(domain, self.check)

    def reload(self) -> int:
        self.check.clients = load_clients(self.root)
        return len(self.check.clients)

    def curve_user_id(self, client_public_key: bytes) -> str:
        client = self.check.clients.get(zmq.utils.z85.encode(client_public_key))
        return client.user_id if client is not None else "unknown"


def serve_curve(sock: zmq.Socket[Any], cfg: Config, domain: str) -> None:
    """Make ``sock`` (before bind) a CURVE server whose clients ZAP checks in ``domain``."""
    keys = load_keypair(keys_dir(cfg) / f"{SERVER}.key_secret")
    sock.curve_server = True
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.zap_domain = domain.encode()


def check_bind(endpoint: str, curve: bool) -> str | None:
    """Why ``endpoint`` must not be bound without curve, or None when it may."""
    if curve or not endpoint.startswith("tcp://"):
        return None  # ipc:// is guarded by file permissions, inproc:// never leaves the process
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (f"{endpoint} is not a loopback address and cluster.curve is off: anyone who can reach it could "
            "write and read every tenant's records. Set cluster.curve = true (zlog keys generate; "
            "docs/security.md) or bind 127.0.0.1")
