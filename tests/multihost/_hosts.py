"""Helpers of the multi-host tests: a zlog cluster over the hosts of a ``tests._netns.Lab``.

Hosts 0..2 each run a router, a storage worker and a gateway (and, replicated, an etcd member),
every zmq socket under CurveZMQ; host 3 (``LB``) runs nginx (conf/nginx.conf rendered with the
hosts' addresses) and the load. Every zmq and HTTP address is a host address.

Invariants:
- The test process lives in the root namespace, which has no route into the lab: everything
  that speaks to the cluster runs inside a host's namespace (``Lab.run`` / ``Lab.wrap``).
- A host lists its own router first and, replicated, its own etcd member first, as a real
  deployment would: a gateway's reads go to its first router (a cut-off first router would make
  every read through it time out), and a worker reaches etcd through its own member while that
  member has a quorum.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests._cluster import REPO
from tests._netns import Lab, available
from tests.conftest import ProcessGroup

HOSTS = 3
LB = 3
HTTP_PORT = 8080
FRONT_PORT, BACK_PORT = 5555, 5556
ETCD_CLIENT, ETCD_PEER = 2379, 2380
ZLOG = [sys.executable, "-m", "zlog"]


def require_namespaces() -> None:
    """Skip the calling module, with the kernel's one-line reason, where namespaces cannot be made
    (under CI a skip fails the run: CI runs these tests)."""
    why_not = available()
    if why_not is not None:
        pytest.skip(f"network namespaces unavailable here: {why_not}", allow_module_level=True)


def render_nginx(lab: Lab, root: Path) -> Path:
    """conf/nginx.conf with this lab's gateways as upstreams and nginx on the load host."""
    text = (REPO / "conf" / "nginx.conf").read_text()
    servers = "".join(f"        server {lab.addr(h)}:{HTTP_PORT} max_fails=1 fail_timeout=2s;\n" for h in range(HOSTS))
    text, n = re.subn(r"        # zlog-upstream-servers\n.*?        # end-zlog-upstream-servers\n", servers, text,
                      flags=re.S)
    assert n == 1
    text, n = re.subn(r"listen 8080 reuseport;", f"listen {lab.addr(LB)}:{HTTP_PORT};", text)
    assert n == 1
    text = text.replace("worker_processes auto;", "worker_processes 1;")
    prefix = root / "nginx"
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def start_nginx(group: ProcessGroup, lab: Lab, root: Path) -> str:
    conf = render_nginx(lab, root)
    group.start("nginx", argv=lab.wrap(LB, ["nginx", "-c", str(conf), "-p", str(conf.parent) + "/"]))
    return f"http://{lab.addr(LB)}:{HTTP_PORT}"


def own_first(host: int) -> list[int]:
    return [host, *(h for h in range(HOSTS) if h != host)]


def host_config(lab: Lab, root: Path, host: int, storage: str = "", cluster: str = "", gateway: bool = False) -> Path:
    # Router i binds front[i], so routers and workers share one order; a gateway's reads go to
    # its first router, so its own list starts with its own host's router.
    fronts = ", ".join(f'"tcp://{lab.addr(h)}:{FRONT_PORT}"' for h in (own_first(host) if gateway else range(HOSTS)))
    backs = ", ".join(f'"tcp://{lab.addr(h)}:{BACK_PORT}"' for h in range(HOSTS))
    path = root / f"host{host}{'-gateway' if gateway else ''}.toml"
    path.write_text(
        f'[cluster]\ndata_dir = "{root / f"data{host}"}"\npartitions = 6\nworkers = {HOSTS}\n'
        f'node_id = "host{host}"\nhost = "{lab.addr(host)}"\ncurve = true\nkeys_dir = "{root / "keys"}"\n{cluster}'
        f"[router]\nfront = [{fronts}]\nback = [{backs}]\nheartbeat_ms = 200\n"
        f'[gateway]\nhost = "{lab.addr(host)}"\nport = {HTTP_PORT}\nrequest_timeout_ms = 3000\n'
        f'trusted_proxies = ["{lab.addr(LB)}"]\n'
        "[auth]\nallow_insecure = true\n" + (f"[storage]\n{storage}" if storage else "")
    )
    return path


def start_host(group: ProcessGroup, lab: Lab, root: Path, host: int, storage: str = "", cluster: str = "") -> None:
    env = {"ZLOG_CONFIG": str(host_config(lab, root, host, storage, cluster))}
    if not (root / "keys").exists():
        # One set of CurveZMQ keys for the whole cluster: zmq endpoints beyond loopback need it.
        subprocess.run([*ZLOG, "keys", "generate"], env={**group.base_env, **env}, check=True, timeout=60,
                       capture_output=True)
    group.start(f"router-{host}", argv=lab.wrap(host, [*ZLOG, "router", "--index", str(host)]), env=env)
    group.start(f"storage-{host}", argv=lab.wrap(host, [*ZLOG, "storage", "--worker-id", str(host)]), env=env)
    gw_env = {"ZLOG_CONFIG": str(host_config(lab, root, host, storage, cluster, gateway=True))}
    group.start(f"gateway-{host}", argv=lab.wrap(host, [*ZLOG, "gateway"]), env=gw_env)


def start_etcd(group: ProcessGroup, lab: Lab, root: Path) -> None:
    """One etcd member per host, the three forming one cluster."""
    from zlog.replication.etcd_server import command

    peers = ",".join(f"host{h}=http://{lab.addr(h)}:{ETCD_PEER}" for h in range(HOSTS))
    for h in range(HOSTS):
        argv = command(f"host{h}", root / f"etcd{h}", lab.addr(h), ETCD_CLIENT, ETCD_PEER)
        argv[argv.index("--initial-cluster") + 1] = peers
        group.start(f"etcd-{h}", argv=lab.wrap(h, argv))


def etcd_endpoints(lab: Lab, host: int) -> list[str]:
    """Every member, the host's own first."""
    return [f"http://{lab.addr(h)}:{ETCD_CLIENT}" for h in own_first(host)]


_ETCD_STATUS = ("import sys, urllib.request\n"
                "r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'{}'), timeout=2)\n"
                "print(r.read().decode())\n")


def etcd_leader(lab: Lab) -> int | None:
    """The host whose etcd member leads etcd now (asked from the load host), None if none answers."""
    ids: dict[str, int] = {}
    leader = None
    for h in range(HOSTS):
        out = lab.run(LB, ["python3", "-c", _ETCD_STATUS, f"http://{lab.addr(h)}:{ETCD_CLIENT}/v3/maintenance/status"],
                      timeout=10).stdout
        try:
            status = json.loads(out)
        except ValueError:
            continue
        ids[str(status["header"]["member_id"])] = h
        leader = str(status.get("leader"))
    return ids.get(leader) if leader is not None else None


_GET = ("import sys, urllib.request\n"
        "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]))\n"
        "    print(r.status); print(r.read().decode())\n"
        "except Exception as e:\n    print(getattr(e, 'code', 0))\n")


def http_get(lab: Lab, host: int, url: str, timeout: float = 2) -> tuple[int, str]:
    """(status, body) of a GET made from inside ``host``; status 0 when nothing answered."""
    out = lab.run(host, ["python3", "-c", _GET, url, str(timeout)], timeout=timeout + 8).stdout
    status, _, body = out.partition("\n")
    return int(status.strip() or 0), body


def http_from(lab: Lab, host: int, url: str) -> int:
    return http_get(lab, host, url)[0]


def partitions_from(lab: Lab, url: str) -> list[dict[str, Any]]:
    status, body = http_get(lab, LB, f"{url}/v1/partitions", timeout=3)
    return list(json.loads(body).get("partitions", [])) if status == 200 else []


def loadgen(group: ProcessGroup, lab: Lab, root: Path, tag: str, seconds: float, retry: bool = False) -> Path:
    acks = root / f"acks-{tag}.jsonl"
    group.expected_exits.add(f"loadgen-{tag}")
    group.start(f"loadgen-{tag}", argv=lab.wrap(LB, [
        sys.executable, str(REPO / "tools" / "loadgen.py"), "--url", f"http://{lab.addr(LB)}:{HTTP_PORT}/v1/logs",
        "--batch", "50", "--concurrency", "4", "--seconds", str(seconds), "--delay", "20", "--tag", tag,
        "--record-acks", str(acks), "--json", "--quiet", *(["--retry"] if retry else [])]))
    return acks


def count_lines(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


def stored_tags(data: Path) -> Counter[str]:
    """zlog_seq label -> how many times it is stored under ``data`` (every .jsonl below it)."""
    seen: Counter[str] = Counter()
    for segment in data.glob("**/*.jsonl"):
        for line in segment.read_bytes().splitlines():
            tag = json.loads(line).get("labels", {}).get("zlog_seq")
            if tag:
                seen[tag] += 1
    return seen
