"""A replicated router follows etcd's view: real sockets, the router driven turn by turn.

A worker whose lease key leaves etcd is gone at that view, and what it had in flight is NACKed
WORKER_LOST at once (not after the heartbeat timeout); a partition whose leader etcd names but
is not live here is refused NO_OWNER; the new leader etcd names gets the next request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq

from tests._cluster import free_port
from zlog.config import load
from zlog.protocol import bodies, wire
from zlog.protocol.wire import Command
from zlog.replication.coordination import PartitionState, WorkerInfo
from zlog.replication.discovery import View
from zlog.router.process import Router

W0, W1 = WorkerInfo(0, "h", 10, "tcp://h:1"), WorkerInfo(1, "h", 11, "tcp://h:2")


def state(leader: int, epoch: int) -> PartitionState:
    return PartitionState((0, 1), leader, (0, 1), epoch)


@pytest.fixture
def rig() -> Iterator[tuple[Router, zmq.Socket[bytes], dict[int, zmq.Socket[bytes]]]]:
    front, back = free_port(), free_port()
    cfg = load(None, env={"ZLOG_STORAGE_REPLICATION_FACTOR": "2", "ZLOG_CLUSTER_WORKERS": "2",
                          "ZLOG_CLUSTER_PARTITIONS": "2", "ZLOG_CLUSTER_ETCD": "http://127.0.0.1:9",
                          "ZLOG_ROUTER_FRONT": f"tcp://127.0.0.1:{front}",
                          "ZLOG_ROUTER_BACK": f"tcp://127.0.0.1:{back}"})
    ctx = zmq.Context.instance()
    router = Router(cfg, 0, ctx)  # its etcd threads start only in run(): the view is fed by hand
    producer = ctx.socket(zmq.DEALER)
    producer.connect(f"tcp://127.0.0.1:{front}")
    workers = {}
    for wid in (0, 1):
        w = ctx.socket(zmq.DEALER)
        w.setsockopt(zmq.IDENTITY, f"w{wid}".encode())
        w.connect(f"tcp://127.0.0.1:{back}")
        w.send_multipart([b"", *wire.encode(Command.READY, 0, body=bodies.ready_body(bodies.Ready(wid, ())))])
        workers[wid] = w
    try:
        pump(router, lambda: len(router.table.workers) == 2)
        yield router, producer, workers
    finally:
        for s in (producer, *workers.values()):
            s.close(0)
        router.close()


def pump(router: Router, done: object, timeout: float = 5.0) -> None:
    """Run router turns (its two sockets) until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the router never got there"
        for sock, handle in ((router.back, lambda f: router.on_back(f, int(time.monotonic() * 1000))),
                             (router.front, router.on_front)):
            while True:
                try:
                    handle(sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
        time.sleep(0.005)


def reply(sock: zmq.Socket[bytes], timeout_ms: int = 2000) -> wire.Message:
    assert sock.poll(timeout_ms), "no reply"
    frames = sock.recv_multipart()
    return wire.decode(frames[-5:])


def produce(producer: zmq.Socket[bytes], rid: int) -> None:
    producer.send_multipart(wire.encode(Command.PRODUCE, rid, partition=0, body=b"x"))


def test_a_worker_whose_lease_key_goes_is_gone_at_once_and_the_new_leader_gets_the_writes(
        rig: tuple[Router, zmq.Socket[bytes], dict[int, zmq.Socket[bytes]]]) -> None:
    router, producer, workers = rig
    router.follow(View(5, {0: W0, 1: W1}, {"0": state(0, 0), "1": state(1, 0)}))
    assert router.metadata(0)["owners"] == [0, 1]
    produce(producer, 1)
    pump(router, lambda: router.table.inflight_count() == 1)
    assert workers[0].poll(2000)  # forwarded to etcd's leader of partition 0; it never answers
    # Worker 0's lease key goes: its in-flight request is NACKed now, and partition 0 has no owner.
    router.follow(View(6, {1: W1}, {"0": state(0, 0), "1": state(1, 0)}))
    nack = reply(producer)
    assert nack.command is Command.NACK and bodies.parse_nack(nack.body).code == "WORKER_LOST"
    assert router.table.inflight_count() == 0 and 0 not in router.table.ids
    produce(producer, 2)
    pump(router, lambda: producer.poll(0))
    assert bodies.parse_nack(reply(producer).body).code == "NO_OWNER"
    # etcd names worker 1 (epoch 1): the next write goes there.
    router.follow(View(7, {1: W1}, {"0": state(1, 1), "1": state(1, 0)}))
    produce(producer, 3)
    pump(router, lambda: router.table.inflight_count() == 1)
    frames = workers[1].recv_multipart()
    assert wire.decode(frames[-5:]).request_id == 3
    assert router.metadata(0)["owners"] == [1, 1]
