"""A replicated partition's logs: their names, and one ISR over every tenant's log of it."""

from __future__ import annotations

import pytest

from zlog.replication.epochs import EpochCache
from zlog.replication.isr import LeaderState
from zlog.replication.leader import Led, Waiter
from zlog.replication.logset import PartitionLead, log_name, parse_log_name

LAG = 1000


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("3", (None, 3)),  # the default tenant's log is named as the partition was before tenants
        ("0", (None, 0)),
        ("acme/3", ("acme", 3)),
        ("a.b-c_(x)*'!/12", ("a.b-c_(x)*'!", 12)),
        ("acme/03", None),  # never made by log_name: refused, not read as partition 3
        ("acme/", None),
        ("/3", None),
        ("a/b/3", None),  # '/' is not in a tenant id
        ("../3", None),
        ("acme/-1", None),
        ("acme/٣", None),  # a non-ASCII digit
        ("", None),
    ],
)
def test_log_names(name: str, key: tuple[str | None, int] | None) -> None:
    assert parse_log_name(name) == key
    if key is not None:
        assert log_name(*key) == name


def lead_of(tenants: list[str | None], isr: frozenset[int] = frozenset({0, 1, 2})) -> PartitionLead:
    lead = PartitionLead(3, "3", 4)
    for t in tenants:
        st = LeaderState(0, (0, 1, 2), isr, 0, 0, LAG, 0.0)
        lead.logs[log_name(t, 3)] = Led(3, log_name(t, 3), 4, st, EpochCache([(4, 0)]))
    return lead


def test_the_default_log_alone_behaves_as_before() -> None:
    lead = lead_of([None])
    lead.logs["3"].state.appended(10)
    lead.logs["3"].state.fetched(1, 10, 100.0)
    assert lead.wanted_isr(LAG + 50.0) == {0, 1}  # 2 silent for longer than the lag
    assert lead.isr == {0, 1, 2} and lead.replicas == (0, 1, 2) and lead.followers() == [1, 2]


# Each row: per log, (replica, offset it fetched at, when) after the leader appended `leo` to
# every log at t=0; then the ISR the partition wants at `now`.
@pytest.mark.parametrize(
    ("fetches", "isr", "now", "want"),
    [
        # in sync on both logs: nobody leaves
        ({"3": [(1, 10, 900), (2, 10, 900)], "acme/3": [(1, 10, 900), (2, 10, 900)]}, {0, 1, 2}, 1500, {0, 1, 2}),
        # replica 2 keeps up on the default log but never fetched acme's (not declared there):
        # it leaves the partition's ISR, so no election can pick a replica missing acme's records
        ({"3": [(1, 10, 900), (2, 10, 900)], "acme/3": [(1, 10, 900)]}, {0, 1, 2}, 1500, {0, 1}),
        # behind on one log only is out too
        ({"3": [(1, 10, 1400)], "acme/3": [(1, 4, 1400), (1, 4, 1450)]}, {0, 1}, 1500, {0, 1}),
        # out of the ISR, back only once caught up on every log
        ({"3": [(1, 10, 1400), (1, 10, 1450)], "acme/3": [(1, 2, 1450)]}, {0}, 1500, {0}),
        ({"3": [(1, 10, 1400), (1, 10, 1450)], "acme/3": [(1, 10, 1400), (1, 10, 1450)]}, {0}, 1500, {0, 1}),
    ],
)
def test_one_isr_over_every_log(fetches: dict[str, list[tuple[int, int, float]]], isr: set[int], now: float,
                                want: set[int]) -> None:
    lead = lead_of([None, "acme"], frozenset(isr))
    for led in lead.logs.values():
        led.state.appended(10)
    for name, rows in fetches.items():
        for replica, offset, at in rows:
            lead.logs[name].state.fetched(replica, offset, at)
    assert lead.wanted_isr(now) == want


def test_each_log_has_its_own_high_watermark_over_the_one_isr() -> None:
    lead = lead_of([None, "acme"], frozenset({0, 1}))
    default, acme = lead.logs["3"], lead.logs["acme/3"]
    default.state.appended(10)
    acme.state.appended(3)
    default.state.fetched(1, 10, 1.0)
    acme.state.fetched(1, 2, 1.0)
    assert (default.state.hw, acme.state.hw) == (10, 2)
    # replica 1 leaves (etcd holds the shrink): acme's watermark moves to its log end
    moved = lead.set_isr(frozenset({0}))
    assert moved == [acme] and acme.state.hw == 3 and lead.isr == {0}
    assert lead.lag(1) == 0 + 1


def test_stepping_down_fails_a_waiter_once_however_many_logs_it_waits_on() -> None:
    lead = lead_of([None, "acme"])
    w = Waiter(reply=None, outstanding=2)
    lead.logs["3"].waiting.append((5, w))
    lead.logs["acme/3"].waiting.append((2, w))
    assert lead.abandon() == [w] and w.failed
    assert not lead.logs["3"].waiting and not lead.logs["acme/3"].waiting
