"""A producer's view of etcd in a replicated cluster: routers, leaders, and waits cut short.

Invariants:
- The routers are those registered in etcd (the ones given to the producer only start it), and
  the owner map is etcd's leaders, both replaced on every view (on the event loop, never on the
  watch thread).
- A batch backing off after a failure is woken the moment etcd names a new leader (or epoch) for
  its partition: a failover costs one watch event, not the rest of a back-off. Without etcd a
  back-off is a plain sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from zlog.client.connection import AsyncClient

if TYPE_CHECKING:  # etcd's client is loaded only when discovery is on
    from zlog.client.sender import Sender
    from zlog.replication.discovery import View
    from zlog.replication.watch import Discovery


class Leaders:
    """Follows etcd's views for one producer; ``backoff`` waits until a delay or a new leader."""

    def __init__(self, etcd: Sequence[str], prefix: str) -> None:
        self.etcd = tuple(etcd)
        self.prefix = prefix
        self.discovery: Discovery | None = None
        self.view: View | None = None
        self._wakes: dict[int, asyncio.Event] = {}  # partition -> set when etcd names a new leader

    def start(self, client: AsyncClient, follow: Callable[[View], None]) -> None:
        """Start watching etcd (once; nothing without endpoints); ``follow`` runs on the loop."""
        if not self.etcd or self.discovery is not None:
            return
        from zlog.replication.watch import Discovery

        loop = client.loop

        def changed(view: View) -> None:  # on the watch thread
            try:
                loop.call_soon_threadsafe(follow, view)
            except RuntimeError:
                pass  # the loop closed: nothing left to follow for

        self.discovery = Discovery(self.etcd, self.prefix, changed, name="zlog-producer-discovery")
        self.discovery.start()

    def follow(self, view: View, client: AsyncClient | None, sender: Sender | None, partitions: int) -> None:
        """A new view of etcd (on the loop): its routers, its leaders; wake what waits on them."""
        from zlog.replication.discovery import changed_leaders

        if client is None or client.closed:
            return
        client.set_routers(view.fronts())
        if sender is None or not partitions:
            return  # not started yet: the producer follows the view again when it is
        sender.owners = view.leaders(partitions)
        for p in changed_leaders(self.view, view, partitions):
            ev = self._wakes.pop(p, None)
            if ev is not None:
                ev.set()
        self.view = view

    async def backoff(self, partition: int, delay: float) -> bool:
        """Sleep ``delay``, or less if etcd names a new leader of ``partition`` meanwhile (True)."""
        if self.discovery is None:
            await asyncio.sleep(delay)
            return False
        ev = self._wakes.get(partition)
        if ev is None:
            ev = self._wakes[partition] = asyncio.Event()
        try:
            await asyncio.wait_for(ev.wait(), delay)
            return True
        except TimeoutError:
            return False

    def stop(self) -> None:
        if self.discovery is not None:
            self.discovery.stop()
