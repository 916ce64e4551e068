"""A cluster spread over three hosts (Linux network namespaces) behind nginx, losing one host.

Hosts 0..2 each run a router, a storage worker and a gateway, every zmq socket under CurveZMQ; host 3 runs nginx (conf/nginx.conf,
rendered with the hosts' addresses) and the load. Every zmq and HTTP address is a host address:
workers connect to every router, gateways to every router, nginx to every gateway.

Invariants checked:
- every record acknowledged (200, or 202 = in a gateway's fsynced WAL) is stored exactly once,
  once the cut host is back and the WALs have drained;
- while a host is cut off, requests through nginx keep being acknowledged by the other hosts.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from tests._cluster import REPO
from tests._netns import Lab, available
from tests.conftest import ProcessGroup

pytestmark = pytest.mark.cluster

HOSTS = 3
LB = 3
HTTP_PORT = 8080
FRONT_PORT, BACK_PORT = 5555, 5556
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


def host_config(lab: Lab, root: Path, host: int) -> Path:
    fronts = ", ".join(f'"tcp://{lab.addr(h)}:{FRONT_PORT}"' for h in range(HOSTS))
    backs = ", ".join(f'"tcp://{lab.addr(h)}:{BACK_PORT}"' for h in range(HOSTS))
    path = root / f"host{host}.toml"
    path.write_text(
        f'[cluster]\ndata_dir = "{root / f"data{host}"}"\npartitions = 6\nworkers = {HOSTS}\n'
        f'node_id = "host{host}"\nhost = "{lab.addr(host)}"\ncurve = true\nkeys_dir = "{root / "keys"}"\n'
        f"[router]\nfront = [{fronts}]\nback = [{backs}]\nheartbeat_ms = 200\n"
        f'[gateway]\nhost = "{lab.addr(host)}"\nport = {HTTP_PORT}\nrequest_timeout_ms = 3000\n'
        f'trusted_proxies = ["{lab.addr(LB)}"]\n'
        "[auth]\nallow_insecure = true\n"
    )
    return path


def start_host(group: ProcessGroup, lab: Lab, root: Path, host: int) -> None:
    import subprocess
    import sys

    env = {"ZLOG_CONFIG": str(host_config(lab, root, host))}
    zlog = [sys.executable, "-m", "zlog"]
    if not (root / "keys").exists():
        # One set of CurveZMQ keys for the whole cluster: zmq endpoints beyond loopback need it.
        subprocess.run([*zlog, "keys", "generate"], env={**group.base_env, **env}, check=True, timeout=60,
                       capture_output=True)
    group.start(f"router-{host}", argv=lab.wrap(host, [*zlog, "router", "--index", str(host)]), env=env)
    group.start(f"storage-{host}", argv=lab.wrap(host, [*zlog, "storage", "--worker-id", str(host)]), env=env)
    group.start(f"gateway-{host}", argv=lab.wrap(host, [*zlog, "gateway"]), env=env)


def http_from(lab: Lab, host: int, url: str) -> int:
    code = ("import sys, urllib.request\n"
            "try:\n    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)\n"
            "except Exception as e:\n    print(getattr(e, 'code', 0))\n")
    out = lab.run(host, ["python3", "-c", code, url], timeout=10).stdout.strip()
    return int(out or 0)


def stored_tags(root: Path) -> Counter[str]:
    seen: Counter[str] = Counter()
    for segment in root.glob("data*/**/*.jsonl"):
        for line in segment.read_bytes().splitlines():
            tag = json.loads(line).get("labels", {}).get("zlog_seq")
            if tag:
                seen[tag] += 1
    return seen


def loadgen(group: ProcessGroup, lab: Lab, root: Path, tag: str, seconds: float) -> Path:
    import sys

    acks = root / f"acks-{tag}.jsonl"
    group.start(f"loadgen-{tag}", argv=lab.wrap(LB, [
        sys.executable, str(REPO / "tools" / "loadgen.py"), "--url", f"http://{lab.addr(LB)}:{HTTP_PORT}/v1/logs",
        "--batch", "50", "--concurrency", "4", "--seconds", str(seconds), "--delay", "20", "--tag", tag,
        "--record-acks", str(acks), "--json", "--quiet"]))
    return acks


def _count(acks: Path) -> int:
    return sum(1 for _ in acks.open()) if acks.exists() else 0


def test_three_hosts_behind_nginx_lose_one_and_get_it_back(process_group: ProcessGroup, tmp_path: Path) -> None:
    with Lab(hosts=HOSTS + 1) as lab:
        for h in range(HOSTS):
            start_host(process_group, lab, tmp_path, h)
        conf = render_nginx(lab, tmp_path)
        process_group.start("nginx", argv=lab.wrap(LB, ["nginx", "-c", str(conf), "-p", str(conf.parent) + "/"]))
        lb = f"http://{lab.addr(LB)}:{HTTP_PORT}"
        process_group.wait_for(lambda: http_from(lab, LB, f"{lb}/ready") == 200, timeout=60,
                               what="the cluster ready through nginx")

        # Load through nginx while host 2 is cut off for a while, then comes back.
        process_group.expected_exits.add("loadgen-cut")
        acks = loadgen(process_group, lab, tmp_path, "cut", seconds=9)
        time.sleep(2)
        lab.cut(2)
        before = _count(acks)
        time.sleep(4)
        during = _count(acks) - before
        lab.restore(2)
        process_group.wait_for(lambda: not process_group["loadgen-cut"].alive(), timeout=60, what="load to end",
                               allow_exit=True)
        summary = json.loads(process_group["loadgen-cut"].output().strip().splitlines()[-1])
        assert summary["acknowledged"] > 0
        acked = [json.loads(line)["seq"] for line in acks.read_text().splitlines()]
        assert len(acked) == summary["acknowledged"]
        assert during > 0, "nothing was acknowledged while host 2 was cut off"

        # Host 2 is back: every router sees its worker again and the WALs drain.
        process_group.wait_for(lambda: http_from(lab, LB, f"{lb}/ready") == 200, timeout=60,
                               what="the cluster ready again", allow_exit=True)

        def all_stored() -> bool:
            seen = stored_tags(tmp_path)
            return all(seen[t] >= 1 for t in acked)

        process_group.wait_for(all_stored, timeout=60, what="every acknowledged record stored", allow_exit=True)
        seen = stored_tags(tmp_path)
        doubled = [t for t in acked if seen[t] != 1]
        assert doubled == [], f"{len(doubled)} acknowledged records stored more than once"
