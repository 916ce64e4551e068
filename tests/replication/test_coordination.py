"""The etcd client against a real etcd: leases, registration, compare-and-swap on revisions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests._cluster import REPO
from tests._etcd import EtcdServer
from zlog.config import load
from zlog.ops.cluster import place_extra_programs
from zlog.replication.coordination import (
    CoordinationError,
    Coordinator,
    PartitionState,
    WorkerInfo,
    call_timeout,
)
from zlog.replication.etcd_server import local_endpoints, needed


def test_a_worker_key_lives_with_its_lease(etcd: EtcdServer) -> None:
    c = Coordinator((etcd.endpoint,), "/t1")
    lease = c.grant(1)
    c.register(WorkerInfo(3, "h3", 42, "tcp://127.0.0.1:1"), lease)
    assert c.snapshot().workers[3].host == "h3"
    assert c.keepalive(lease) >= 1
    deadline = time.monotonic() + 5
    while 3 in c.snapshot().workers:  # no more keepalives: etcd drops the key within the TTL + 1 s
        assert time.monotonic() < deadline, "the key outlived its lease"
        time.sleep(0.1)
    assert c.keepalive(lease) == 0


def test_partition_state_changes_only_against_the_revision_read(etcd: EtcdServer) -> None:
    a = Coordinator((etcd.endpoint,), "/t2")
    b = Coordinator((etcd.endpoint,), "/t2")
    s0 = PartitionState((0, 1, 2), 0, (0,), 0)
    assert a.cas("7", s0, 0)
    assert not b.cas("7", s0, 0)  # create only if absent
    state, rev = b.snapshot().partitions["7"]
    assert state == s0
    # two electors read the same revision: exactly one wins
    won = [a.cas("7", PartitionState((0, 1, 2), 1, (1,), 1), rev),
           b.cas("7", PartitionState((0, 1, 2), 2, (2,), 1), rev)]
    assert won == [True, False]
    assert a.snapshot().partitions["7"][0].leader == 1


def test_a_dead_endpoint_is_skipped_and_none_alive_is_an_error(etcd: EtcdServer) -> None:
    c = Coordinator(("http://127.0.0.1:1", etcd.endpoint), "/t3", timeout_s=0.5)
    assert c.snapshot().workers == {}
    dead = Coordinator(("http://127.0.0.1:1",), "/t3", timeout_s=0.5)
    with pytest.raises(CoordinationError):
        dead.snapshot()
    assert not dead.healthy()


def test_a_member_that_hangs_costs_less_than_the_renewal_margin(etcd: EtcdServer) -> None:
    # A member cut off from its peers accepts connections and answers nothing: each call must
    # move on to the next member well inside the third of the TTL between a renewal and fencing.
    import socket

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    try:
        ttl_ms = 2000
        c = Coordinator((f"http://127.0.0.1:{hang.getsockname()[1]}", etcd.endpoint), "/t4", call_timeout(ttl_ms))
        lease = c.grant(2)
        c._current = 0  # every call starts at the hanging member again
        t0 = time.monotonic()
        assert c.keepalive(lease) >= 1
        assert time.monotonic() - t0 < ttl_ms / 3000
    finally:
        hang.close()


def test_zlog_up_runs_a_local_etcd_only_when_replicated_without_endpoints(tmp_path: Path) -> None:
    conf = REPO / "conf" / "supervisord.conf"
    cfg = load(None, env={})
    place_extra_programs(cfg, tmp_path, conf)
    assert not (tmp_path / "supervisord.d" / "etcd.conf").exists()
    replicated = load(None, env={"ZLOG_STORAGE_REPLICATION_FACTOR": "2"})
    assert needed(replicated) and local_endpoints(replicated) == ("http://127.0.0.1:2379",)
    place_extra_programs(replicated, tmp_path, conf)
    assert "[program:etcd]" in (tmp_path / "supervisord.d" / "etcd.conf").read_text()
    external = load(None, env={"ZLOG_STORAGE_REPLICATION_FACTOR": "2", "ZLOG_CLUSTER_ETCD": "http://e1:2379,http://e2:2379"})
    assert not needed(external) and local_endpoints(external) == ("http://e1:2379", "http://e2:2379")
    place_extra_programs(external, tmp_path, conf)
    assert not (tmp_path / "supervisord.d" / "etcd.conf").exists()


def test_etcd_members_campaign_only_after_a_pre_vote() -> None:
    # Without pre-vote (3.4's default) a member back from a partition deposes the leader the
    # others kept: a cluster-wide stall just when a cut-off host returns (tests/multihost).
    from zlog.replication.etcd_server import command

    assert "--pre-vote" in command("a", Path("/nonexistent"), "127.0.0.1", 1, 2)
