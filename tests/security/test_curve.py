"""CurveZMQ between producers, routers and workers, on a real cluster with cluster.curve = true.

Only keys listed under ``keys_dir/clients`` get through the router's ZAP check; a plain socket
or an unknown key never reaches the router's code (nothing answers, nothing is stored); a
producer key writes only as its tenant, may not read, and cannot pose as a storage worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests._cluster import REPO, Cluster, free_port, http
from zlog.protocol import bodies, wire
from zlog.protocol.wire import Command
from zlog.security import curve


def record(msg: str, **extra: Any) -> bytes:
    return json.dumps({"timestamp": int(time.time() * 1000), "service": "native", "level": "INFO", "message": msg,
                       "labels": {}, "received_at": 1, "ingested_node_id": "native", "client_ip": "", **extra}).encode()


@pytest.fixture(scope="module")
def curve_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    root = Path(tmp_path_factory.mktemp("curve"))
    keys = root / "keys"
    for name in ("server", "gateway", "worker"):
        curve.generate(keys, name)
    curve.generate(keys, "app-default", tenant="default")
    curve.generate(keys, "app-acme", tenant="acme")
    curve.generate(root / "stranger-keys", "stranger", tenant="default")  # never listed under keys/clients
    env = {"ZLOG_CLUSTER_CURVE": "true", "ZLOG_CLUSTER_KEYS_DIR": str(keys)}
    with Cluster(root, partitions=2, workers=1, env_extra=env) as c:
        yield c, keys


def dealer(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, keys: curve.ClientCurve | None) -> zmq.Socket[bytes]:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        keys.apply(s)
    s.connect(endpoint)
    return s


def ask(s: zmq.Socket[bytes], frames: list[bytes], wait_ms: int = 3000) -> wire.Message | None:
    """The answer, or None when the frames could not be sent (no peer completed the handshake)
    or nothing came back within ``wait_ms``."""
    if not s.poll(wait_ms, zmq.POLLOUT):
        return None
    try:
        s.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        return None
    if not s.poll(wait_ms):
        return None
    return wire.decode(s.recv_multipart())


def keys_of(root: Path, name: str, server_dir: Path) -> curve.ClientCurve:
    pair = curve.load_keypair(root / f"{name}.key_secret")
    server = curve.parse_cert((server_dir / "server.key").read_text())["public-key"].encode()
    return curve.ClientCurve(pair, server)


def stored_messages(cluster: Cluster) -> list[str]:
    return [r["message"] for r in cluster.stored_records()]


def test_gateway_and_worker_talk_curve(curve_cluster: tuple[Cluster, Path]) -> None:
    cluster, _ = curve_cluster
    status, body = cluster.post([{"service": "web", "message": "through the gateway"}])
    assert status == 200, body
    assert "through the gateway" in stored_messages(cluster)


def test_plain_and_unknown_keys_cannot_produce(curve_cluster: tuple[Cluster, Path]) -> None:
    cluster, keys = curve_cluster
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{cluster.front}"
    stranger = keys_of(keys.parent / "stranger-keys", "stranger", keys)
    wrong_server = curve.ClientCurve(curve.load_keypair(keys / "app-default.key_secret"), zmq.curve_keypair()[0])
    try:
        for who, k in (("plain", None), ("unknown key", stranger), ("wrong server key", wrong_server)):
            s = dealer(ctx, endpoint, k)
            frames = wire.encode(Command.PRODUCE, 1, partition=0,
                                 body=bodies.produce_body([record(f"from {who}")], 1))
            assert ask(s, frames, 1000) is None, who  # the handshake fails: the router never sees it
            assert ask(s, wire.encode(Command.METADATA, 2), 200) is None, who
            s.close(0)
    finally:
        ctx.destroy(0)
    assert not [m for m in stored_messages(cluster) if m.startswith("from ")]
    router_log = cluster.logs("router")
    assert "Traceback" not in router_log


def test_a_producer_key_writes_only_as_its_tenant_and_may_not_read(curve_cluster: tuple[Cluster, Path]) -> None:
    cluster, keys = curve_cluster
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    s = dealer(ctx, f"tcp://127.0.0.1:{cluster.front}", keys_of(keys, "app-default", keys))
    try:
        ok = ask(s, wire.encode(Command.PRODUCE, 1, partition=0, body=bodies.produce_body([record("native ok")], 1)))
        assert ok is not None and ok.command is Command.ACK, ok and ok.unpack()
        other = ask(s, wire.encode(Command.PRODUCE, 2, partition=0,
                                   body=bodies.produce_body([record("as another tenant")], 1, tenant="acme")))
        assert other is not None and other.command is Command.NACK and other.unpack()["code"] == "FORBIDDEN"
        read = ask(s, wire.encode(Command.FETCH, 3, partition=0, body={"offset": 0, "max_bytes": 4096}))
        assert read is not None and read.command is Command.NACK and read.unpack()["code"] == "FORBIDDEN"
        bad = ask(s, wire.encode(Command.PRODUCE, 4, partition=0,
                                 body=bodies.produce_body([record("good one"), record("bad", partition="x")], 1)))
        assert bad is not None and bad.command is Command.NACK
        nack = bad.unpack()
        assert nack["code"] == "INVALID_RECORD" and "record 1" in nack["message"], nack
    finally:
        s.close(0)
        ctx.destroy(0)
    messages = stored_messages(cluster)
    assert "native ok" in messages
    assert "as another tenant" not in messages and "good one" not in messages


def test_a_producer_key_cannot_pose_as_a_worker(curve_cluster: tuple[Cluster, Path]) -> None:
    cluster, keys = curve_cluster
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    s = dealer(ctx, f"tcp://127.0.0.1:{cluster.back}", keys_of(keys, "app-default", keys))
    try:
        claim = bodies.ready_body(bodies.Ready(0, (0, 1), "evil", 4242, 1))
        for _ in range(3):
            s.send_multipart(wire.encode(Command.READY, 0, body=claim))
        time.sleep(0.5)  # give a (wrongly) accepted claim time to show; the check below must stay false
        status, _, data = http("GET", cluster.url + "/ready")
        assert status == 200 and 4242 not in [w["pid"] for w in json.loads(data)["workers"]]
    finally:
        s.close(0)
        ctx.destroy(0)


def test_without_curve_a_non_loopback_bind_is_refused(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), ZLOG_ROUTER_FRONT=f"tcp://0.0.0.0:{free_port()}",
               ZLOG_ROUTER_BACK=f"tcp://127.0.0.1:{free_port()}", ZLOG_ROUTER_METRICS_PORT=str(free_port()),
               ZLOG_CLUSTER_DATA_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "zlog", "router"], env=env, cwd=tmp_path, capture_output=True,
                         timeout=30)
    assert out.returncode == 2
    assert b"not a loopback address and cluster.curve is off" in out.stderr


def test_the_cli_makes_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zlog.ops.cli import main

    def run(*a: str) -> tuple[int, str]:
        code = main(["--data-dir", str(tmp_path), "keys", "generate", *a])
        return code, capsys.readouterr().err

    assert run()[0] == 0
    assert {p.name for p in (tmp_path / "keys").iterdir()} >= {"server.key", "server.key_secret", "gateway.key_secret",
                                                              "worker.key_secret", "clients"}
    assert (tmp_path / "keys" / "server.key_secret").stat().st_mode & 0o077 == 0
    code, err = run("app")
    assert code == 2 and "--tenant" in err
    assert run("app", "--tenant", "acme")[0] == 0
    assert run("app", "--tenant", "acme")[0] == 2  # exists
    assert {k.tenant for k in curve.load_clients(tmp_path / "keys").values()} == {None, "acme"}


def test_a_router_admits_a_new_key_and_drops_a_removed_one_on_sighup(curve_cluster: tuple[Cluster, Path]) -> None:
    import signal

    cluster, keys = curve_cluster
    curve.generate(keys, "late", tenant="default")
    late = keys_of(keys, "late", keys)
    produce = wire.encode(Command.PRODUCE, 7, partition=0, body=bodies.produce_body([record("late key")], 1))
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        s = dealer(ctx, f"tcp://127.0.0.1:{cluster.front}", late)
        assert ask(s, produce, 700) is None  # not admitted yet
        s.close(0)
        cluster.signal("router", signal.SIGHUP)
        wait_until_logged = time.monotonic() + 10
        while "client keys reloaded" not in cluster.logs("router") and time.monotonic() < wait_until_logged:
            time.sleep(0.05)
        s = dealer(ctx, f"tcp://127.0.0.1:{cluster.front}", late)
        reply = ask(s, produce)
        assert reply is not None and reply.command is Command.ACK
        s.close(0)
        (keys / "clients" / "late.key").unlink()
        cluster.signal("router", signal.SIGHUP)
        deadline = time.monotonic() + 10
        while cluster.logs("router").count("client keys reloaded") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        s = dealer(ctx, f"tcp://127.0.0.1:{cluster.front}", late)
        assert ask(s, produce, 700) is None
        s.close(0)
    finally:
        ctx.destroy(0)
    assert cluster.procs["router"].alive()


def test_a_tenant_key_writes_into_its_tenant_only(curve_cluster: tuple[Cluster, Path]) -> None:
    from zlog.tenants.layout import tenant_root

    cluster, keys = curve_cluster
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    s = dealer(ctx, f"tcp://127.0.0.1:{cluster.front}", keys_of(keys, "app-acme", keys))
    try:
        ok = ask(s, wire.encode(Command.PRODUCE, 1, partition=0, body=bodies.produce_body([record("acme native")], 1)))
        assert ok is not None and ok.command is Command.ACK, ok and ok.unpack()
    finally:
        s.close(0)
        ctx.destroy(0)
    assert "acme native" not in stored_messages(cluster)  # not in the default tenant
    acme = tenant_root(cluster.data_dir, "acme", "default") / "0"
    assert any(b"acme native" in seg.read_bytes() for seg in acme.glob("*.jsonl"))
