"""Discovery: the pure fold of etcd watch events into a view (a table of scenarios), and the watch
thread against a real etcd (events within one watch event, a broken watch re-established from a
fresh read, the last view kept while etcd is down)."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest

from tests._cluster import wait_until
from tests._etcd import EtcdServer
from zlog.replication.coordination import Coordinator, PartitionState, RouterInfo, WorkerInfo
from zlog.replication.discovery import View, apply, changed_leaders, lost_workers
from zlog.replication.watch import Discovery, Registration

W0 = WorkerInfo(0, "h0", 10, "tcp://h0:1")
W1 = WorkerInfo(1, "h1", 11, "tcp://h1:1")
R0 = RouterInfo(0, "h0", 20, "tcp://h0:5555", "tcp://h0:5556")


def put(key: str, value: bytes, rev: int) -> dict[str, object]:
    return {"kv": {"key": base64.b64encode(f"/z/{key}".encode()).decode(),
                   "value": base64.b64encode(value).decode(), "mod_revision": str(rev)}}


def delete(key: str, rev: int) -> dict[str, object]:
    return {"type": "DELETE", "kv": {"key": base64.b64encode(f"/z/{key}".encode()).decode(),
                                     "mod_revision": str(rev)}}


def state(leader: int | None, epoch: int = 0) -> bytes:
    return PartitionState((0, 1), leader, (0, 1), epoch).to_json()


BASE = View(5, {0: W0, 1: W1}, {"0": PartitionState((0, 1), 0, (0, 1), 0)}, {0: R0})

# (what happens, events, leader of partition 0 after, routers after, revision after)
SCENARIOS = [
    ("nothing", [], 0, [R0.front], 5),
    ("a new epoch names worker 1", [put("partitions/0", state(1, 1), 6)], 1, [R0.front], 6),
    ("the leader's lease expires", [delete("workers/0", 6)], None, [R0.front], 6),
    ("... and the next one is elected", [delete("workers/0", 6), put("partitions/0", state(1, 1), 7)], 1,
     [R0.front], 7),
    ("a router registers", [put("routers/1", RouterInfo(1, "h1", 2, "tcp://h1:5", "tcp://h1:6").to_json(), 6)],
     0, [R0.front, "tcp://h1:5"], 6),
    ("the router dies", [delete("routers/0", 6)], 0, [], 6),
    ("an event already folded in", [put("partitions/0", state(1, 1), 5)], 0, [R0.front], 5),
    ("another prefix", [{"kv": {"key": base64.b64encode(b"/y/partitions/0").decode(),
                                "value": base64.b64encode(state(1, 1)).decode(), "mod_revision": "9"}}],
     0, [R0.front], 5),
    ("a value zlog did not write", [put("partitions/0", b"not json", 6)], 0, [R0.front], 6),
]


@pytest.mark.parametrize(("what", "events", "leader", "fronts", "revision"), SCENARIOS,
                         ids=[s[0] for s in SCENARIOS])
def test_a_view_follows_the_events(what: str, events: list[dict[str, object]], leader: int | None,
                                   fronts: list[str], revision: int) -> None:
    after = apply(BASE, "/z", events)
    assert after.leader(0) == leader
    assert after.fronts() == fronts
    assert after.revision == revision
    assert BASE.leader(0) == 0  # views are never changed in place


def test_lost_workers_and_new_leaders_compare_two_views() -> None:
    after = apply(BASE, "/z", [delete("workers/0", 6), put("partitions/0", state(1, 1), 7)])
    assert lost_workers(BASE, after) == [0]
    assert lost_workers(None, after) == []  # a first view loses nobody
    assert changed_leaders(BASE, after, 2) == [0]
    same_worker_new_epoch = apply(BASE, "/z", [put("partitions/0", state(0, 1), 6)])
    assert changed_leaders(BASE, same_worker_new_epoch, 2) == [0]
    assert changed_leaders(BASE, BASE, 2) == []


def test_the_watch_sees_each_change_and_outlives_an_etcd_restart(tmp_path: Path) -> None:
    etcd = EtcdServer(tmp_path / "etcd").start()
    try:
        coord = Coordinator((etcd.endpoint,), "/w")
        views: list[View] = []
        seen = threading.Event()

        def on_change(v: View) -> None:
            views.append(v)
            seen.set()

        d = Discovery((etcd.endpoint,), "/w", on_change, quiet_s=2.0)
        d.start()
        wait_until(lambda: d.view is not None, timeout=5, what="the first read")
        lease = coord.grant(5)
        coord.register(W0, lease)
        coord.cas("0", PartitionState((0, 1), 0, (0,), 0), 0)
        wait_until(lambda: d.view is not None and d.view.leader(0) == 0, timeout=2, what="the leader")
        # One change in etcd is seen by the watch within a fraction of a second.
        _, rev = coord.snapshot().partitions["0"]
        seen.clear()
        t0 = time.monotonic()
        assert coord.cas("0", PartitionState((0, 1), 0, (0,), 1), rev)
        wait_until(lambda: d.view is not None and d.view.partitions["0"].epoch == 1, timeout=2, what="epoch 1")
        assert time.monotonic() - t0 < 0.5
        reads = d.reads
        # etcd stops: the last view stays; it returns: the watch is re-established from a fresh read
        # and sees what changed meanwhile.
        etcd.stop()
        time.sleep(1.0)
        assert d.view is not None and d.view.leader(0) == 0
        etcd.start()
        coord.revoke(lease)  # the leader's lease goes: no live leader
        wait_until(lambda: d.view is not None and d.view.leader(0) is None, timeout=10, what="the lease's end")
        assert d.reads > reads and d.breaks >= 1
        d.stop()
        d.join(5)
        assert not d.is_alive()
    finally:
        etcd.stop()


def test_a_registration_lives_while_renewed_and_goes_when_stopped(etcd: EtcdServer) -> None:
    coord = Coordinator((etcd.endpoint,), "/r")
    reg = Registration((etcd.endpoint,), "/r", "routers", 0, R0.to_json(), ttl_s=1)
    reg.start()
    wait_until(lambda: 0 in coord.snapshot().routers, timeout=5, what="the router key")
    time.sleep(2.5)  # beyond the TTL: renewed
    assert coord.snapshot().routers[0] == R0
    reg.stop()
    assert 0 not in coord.snapshot().routers  # revoked: gone at once, not after the TTL
