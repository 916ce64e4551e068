"""The logs of one replicated partition: every tenant's partition ``p`` under ``p``'s leadership.

etcd knows partitions (``partitions/<p>``: replicas, leader, ISR, epoch), not tenants. A
partition's *logs* are the default tenant's partition ``p`` and each declared tenant's; they
share the partition's replica set, leader, epoch and ISR, because the router routes by partition
number and a producer's owner map knows nothing of tenants: one leader per number is what keeps
every tenant's writes going to the replica that sequences them, and etcd holds one key per
partition however many tenants there are. Each log keeps what is its own: offsets, epoch cache,
high watermark, KIP-101 truncation; a follower fetches each log by its name (``log_name``).

Invariants:
- The default tenant's log of ``p`` is named ``str(p)``, the partition's name (as before tenants:
  its files, epoch cache and messages are unchanged); another tenant's is ``<tenant>/<p>``. A
  tenant id never holds ``/``, so two logs never share a name and ``parse_log_name`` inverts
  ``log_name``.
- A follower is in the partition's ISR only while it is in sync on every log: the ISR a leader
  proposes is the intersection of what each log's state wants (``PartitionLead.wanted_isr``), so
  a replica elected from the ISR holds every acknowledged record of every tenant.
- Every log's ``LeaderState`` holds the one ISR etcd holds (set together, ``set_isr``), and each
  log's high watermark is taken over it.
- Pure: no file, socket or clock; the caller passes ``now_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zlog.replication.leader import Led, Waiter
from zlog.tenants.ids import is_valid

# A replicated log: (tenant, partition); tenant None is the default tenant.
LogKey = tuple[str | None, int]


def log_name(tenant: str | None, partition: int) -> str:
    return str(partition) if tenant is None else f"{tenant}/{partition}"


def parse_log_name(name: str) -> LogKey | None:
    """The (tenant, partition) a log name stands for; None for anything ``log_name`` never makes."""
    tenant, slash, number = name.rpartition("/")
    if not number.isdigit() or not number.isascii() or (number != "0" and number.startswith("0")):
        return None
    if not slash:
        return None, int(number)
    return (tenant, int(number)) if is_valid(tenant) else None


@dataclass(slots=True)
class PartitionLead:
    """A partition this worker leads in one epoch: one ``Led`` per log, one ISR for all."""

    partition: int
    name: str  # the partition's name in etcd, also its default log's name
    epoch: int
    logs: dict[str, Led] = field(default_factory=dict)  # log name -> its lead
    proposed: frozenset[int] | None = None  # the last ISR proposed to etcd, and when
    proposed_ms: float = 0.0

    @property
    def isr(self) -> frozenset[int]:
        return self.logs[self.name].state.isr

    @property
    def replicas(self) -> tuple[int, ...]:
        return self.logs[self.name].state.replicas

    def followers(self) -> list[int]:
        return list(self.logs[self.name].state.followers)

    def wanted_isr(self, now_ms: float) -> frozenset[int]:
        """In the ISR: who every log would keep (or take) in it."""
        want: frozenset[int] | None = None
        for led in self.logs.values():
            w = led.state.wanted_isr(now_ms)
            want = w if want is None else want & w
        return self.isr if want is None else want

    def set_isr(self, isr: frozenset[int]) -> list[Led]:
        """etcd now holds ``isr``: the logs whose high watermark moved."""
        return [led for led in self.logs.values() if led.state.set_isr(isr)]

    def set_replicas(self, replicas: tuple[int, ...], now_ms: float) -> list[Led]:
        return [led for led in self.logs.values() if led.state.set_replicas(replicas, now_ms)]

    def lag(self, replica: int) -> int:
        """Records ``replica`` is behind, over every log."""
        return sum(led.state.lag(replica) for led in self.logs.values())

    def abandon(self) -> list[Waiter]:
        """This worker no longer leads: every waiter of every log, once each."""
        return [w for led in self.logs.values() for w in led.abandon()]
