"""What would make a zlog process refuse to start for security reasons, asked once up front.

Each process checks its own part when it starts (the gateway its listen address and
credentials, routers and workers their binds and keys); ``zlog up`` asks ``refusals`` first, so
an operator reads one message instead of watching supervisord restart a process that exits 2.

Invariants:
- The same rules the processes apply (``gateway.auth.check_listen``, ``curve.check_bind``,
  ``curve.client_curve``, ``credentials.load``), so the two can never disagree.
- Reads files (keys, credentials) but changes nothing.
"""

from __future__ import annotations

from zlog.config import Config
from zlog.security import credentials, curve


def refusals(cfg: Config) -> list[str]:
    out: list[str] = []
    from zlog.gateway.auth import check_listen  # the gateway's own rule (its module pulls in aiohttp)

    listen = check_listen(cfg, cfg.gateway.host)
    if listen:
        out.append(listen)
    for endpoint in (*cfg.router.front, *cfg.router.back):
        why = curve.check_bind(endpoint, cfg.cluster.curve)
        if why:
            out.append(why)
    if cfg.cluster.curve:
        for name in ("gateway", "worker"):
            try:
                curve.client_curve(cfg, name)
            except ValueError as exc:
                out.append(str(exc))
        if not (curve.keys_dir(cfg) / f"{curve.SERVER}.key_secret").exists():
            out.append(f"no {curve.SERVER}.key_secret in {curve.keys_dir(cfg)} (zlog keys generate)")
    if cfg.auth.mode != "none":
        try:
            credentials.load(credentials.path_of(cfg))
        except credentials.CredentialsError as exc:
            out.append(str(exc))
    return out
