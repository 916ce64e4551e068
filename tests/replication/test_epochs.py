"""The leader-epoch cache and KIP-101 truncation, as scenario tables over simulated replicas."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from zlog.replication.epochs import UNDEFINED, EpochCache, truncation_offset


@dataclass
class Replica:
    """A replica as the storage engine sees it: a list of (epoch, payload) and its epoch cache."""

    log: list[tuple[int, str]] = field(default_factory=list)
    cache: EpochCache = field(default_factory=EpochCache)

    def lead_append(self, epoch: int, *payloads: str) -> None:
        self.cache.assign(epoch, len(self.log))
        self.log += [(epoch, p) for p in payloads]

    def follow(self, leader: Replica) -> None:
        """KIP-101: ask the leader where our latest epoch ends, truncate, then copy the rest."""
        answer = leader.cache.end_offset(self.cache.latest_epoch, len(leader.log))
        cut = truncation_offset(self.cache, len(self.log), answer)
        del self.log[cut:]
        self.cache.truncate_from(cut)
        for off in range(len(self.log), len(leader.log)):
            epoch, payload = leader.log[off]
            self.cache.assign(epoch, off)
            self.log.append((epoch, payload))


def test_leader_dies_after_appending_an_unreplicated_tail() -> None:
    # KIP-101 scenario 1: A leads epoch 0 and writes m0..m2; B replicated m0..m1 only (m2 never
    # acknowledged). A dies; B leads epoch 1 and writes n2. A returns: m2 must go, n2 must come.
    a, b = Replica(), Replica()
    a.lead_append(0, "m0", "m1", "m2")
    b.follow(a)
    del b.log[2:]
    b.lead_append(1, "n2", "n3")
    a.follow(b)
    assert a.log == b.log == [(0, "m0"), (0, "m1"), (1, "n2"), (1, "n3")]
    assert a.cache.entries == b.cache.entries == [(0, 0), (1, 2)]


def test_both_crash_and_come_back_in_the_other_order() -> None:
    # KIP-101 scenario 2: A (leader) has m0 m1, B has m0 (hw=1). Both crash; B returns first and
    # leads epoch 1 writing n1 at offset 1; A returns and must drop m1 for n1 (the high watermark
    # would have kept both m1 on A and n1 on B at the same offset: divergence).
    a, b = Replica(), Replica()
    a.lead_append(0, "m0", "m1")
    b.log, b.cache = a.log[:1], EpochCache([(0, 0)])
    b.lead_append(1, "n1")
    a.follow(b)
    assert a.log == b.log == [(0, "m0"), (1, "n1")]


def test_a_log_first_written_after_the_returning_replicas_epoch() -> None:
    # A tenant's log of a partition: A leads epoch 5 and writes m0..m2 to it, acks=leader, before
    # B fetched any of it; A dies. B leads epoch 6 with the log empty and writes n0 n1. A returns:
    # all of m0..m2 must go (B's answer "epoch 5 ends at 0"), not be kept as if B knew nothing.
    a, b = Replica(), Replica()
    a.lead_append(5, "m0", "m1", "m2")
    b.lead_append(6, "n0", "n1")
    a.follow(b)
    assert a.log == b.log == [(6, "n0"), (6, "n1")]
    assert a.cache.entries == [(6, 0)]


def test_a_follower_returns_after_many_epochs() -> None:
    leader = Replica()
    leader.lead_append(0, *"abcde")
    follower = Replica()
    follower.follow(leader)
    leader.lead_append(2, "f", "g")  # follower away from here on
    follower.lead_append(3, "X", "Y")  # ... and had led a term no one else saw (epoch 3 at 5)
    leader.lead_append(4, "h")
    leader.lead_append(7, "i", "j")
    follower.follow(leader)
    assert follower.log == leader.log
    assert follower.cache.entries == leader.cache.entries == [(0, 0), (2, 5), (4, 7), (7, 8)]


@pytest.mark.parametrize(
    ("entries", "epoch", "leo", "expected"),
    [
        ([], 0, 0, UNDEFINED),
        ([(0, 0)], 0, 10, (0, 10)),  # the latest epoch ends at the log end
        ([(0, 0), (2, 5), (5, 9)], 2, 12, (2, 9)),
        ([(0, 0), (2, 5), (5, 9)], 3, 12, (2, 9)),  # unknown epoch: the largest below it
        ([(0, 0), (2, 5), (5, 9)], 9, 12, (5, 12)),
        ([(3, 4)], 1, 8, (1, 4)),  # older than anything kept: nothing from 4 on is of epoch 1
        ([(6, 0)], 5, 2, (5, 0)),  # a log first written in epoch 6: nothing of epoch 5 on it
        ([(3, 4)], -1, 8, UNDEFINED),  # the asker knows no epoch: nothing to compare
    ],
)
def test_end_offset(entries: list[tuple[int, int]], epoch: int, leo: int, expected: tuple[int, int]) -> None:
    assert EpochCache(entries).end_offset(epoch, leo) == expected


@pytest.mark.parametrize(
    ("follower", "leo", "answer", "cut"),
    [
        ([(0, 0)], 10, (0, 10), 10),  # in step: nothing to cut
        ([(0, 0)], 10, (0, 8), 8),  # the leader's epoch 0 ended earlier: our tail diverged
        ([(0, 0)], 6, (0, 8), 6),  # we are behind: nothing to cut, fetch from 6
        ([(0, 0), (4, 6)], 10, (3, 8), 6),  # KIP-279: our epoch 0 ends at 6, before the leader's 8
        ([(0, 0), (4, 6)], 10, UNDEFINED, 10),
        ([(2, 3)], 9, (1, 5), 0),  # nothing of ours is of an epoch the leader knows
    ],
)
def test_truncation_offset(follower: list[tuple[int, int]], leo: int, answer: tuple[int, int], cut: int) -> None:
    assert truncation_offset(EpochCache(follower), leo, answer) == cut


def test_assign_drops_entries_a_truncation_made_stale() -> None:
    c = EpochCache([(0, 0), (1, 5), (2, 9)])
    assert not c.assign(1, 20)  # known epoch: ignored
    assert c.assign(3, 5)  # epoch 3 starts at 5: the records of epochs 1 and 2 were cut
    assert c.entries == [(0, 0), (3, 5)]
    c.truncate_from(5)
    assert c.entries == [(0, 0)]
    assert c.epoch_of(3) == 0 and c.epoch_of(-1) == -1


def test_checkpoint_round_trip_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "p" / "epochs"
    c = EpochCache([(0, 0), (3, 17)])
    c.save(path)
    assert EpochCache.load(path).entries == [(0, 0), (3, 17)]
    path.write_bytes(b"0 0\n3 17\n\x00garbage")  # garbage ends the list where it starts
    assert EpochCache.load(path).entries == [(0, 0), (3, 17)]
    assert EpochCache.load(tmp_path / "missing").entries == []
