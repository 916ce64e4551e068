"""The routing table's owners: by the workers' claims (R = 1), or by etcd's leaders once known."""

from __future__ import annotations

from zlog.router.routing import RoutingTable


def table() -> RoutingTable:
    t = RoutingTable(3, heartbeat_ms=100, liveness=3)
    t.claim(b"a", 0, (0, 1), 0)
    t.claim(b"b", 1, (2,), 0)
    return t


def test_claims_decide_until_etcd_is_followed() -> None:
    t = table()
    assert [t.owner(p) for p in range(3)] == [b"a", b"a", b"b"]
    t.claim(b"b", 1, (1, 2), 10)  # the newest claim wins
    assert t.owner(1) == b"b"


def test_etcd_leaders_decide_once_followed_whatever_the_claims() -> None:
    t = table()
    assert t.follow([1, 0, None]) == [0, 1, 2]
    assert [t.owner(p) for p in range(3)] == [b"b", b"a", None]  # partition 2: no leader, no owner
    t.claim(b"a", 0, (0, 1, 2), 10)  # a stale claim changes nothing
    assert t.owner(0) == b"b" and t.owner(2) is None
    assert t.follow([1, 1, 0]) == [1, 2]
    assert [t.owner(p) for p in range(3)] == [b"b", b"b", b"a"]
    assert t.snapshot(20)["owners"] == [1, 1, 0]


def test_a_leader_not_connected_is_no_owner_and_its_new_identity_takes_over() -> None:
    t = table()
    t.follow([0, 0, 1])
    t.remove(b"a")
    assert t.owner(0) is None and t.identity_of(0) is None
    t.claim(b"a2", 0, (), 30)  # worker 0 restarted: a new zmq identity, same worker id
    assert t.owner(0) == b"a2" and t.owned_count() == 3
    t.remove(b"a")  # the old identity going again does not unmap the new one
    assert t.owner(0) == b"a2"
