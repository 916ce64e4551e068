"""A leader's view of its partition's replicas: who is in sync, and the high watermark.

Pure: the caller passes ``now_ms`` and the follower fetch offsets, and commits ISR changes
through etcd before telling this object (``set_isr``), because only the ISR stored in etcd is
the one a new leader is chosen from.

Invariants:
- A follower's fetch at offset ``o`` proves it holds ``[0, o)`` durably (it fetches only after
  it stored what it had).
- The high watermark is the smallest log end offset over the *committed* ISR (the leader
  included) and never goes back during a term: an acknowledged (acks=all) record is below it,
  so every ISR member has it and any leader chosen from the ISR has it.
- A follower leaves the ISR once it has not been caught up to the leader's log end for more
  than ``lag_ms`` (Kafka's replica.lag.time.max.ms): behind, or silent (it fetches at least
  every long-poll wait while it lives, and each fetch at the log end renews it); it rejoins once its fetch offset reaches
  the high watermark and the start of the current epoch while it keeps up, and only by a fetch
  made in this term (a dead follower that happened to be level never rejoins, and the benefit
  of the doubt a new term gives keeps a member in for one lag window but adds none: a cut-off
  replica of an empty or idle partition would otherwise be voted back in without ever asking). Both are *proposals* (``wanted_isr``):
  until ``set_isr`` commits one, a shrinking ISR still bounds the high watermark, so a proposal
  that loses its etcd transaction never made anything visible early.
- The leader never leaves its own ISR.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Follower:
    leo: int = 0  # its fetch offset: it holds [0, leo)
    caught_up_ms: float = 0.0  # last fetch that asked for everything there was at its previous fetch
    target: int = 0  # the leader's log end when it last fetched
    fetched: bool = False  # it fetched at least once in this term


@dataclass(slots=True)
class LeaderState:
    leader: int
    replicas: tuple[int, ...]
    isr: frozenset[int]
    epoch_start: int  # first offset of this leader's epoch
    leo: int  # the leader's log end offset (committed)
    lag_ms: int
    now_ms: float
    hw: int = 0
    followers: dict[int, Follower] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.replicas:
            if r != self.leader:
                # A new term gives every follower the benefit of the doubt for one lag window.
                self.followers.setdefault(r, Follower(0, self.now_ms))
        self.isr = frozenset(self.isr) | {self.leader}
        self._advance()

    def _advance(self) -> bool:
        low = self.leo
        for r in self.isr:
            if r != self.leader:
                f = self.followers.get(r)
                low = min(low, f.leo if f else 0)
        if low > self.hw:
            self.hw = low
            return True
        return False

    def appended(self, leo: int) -> bool:
        """The leader committed up to ``leo``. True if the high watermark moved (R=1)."""
        self.leo = max(self.leo, leo)
        return self._advance()

    def fetched(self, replica: int, offset: int, now_ms: float) -> bool:
        """A follower fetched at ``offset``. True if the high watermark moved."""
        f = self.followers.get(replica)
        if f is None:
            return False  # not a replica of this partition: ignored, never counted in sync
        if offset > self.leo:
            return False  # beyond our log: a divergent follower that has not truncated yet
        f.leo = offset  # exactly: a follower that restarted with less has less
        f.fetched = True
        # Kafka's rule: caught up when it asks for everything the leader had at its last fetch
        # (under steady writes it never equals the moving log end, yet it is keeping up).
        if offset >= f.target:
            f.caught_up_ms = now_ms
        f.target = self.leo
        self.now_ms = now_ms
        return self._advance()

    def wanted_isr(self, now_ms: float) -> frozenset[int]:
        """The ISR this leader would like etcd to hold now (equal to ``isr`` if no change)."""
        want = set(self.isr)
        for r, f in self.followers.items():
            if r in want and now_ms - f.caught_up_ms > self.lag_ms:
                want.discard(r)
            elif (r not in want and f.fetched and f.leo >= max(self.hw, self.epoch_start)
                  and now_ms - f.caught_up_ms <= self.lag_ms):
                want.add(r)
        return frozenset(want)

    def set_replicas(self, replicas: tuple[int, ...], now_ms: float) -> bool:
        """etcd now lists ``replicas`` (a reassignment). An added replica starts with no benefit
        of the doubt: it joins the ISR only by catching up. True if the high watermark moved."""
        self.replicas = replicas
        for r in replicas:
            if r != self.leader and r not in self.followers:
                self.followers[r] = Follower(0, now_ms - self.lag_ms - 1)
        for r in [r for r in self.followers if r not in replicas]:
            del self.followers[r]
        self.isr = frozenset(r for r in self.isr if r in replicas) | {self.leader}
        return self._advance()

    def set_isr(self, isr: frozenset[int]) -> bool:
        """etcd now holds ``isr``. True if the high watermark moved (a laggard left)."""
        self.isr = frozenset(isr) | {self.leader}
        return self._advance()

    def lag(self, replica: int) -> int:
        f = self.followers.get(replica)
        return self.leo - f.leo if f else 0
